"""Shared fixtures (the authors' test split from ../shared, never copied into the repo, the tiny
model, synthetic clips) and the skip policy: under `CI=true` a test that would skip fails instead.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
"""Set by CI services and by `.ci/run`. A local `pytest -q` skips what it cannot run and prints one
line per reason; CI must run everything, so there a skip is a failure."""


_FAILED_SKIPS: Counter = Counter()
"""Reason -> how many tests it failed under CI, for one summary line per reason."""


def _skip_reason(report) -> str:
    text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return text.removeprefix("Skipped: ")


def _fail_skip_under_ci(report, gpu: bool = False) -> None:
    """A skipped report becomes a failure naming the reason (tests marked `gpu` may still skip:
    CI runs on CPU)."""
    if CI and report.skipped and not hasattr(report, "wasxfail") and not gpu:
        reason = _skip_reason(report)
        _FAILED_SKIPS[reason] += 1
        report.outcome = "failed"
        report.longrepr = f"CI=true: skipping is a failure in CI: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_under_ci(outcome.get_result(), gpu=item.get_closest_marker("gpu") is not None)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module that skips itself (importorskip at import time) skips all its tests
    _fail_skip_under_ci(outcome.get_result())


def pytest_terminal_summary(terminalreporter):
    """One line per skip reason, with its count, so a newcomer sees why tests skipped (and, under
    CI, why they failed instead)."""
    skipped = Counter(_skip_reason(report) for report in terminalreporter.stats.get("skipped", []))
    for reason, count in skipped.most_common():
        terminalreporter.write_line(f"{count} skipped: {reason}", yellow=True)
    for reason, count in _FAILED_SKIPS.most_common():
        terminalreporter.write_line(f"CI=true: {count} failed instead of skipping: {reason}", red=True)


@pytest.fixture(scope="session")
def split_dir() -> Path:
    """The real test split: `CRASHCHAT_TEST_SPLIT_DIR`, else `../shared/data/crashchat`."""
    path = Path(os.environ.get("CRASHCHAT_TEST_SPLIT_DIR", REPO.parent / "shared/data/crashchat"))
    if not path.is_dir():
        pytest.skip(f"the shared test split is not at {path} (set CRASHCHAT_TEST_SPLIT_DIR)")
    return path


@pytest.fixture(scope="session")
def split(split_dir):
    """The real test split, read once (`leaderboard.split.Split`); tests must not modify it."""
    from leaderboard.split import load_split

    return load_split(split_dir)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny-model ops gain nothing from intra-op threads; on a busy CPU two threads ran 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def crash_clip(tmp_path_factory) -> Path:
    """A 3 s, 10 fps, 64x64 synthetic h264 dashcam clip; the cars collide at 1.8 s (`synthetic.crash_time`)."""
    from crashchat.synthetic import write_clip

    return write_clip(tmp_path_factory.mktemp("clips") / "crash_synthetic.mp4", seconds=3.0, scene="crash")


@pytest.fixture(scope="session")
def normal_clip(tmp_path_factory) -> Path:
    """A 3 s, 10 fps, 64x64 synthetic h264 clip where nothing happens (the left car overtakes)."""
    from crashchat.synthetic import write_clip

    return write_clip(tmp_path_factory.mktemp("clips") / "normal_synthetic.mp4", seconds=3.0, scene="normal")


@pytest.fixture(scope="session")
def tiny_crashchat():
    """The tiny random CrashChat (2-layer VideoLLaMA3 + two random adapters) on CPU, loaded once."""
    from crashchat.loading import ModelConfig, load_model

    return load_model(ModelConfig(name="tiny-random", device="cpu"))
