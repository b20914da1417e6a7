"""--help: usage, two examples and exactly the tool's flags with their defaults, exit 0, however
the command line is started."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
from absl import flags

from guided_gradcam.cli import explain as cli

REPO = Path(__file__).resolve().parents[2]
FLAG_LINE = re.compile(r"^  --(?:\[no\])?(\w+)(?:, -\S)? \(default: ([^;)]*)", re.MULTILINE)


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def _tool_flags():
    return [flag.name for flag in flags.FLAGS.get_flags_for_module("guided_gradcam.cli.explain")]


@pytest.mark.parametrize("option", ["--help", "--helpshort", "-h"])
def test_help_lists_exactly_the_tools_flags_with_defaults(option):
    result = _run("inference.py", option)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("usage: python inference.py --image PATH"), lines[0]
    examples = lines[lines.index("examples:") + 1:]
    assert [line.startswith("  python inference.py --") for line in examples[:3]] == [
        True, True, False]
    listed = dict(FLAG_LINE.findall(result.stdout))
    assert list(listed) == _tool_flags()  # every flag, in definition order, no absl ones
    assert "verbosity" not in listed and "helpfull" not in listed
    assert listed["batch_size"] == "16"
    assert listed["output_dir"] == "output"
    assert listed["outputs"] == "png,npz,panel"
    assert listed["network"] == "mobilenet_v1_075"
    assert listed["skip_existing"] == "false"
    assert listed["image"] == "none"
    assert "repeat this option" not in result.stdout  # absl's suffix, said as "repeatable"


def test_methods_help_says_the_order_is_kept_and_gradcams_fields_are_always_filled():
    text = cli.help_text("inference.py")
    block = text[text.index("\n  --methods "):]
    methods = " ".join(block[:block.index("\n  --", 1)].split())  # the flag's help, unwrapped
    assert "The panel shows them in the order given." in methods, methods
    assert ("Grad-CAM's fields are always filled, asked or not (cam, cam_lowres, "
            "guided_gradcam)") in methods, methods


def test_a_flag_defined_later_is_listed():
    flags.DEFINE_integer("help_test_flag", 7, "Defined by the test.",
                         module_name="guided_gradcam.cli.explain")
    try:
        text = cli.help_text("inference.py")
    finally:
        delattr(flags.FLAGS, "help_test_flag")
    assert "  --help_test_flag (default: 7; an integer)\n      Defined by the test.\n" in text


@pytest.mark.parametrize("module", ["guided_gradcam", "guided_gradcam.cli.explain"])
def test_python_dash_m_prints_the_same_help(module, tmp_path):
    reference = _run("inference.py", "--help").stdout
    result = _run("-m", module, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == reference.replace("python inference.py", "python -m guided_gradcam")


def test_python_dash_m_cli_runs_the_command_line(tmp_path):
    # It used to define the flags and exit 0 doing nothing.
    result = _run("-m", "guided_gradcam.cli.explain", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no input: pass --image PATH")


def test_unknown_flag_points_to_help():
    result = _run("inference.py", "--imagee", "x.jpg")
    assert result.returncode == 2
    assert result.stderr.startswith("error: Unknown command line flag 'imagee'")
    assert result.stderr.endswith(" (see --help)\n") and result.stderr.count("\n") == 1
