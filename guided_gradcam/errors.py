"""The one exception type users see: its message is a complete one-line explanation."""
import re

MESSAGE_LIMIT = 290  # a model error's message: with `error: `, one line of at most 300 characters


class GuidedGradCamError(Exception):
    """Bad input or environment; the CLI prints `error: <message>` and exits non-zero."""


class ImageError(GuidedGradCamError):
    """An image file that cannot be read (missing, empty, truncated, not an image)."""


class CheckpointError(GuidedGradCamError):
    """A checkpoint that is missing, cannot be fetched, or does not fit the network."""


def one_line(error):
    """An exception's text squeezed onto one line (messages are printed as one line), or its
    type's name when it has none."""
    return " ".join(str(error).split()) or type(error).__name__


def parse_choices(text_or_list, known, subject, normalise=str):
    """'a,b' or ['a', 'b'] → a tuple of the names (each through `normalise`), in the order
    given, each once; anything not in `known` (or nothing at all) is one error: `subject`
    ('--metrics takes') a comma-separated subset of the choices."""
    names = text_or_list.split(",") if isinstance(text_or_list, str) else list(text_or_list)
    names = tuple(dict.fromkeys(normalise(name.strip()) for name in names if name.strip()))
    if not names or any(name not in known for name in names):
        raise GuidedGradCamError("%s a comma-separated subset of %s; got %r"
                                 % (subject, ",".join(known), text_or_list))
    return names


def first_line(error, limit=160):
    """An exception's message cut to its first sentence, at most `limit` characters (TF's are
    long; Keras' can hold a whole model config), or its type's name: with a model's path and
    what failed, the error stays one line of at most 300 characters."""
    text = str(getattr(error, "message", None) or error).strip()
    return shorten(text, limit) if text else type(error).__name__


def shorten(text, limit=300, first_sentence=True):
    """One line of at most `limit` characters: the first line of `text`, each config dump in
    it (`config={...}`) elided, cut after its first sentence."""
    lines = str(text).strip().splitlines()
    line = _elide_configs(lines[0].strip() if lines else "")
    sentence = re.match(r"(.+?[.!?])\s+(?=[A-Z`'\"(\[])", line) if first_sentence else None
    if sentence:
        line = sentence.group(1)
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def _elide_configs(line):
    """`config={'name': ...}` → `config={…}`, braces balanced."""
    out, start = [], 0
    for match in re.finditer(r"config[=:]\s*\{", line):
        if match.start() < start:
            continue
        depth, end = 0, len(line)
        for index in range(match.end() - 1, len(line)):
            depth += {"{": 1, "}": -1}.get(line[index], 0)
            if depth == 0:
                end = index + 1
                break
        out.append(line[start:match.end() - 1] + "{…}")
        start = end
    return "".join(out) + line[start:]
