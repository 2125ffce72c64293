"""The documentation's examples run as written: every shell command in README.md and
docs/*.md, on the bundled demos.

A document's commands run in order in a fresh folder that holds copies of the bundled demo
files, the README's names for them (`ALIASES`) and every code block the document gives a
file name (```` ```json file=NAME ````), so a later command may use what an earlier one
wrote. What a command is decides how it runs:

- `freezestudio ...` runs `freezestudio.cli.main` in this process (TensorFlow is imported
  once, not once per command); without a sub-command it would open the editor and wait for
  a user, so it runs in a subprocess with `--screenshot` added, rendering the window
  offscreen instead; `--install-desktop` installs into a temporary XDG_DATA_HOME;
- `make TARGET` runs `make -n TARGET` (the target exists and its recipe expands: running
  `make test` here would run this suite inside itself);
- `pip install ...` does not run: it would change the environment running the tests
  (tests/test_wheel.py installs the package into a fresh virtualenv instead);
- anything else runs with bash.

Every command must exit 0.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import assert_user_error, cli_env, run_cli

from freezestudio import cli
from freezestudio.core.edits.plans import Plan, apply_plan
from freezestudio.core.files.loading import open_document
from freezestudio.resources import DEMO_DIR

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCUMENTS = [README, *sorted((REPO / "docs").glob("*.md")), REPO / "packaging" / "README.md"]
SHELL_BLOCK = re.compile(r"^```(?:sh|bash|shell|console)[^\n]*\n(.*?)^```", re.S | re.M)
FILE_BLOCK = re.compile(r"^```\w*[ \t]+file=(\S+)[^\n]*\n(.*?)^```", re.S | re.M)
ALIASES = {"model.keras": "cnn_transfer.keras", "text.keras": "text_classifier.keras",
           "data.npz": "cnn_task_b.npz"}
"""The README's short names for the demo files."""


def shell_commands(text: str) -> list[str]:
    """The commands of a Markdown text's shell blocks: comment and blank lines dropped,
    `\\` continuations joined, a leading `$ ` prompt removed."""
    commands = []
    for block in SHELL_BLOCK.findall(text):
        joined = re.sub(r"[ \t]*\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_the_extraction_sees_every_form():
    text = ("```sh\n$ freezestudio inspect a.keras   # the tree\n\n# a comment\n"
            "freezestudio apply a.keras -o b.keras \\\n    --freeze x\n```\n"
            "```python\nprint(1)\n```\n```bash\nmake run\n```\n")
    assert shell_commands(text) == ["freezestudio inspect a.keras   # the tree",
                                    "freezestudio apply a.keras -o b.keras --freeze x",
                                    "make run"]


def _documents_with_commands() -> list[Path]:
    return [path for path in DOCUMENTS if path.exists() and shell_commands(path.read_text())]


def test_the_documents_have_commands():
    names = {path.name for path in _documents_with_commands()}
    assert {"README.md", "user-guide.md"} <= names


def _seed(folder: Path, text: str) -> None:
    for source in DEMO_DIR.iterdir():
        if source.is_file():
            shutil.copyfile(source, folder / source.name)
    for alias, name in ALIASES.items():
        shutil.copyfile(DEMO_DIR / name, folder / alias)
    for name, body in FILE_BLOCK.findall(text):
        (folder / name).write_text(body)


HEADLESS_OPTIONS = ("--version", "--install-desktop", "-h", "--help")


def _opens_the_editor(argv: list[str]) -> bool:
    first = argv[1] if len(argv) > 1 else None
    return first not in HEADLESS_OPTIONS and first not in cli._command_modules()


def _run(command: str, folder: Path, capsys) -> tuple[int, str]:
    """Runs one documented command in `folder`; returns its exit code and output."""
    argv = shlex.split(command, comments=True)
    if argv[0] == "make":
        done = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        return done.returncode, done.stdout + done.stderr
    if argv[0] == "freezestudio" and _opens_the_editor(argv):
        shot = folder / "docs-example-window.png"
        done = subprocess.run([sys.executable, "-m", "freezestudio", *argv[1:], "--screenshot",
                               str(shot)], cwd=folder, capture_output=True, text=True,
                              env=cli_env(), timeout=300)
        return done.returncode, done.stderr
    if argv[0] == "freezestudio":
        capsys.readouterr()
        code = cli.main(argv[1:])
        out = capsys.readouterr()
        return code, out.out + out.err
    done = subprocess.run(["bash", "-c", command], cwd=folder, capture_output=True, text=True,
                          timeout=120)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("document", _documents_with_commands(),
                         ids=lambda path: str(path.relative_to(REPO)))
def test_every_documented_command_runs(document, tmp_path, monkeypatch, capsys):
    text = document.read_text()
    folder = tmp_path / "work"
    folder.mkdir()
    _seed(folder, text)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    ran = 0
    for command in shell_commands(text):
        if command.startswith("pip install"):
            continue
        code, output = _run(command, folder, capsys)
        assert code == 0, f"{document.name}: `{command}` exited {code}:\n{output[-3000:]}"
        ran += 1
    assert ran > 0


def test_the_readme_plan_applies_to_the_demo_cnn():
    (block,) = [b for b in re.findall(r"```json[^\n]*\n(.*?)```", README.read_text(), re.S)
                if "freezestudio_plan" in b]
    document = open_document(DEMO_DIR / "cnn_transfer.keras")
    apply_plan(document, Plan.from_dict(json.loads(block)))
    assert document.trainable_state(document.layer("conv_base")) == "partial"
    assert document.trainable_state(document.layer("conv_base/block3_conv")) is True
    assert not document.is_weight_trainable(document.weight("head_out:bias"))
    assert document.stop_points == ["conv_base/block2_pool"]


def test_an_out_of_range_training_option_is_named(tmp_path):
    for option in ("--epochs", "--batch-size"):
        run = run_cli("train", DEMO_DIR / "cnn_transfer.keras", "--data", "demo", "-o",
                      tmp_path / "out.keras", option, "0")
        assert_user_error(run, f"{option}: must be at least 1, got 0")


def test_the_user_guide_names_every_command_line_option():
    import argparse

    guide = (REPO / "docs" / "user-guide.md").read_text()
    reference = guide[guide.index("## Command-line reference"):]
    commands = cli._command_modules()
    parsers = [cli.build_gui_parser(), *(
        action.choices[name] for action in cli.build_parser(commands)._actions
        if isinstance(action, argparse._SubParsersAction) for name in commands)]
    options = {option for parser in parsers for action in parser._actions
               for option in action.option_strings if option.startswith("--")}
    assert len(options) > 20
    missing = sorted(option for option in options - {"--help"}
                     if not re.search(re.escape(option) + r"\b", reference))
    assert missing == []
    assert all(f"`{name}`" in reference or f"freezestudio {name}" in reference
               for name in commands)


def test_every_image_the_documents_show_exists():
    shown = 0
    for document in DOCUMENTS:
        if not document.exists():
            continue
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", document.read_text()):
            assert (document.parent / target).is_file(), (document.name, target)
            shown += 1
    assert shown >= 8
