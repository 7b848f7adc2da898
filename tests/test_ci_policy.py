"""The run policy of `tests/conftest.py`: locally a skip shows its reason in the summary; under
`CI=true` it is a failure, so CI cannot pass green without the test split or Chromium; the files
that share the session's app run in one process."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_shared_split_is_there(split_dir):
    """The split the scoring, submission, store and CLI tests read (they skip without it)."""
    assert sorted(split_dir.glob("crashchat_dada_video_total_*_test.json")), f"no test files in {split_dir}"


def _pytest(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    """This file's split test in a fresh pytest, the split pointed at a folder that does not exist."""
    # the outer run's PYTEST_ADDOPTS could select this file again: recursion
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("PYTEST_")}
    env["CRASHCHAT_TEST_SPLIT_DIR"] = str(tmp_path / "no-split-here")
    if ci:
        env["CI"] = "true"
    node = f"{Path(__file__).relative_to(REPO)}::test_the_shared_split_is_there"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_split_skips_with_its_reason_locally(tmp_path):
    run = _pytest(tmp_path, ci=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"1 skipped: the shared test split is not at {tmp_path / 'no-split-here'}" in run.stdout
    assert "1 skipped" in run.stdout.splitlines()[-1]


def test_a_missing_split_fails_under_ci(tmp_path):
    run = _pytest(tmp_path, ci=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert (f"CI=true: 1 failed instead of skipping: the shared test split is not at "
            f"{tmp_path / 'no-split-here'}") in run.stdout
    assert f"ERROR {Path(__file__).relative_to(REPO)}::test_the_shared_split_is_there" in run.stdout
    assert "skipped" not in run.stdout.splitlines()[-1] and "1 error" in run.stdout.splitlines()[-1]


def test_the_session_is_offline():
    """No test reaches for the network (tests/conftest.py): the Hub clients are in offline mode, and
    a name lookup or a connection beyond this machine fails at once, as without network."""
    import socket

    import huggingface_hub.constants

    assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.HF_HUB_OFFLINE
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1" and os.environ["HF_DATASETS_OFFLINE"] == "1"
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except socket.gaierror as exc:
        assert "tests run offline" in str(exc)
    else:
        raise AssertionError("a lookup of huggingface.co went through")
    with socket.socket() as s:
        try:
            s.connect(("8.8.8.8", 53))
        except OSError as exc:
            assert "tests run offline" in str(exc)
        else:
            raise AssertionError("a connection to 8.8.8.8 went through")
    assert socket.getaddrinfo("127.0.0.1", 80)  # this machine stays reachable (the live apps)


def test_every_file_that_uses_the_shared_app_is_scheduled_with_it():
    """`SHARE_LIVE_BOARD` is the scheduler's list; a file that requests `live_board` outside it would
    still pass, but start a second app in the other process (seconds of CPU on every run)."""
    from tests.conftest import SHARE_LIVE_BOARD

    users = set()
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            asks = (isinstance(node, ast.FunctionDef) and "live_board" in {a.arg for a in node.args.args}
                    or isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "usefixtures"
                    and any(getattr(a, "value", None) == "live_board" for a in node.args))
            if asks:
                users.add(path.relative_to(REPO).as_posix())
    assert users == set(SHARE_LIVE_BOARD)
