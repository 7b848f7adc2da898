"""The `crashchat` command: every subcommand resolves and answers --help; pip install -e . declares it."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from crashchat.__main__ import COMMANDS, main

try:
    import tomllib  # novermin (3.11+; 3.10 falls back to tomli below)
except ModuleNotFoundError:  # Python 3.10 (requirements-dev.txt installs tomli there)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_command_points_at_a_function():
    for name, (target, _about) in COMMANDS.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name
    assert set(COMMANDS) >= {"analyze", "predict", "inspect", "convert", "train", "score", "app", "data", "worker"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_of_each_command_from_another_folder_names_the_command(name, tmp_path):
    """`python -m crashchat NAME --help` works outside the repository and its usage line says
    `python -m crashchat NAME` (not `crashchat [-h]`), for every command the table lists."""
    done = subprocess.run([sys.executable, "-m", "crashchat", name, "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m crashchat {name} "), done.stdout[:200]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_installed_command_help_names_the_command(name, capsys, monkeypatch):
    """The installed `crashchat` script (sys.argv[0] is `.../bin/crashchat`): `crashchat NAME --help`."""
    monkeypatch.setattr(sys, "argv", ["/venv/bin/crashchat", name, "--help"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: crashchat {name} ")


def test_unknown_command_is_one_line(capsys):
    assert main(["frobnicate"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main([]) == 0 and "commands:" in capsys.readouterr().out


def test_pyproject_installs_the_command_with_the_readme_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["crashchat"] == "crashchat.__main__:main"
    # the two roles of requirements.txt (tests/test_install.py checks what each brings)
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements-leaderboard.txt"]}
    assert project["tool"]["setuptools"]["dynamic"]["optional-dependencies"] == {
        "model": {"file": ["requirements-model.txt"]}}
    packages = set(project["tool"]["setuptools"]["packages"])
    on_disk = {str(p.parent.relative_to(REPO)).replace("/", ".") for p in REPO.glob("*/**/__init__.py")
               if "tests" not in p.parts and "benchmarks" not in p.parts}
    assert on_disk <= packages, on_disk - packages
    assert project["project"]["requires-python"] == ">=3.10"


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "piped"])
def test_predict_shows_progress_on_a_terminal_and_stays_quiet_when_piped(terminal, tmp_path, monkeypatch):
    import io

    from mini_split import write_mini_split

    from crashchat import predict

    class Stderr(io.StringIO):
        def isatty(self):
            return terminal

    split, root = write_mini_split(tmp_path / "mini")
    stderr = Stderr()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert predict.main(["--split-dir", str(split), "--videos-dir", str(root), "--out", str(tmp_path / "p.jsonl"),
                         "--model", "tiny-random", "--tasks", "crash_recognition", "--limit", "1",
                         "--max-new-tokens", "2", "--device", "cpu"]) == 0
    drawn = "predict: 100%" in stderr.getvalue()
    assert drawn == terminal, stderr.getvalue()
