"""The README's runnable shell snippets, run as written, so the README cannot drift from the code.

A snippet is runnable when the line before its ```bash fence is the marker

    <!-- runnable -->                          or
    <!-- runnable: needs preds.jsonl clip.mp4 -->

(`needs`: files the snippet's reader is assumed to have; the test makes tiny ones, see `FIXTURES`).
Mark only what runs on a CPU, offline, in seconds: the tiny model, synthetic clips, `--help`s,
scoring a small prediction file. Each command (a line, with its `\\` continuations) runs in bash
from a fresh folder laid out like a clone with `../shared/data/crashchat` beside it (the real
split, linked), the `crashchat` command on PATH (= `python -m crashchat`, as `pip install -e .`
gives it), an empty cache, the Hub offline, and a timeout; a failure names the README line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^<!-- runnable(?::\s*needs\s+(?P<needs>[^>]*?))?\s*-->$")
TIMEOUT_S = 300


def runnable_snippets(text: str) -> list[tuple[int, list[str], list[tuple[int, str]]]]:
    """(marker line, needed files, [(README line, command)]) for each marked snippet; a marker not
    followed by a ```bash fence is an error naming its line.

    >>> runnable_snippets("<!-- runnable: needs a.mp4 -->\\n```bash\\n# a comment\\necho 1 \\\\\\n  2  # two\\n```\\n")
    [(1, ['a.mp4'], [(4, 'echo 1 \\\\\\n  2  # two')])]
    """
    lines = text.splitlines()
    snippets = []
    for i, line in enumerate(lines):
        match = MARKER.match(line.strip())
        if not match:
            continue
        if i + 1 >= len(lines) or lines[i + 1].strip() != "```bash":
            raise ValueError(f"README.md:{i + 1}: a runnable marker must be followed by a ```bash fence")
        commands, j, current, start = [], i + 2, [], 0
        while j < len(lines) and lines[j].strip() != "```":
            body = lines[j]
            if not current and (not body.strip() or body.lstrip().startswith("#")):
                j += 1
                continue
            if not current:
                start = j + 1
            current.append(body)
            if not body.rstrip().endswith("\\"):
                commands.append((start, "\n".join(current)))
                current = []
            j += 1
        if j >= len(lines):
            raise ValueError(f"README.md:{i + 1}: the runnable snippet's fence is never closed")
        snippets.append((i + 1, (match.group("needs") or "").split(), commands))
    return snippets


def _predictions(path: Path, split_dir: Path) -> None:
    """A small prediction file in our layout: the first 20 recognition questions of the split, answered Yes."""
    from crashchat.tasks import get_task

    task = get_task("crash_recognition")
    records = json.loads((split_dir / task.split_file("test")).read_text())[:20]
    path.write_text("".join(json.dumps({"video": Path(r["video"][0]).name, "task": task.id, "response": "Yes"}) + "\n"
                            for r in records))


def _clip(path: Path, split_dir: Path) -> None:
    from crashchat.synthetic import write_clip

    write_clip(path, seconds=3.0, scene="crash")


FIXTURES = {".jsonl": _predictions, ".mp4": _clip, ".mkv": _clip, ".mov": _clip, ".webm": _clip}
"""What a `needs` file is made of, by its suffix."""


def test_the_marker_parser_finds_commands_and_refuses_a_stray_marker():
    text = "x\n<!-- runnable -->\n```bash\na --b \\\n   c\n\nd\n```\n<!-- runnable -->\nno fence\n"
    with pytest.raises(ValueError, match=r"README.md:9: a runnable marker must be followed"):
        runnable_snippets(text)
    assert runnable_snippets(text.rsplit("<!--", 1)[0]) == [(2, [], [(4, "a --b \\\n   c"), (7, "d")])]


def test_readme_marks_the_cpu_snippets_runnable():
    snippets = runnable_snippets((REPO / "README.md").read_text())
    commands = " ".join(c for _, _, cs in snippets for _, c in cs)
    for wanted in ("analyze crash.mp4 --model tiny-random", "score preds.jsonl", "inspect clip.mp4", "--help"):
        assert wanted in commands, f"no runnable README snippet runs {wanted!r}"


def test_readme_snippets_run_as_written(split_dir, tmp_path):
    """Every marked snippet, command by command, in a fresh clone-like folder (see the module docstring)."""
    clone = tmp_path / "crashchat"
    clone.mkdir()
    shutil.copytree(REPO / "assets", clone / "assets")  # files a clone has that snippets name
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "crashchat").symlink_to(split_dir.resolve(), target_is_directory=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crashchat").write_text(f"#!/bin/sh\nexec {sys.executable} -m crashchat \"$@\"\n")
    (bin_dir / "crashchat").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", CRASHCHAT_CACHE=str(tmp_path / "cache"),
               XDG_CACHE_HOME=str(tmp_path / "xdg"), CRASHCHAT_DB=str(tmp_path / "leaderboard.sqlite3"),
               MPLBACKEND="Agg", GRADIO_ANALYTICS_ENABLED="False")
    env.pop("CRASHCHAT_SPLIT_DIR", None)  # the snippets say where the split is, or it is a failure
    snippets = runnable_snippets((REPO / "README.md").read_text())
    assert snippets
    for marker_line, needs, commands in snippets:
        for name in needs:
            if not (clone / name).exists():
                FIXTURES[Path(name).suffix](clone / name, split_dir)
        for line, command in commands:
            try:
                done = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=clone, env=env,
                                      capture_output=True, text=True, timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"README.md:{line}: still running after {TIMEOUT_S} s: {command}")
            assert done.returncode == 0, (f"README.md:{line} (snippet marked at line {marker_line}) exited with "
                                          f"{done.returncode}: {command}\n{(done.stderr or done.stdout)[-2000:]}")
