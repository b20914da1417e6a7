"""`make figures` writes under output/ only; the committed gallery is `make gallery`'s alone
(a few pixels differ on another CPU, so a plain `make figures` must not dirty the tree)."""
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _dry_run(target):
    """The commands `make target` would run (make -n runs none of them)."""
    result = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    commands = result.stdout.replace("\\\n", " ").splitlines()  # continued lines joined
    return [" ".join(line.split()) for line in commands if "make_figures.py" in line]


def test_make_figures_writes_only_under_output():
    commands = _dry_run("figures")
    assert len(commands) == 3, commands
    assert not any("docs/" in command for command in commands), commands
    assert "--output_dir output/figures" in commands[0]
    assert commands[1].endswith("--output_dir output/methods") and "--methods " in commands[1]
    assert commands[2].endswith("--gallery_dir output/gallery")


def test_make_gallery_refreshes_the_committed_gallery():
    commands = _dry_run("gallery")
    assert len(commands) == 2 and commands[0].endswith("--gallery_dir docs/gallery"), commands
    assert commands[1].endswith("--gallery_dir docs/methods"), commands
    for command in commands:
        assert command.startswith("TF_ENABLE_ONEDNN_OPTS=0 TF_NUM_INTRAOP_THREADS=1 ")
