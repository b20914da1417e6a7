"""What both command lines share besides their flags: the one-line error, `--help` generated
from the flag definitions, absl's parsing with one-line errors, running a command, and the
parsing of sizes and the output folder's check."""
import os
import sys

from absl import app, flags

from guided_gradcam.errors import GuidedGradCamError

FLAGS = flags.FLAGS


def print_error(message):
    print("error: %s" % message, file=sys.stderr)


def describe_flag(flag):
    """'  --name (default: X; syntax)' and the wrapped help, from the flag's definition."""
    import textwrap

    name = ("--[no]" if flag.boolean else "--") + flag.name
    if flag.short_name:
        name += ", -" + flag.short_name
    notes = ["default: %s" % ("none" if flag.default is None
                              else flag.default_as_str.strip("'") or "''")]
    description = flag.help or ""
    if isinstance(flag, flags.MultiFlag):
        notes.append("repeatable")  # said here instead of absl's suffix to the help text
        description = description.split(";\n    repeat this option")[0]
    elif flag.parser.syntactic_help and not flag.boolean:
        notes.append(flag.parser.syntactic_help)
    lines = ["  %s (%s)" % (name, "; ".join(notes))]
    lines += textwrap.wrap(description, 96, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


class _HelpFlag(flags.BooleanFlag):
    """--help, --helpshort (-h, -?): this tool's help on stdout, exit 0. absl's own print the
    main module's docstring and its flags (none: they are defined here) and exit 1."""

    def __init__(self, name, short_name, text=None):
        super().__init__(name, False, "show this help", short_name=short_name,
                         allow_hide_cpp=True)
        self._text = text

    def parse(self, arg):
        if self._parse(arg):
            sys.stdout.write(self._text(sys.argv[0]))
            sys.stdout.flush()
            sys.exit(0)


def _parse_flags(argv):
    """absl's parser, with its two-line FATAL message turned into our one-line error."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print_error("%s (see --help)" % error)
        sys.exit(2)


def run_command(command, text):
    """Runs `command` under absl, with `text(argv0)` as --help."""
    app.define_help_flags()  # absl's help flags, then ours in place of --help/--helpshort
    for name in ("help", "?", "helpshort"):
        if name in FLAGS:
            delattr(FLAGS, name)
    for name, short_name in (("help", "h"), ("helpshort", "?")):
        flags.DEFINE_flag(_HelpFlag(name, short_name, text), module_name=app.__name__)
    app.run(_closed_pipe_is_no_traceback(command), flags_parser=_parse_flags)


def _closed_pipe_is_no_traceback(command):
    """`… | head`: once the reader is gone, stop quietly (exit 1), as Python's docs advise."""
    def guarded(argv):
        try:
            return command(argv)
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    return guarded


def parse_hxw(text, square, message):
    """'HxW' (or 'N' where `square`) → (H, W) positive ints; `message` % text otherwise."""
    parts = text.lower().split("x")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = ()
    if square and len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) <= 0:
        raise GuidedGradCamError(message % text)
    return size


def parse_input_size(text):
    """'320x240' → (320, 240) as (height, width); '320' → (320, 320)."""
    if text is None:
        return None
    return parse_hxw(text, True, "--input_size must be HxW or N, e.g. 320x240; got %r")


def parse_grid(text):
    """'14x20' → (14, 20) as (height, width) in patch tokens."""
    if text is None:
        return None
    return parse_hxw(text, False, "--grid must be HxW in patch tokens, e.g. 14x20; got %r")


def check_writable(folder):
    """Creates `folder` if needed and proves a file can be made in it."""
    import tempfile

    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise GuidedGradCamError("cannot write to --output_dir %s: %s"
                                 % (folder, error.strerror or error)) from None
