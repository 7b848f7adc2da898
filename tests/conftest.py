"""Shared fixtures (the authors' test split from ../shared, never copied into the repo, the tiny
model, synthetic clips, the mini split, one live app) and the session's rules: no network, the
skip policy (under `CI=true` a test that would skip fails instead), and `pytest -q` with no paths
run in two processes.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections import Counter
from pathlib import Path

# No test reaches for the network. The Hub clients (huggingface_hub, transformers, datasets, peft)
# read these when first imported, so they are set before anything imports them; child processes
# that tests start inherit them.
# Gradio's usage analytics (api.gradio.app) are off for the same reason.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False"}
os.environ.update(OFFLINE)

import pytest  # noqa: E402 - after the environment above

REPO = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
"""Set by CI services and by `.ci/run`. A local `pytest -q` skips what it cannot run and prints one
line per reason; CI must run everything, so there a skip is a failure."""


_CI_FAILURE = "CI=true: skipping is a failure in CI: "
"""How a skip turned failure starts its message (the summary counts them by reason)."""


# --- no network ------------------------------------------------------------------------------------
# Past the variables above, a lookup or connection to anything but this machine fails at once, as
# on a machine without network, and the run ends with one line per host that was asked for.

_BLOCKED: Counter = Counter()
"""(host, test) -> attempts refused in this process."""
_getaddrinfo, _connect, _connect_ex = socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex


def _local(host) -> bool:
    host = host.decode() if isinstance(host, bytes) else host
    if host in (None, "", "localhost"):
        return True
    try:
        address = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _refuse(host) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST", "collection").split(" ")[0]
    _BLOCKED[(str(host), test)] += 1


def _offline_getaddrinfo(host, *args, **kwargs):
    if not _local(host):
        _refuse(host)
        raise socket.gaierror(socket.EAI_NONAME, f"tests run offline: no lookup of {host}")
    return _getaddrinfo(host, *args, **kwargs)


def _offline(connect):
    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
            _refuse(address[0])
            raise OSError(101, f"tests run offline: no connection to {address[0]}")  # ENETUNREACH
        return connect(self, address)
    return guarded


socket.getaddrinfo = _offline_getaddrinfo
socket.socket.connect = _offline(_connect)
socket.socket.connect_ex = _offline(_connect_ex)


# --- the skip policy -------------------------------------------------------------------------------


def _skip_reason(report) -> str:
    text = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return text.removeprefix("Skipped: ")


def _fail_skip_under_ci(report, gpu: bool = False) -> None:
    """A skipped report becomes a failure naming the reason (tests marked `gpu` may still skip:
    CI runs on CPU)."""
    if CI and report.skipped and not hasattr(report, "wasxfail") and not gpu:
        reason = _skip_reason(report)
        report.outcome = "failed"
        report.longrepr = _CI_FAILURE + reason


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
    CI, why they failed instead); one line per host a test asked for although offline."""
    stats = terminalreporter.stats
    skipped = Counter(_skip_reason(report) for report in stats.get("skipped", []))
    for reason, count in skipped.most_common():
        terminalreporter.write_line(f"{count} skipped: {reason}", yellow=True)
    failed = Counter(str(r.longrepr).removeprefix(_CI_FAILURE) for r in stats.get("failed", []) + stats.get("error", [])
                     if str(r.longrepr).startswith(_CI_FAILURE))
    for reason, count in failed.most_common():
        terminalreporter.write_line(f"CI=true: {count} failed instead of skipping: {reason}", red=True)
    for (host, test), count in sorted(_BLOCKED.items()):  # this process's only (not an xdist worker's)
        terminalreporter.write_line(f"offline: {count} attempt(s) to reach {host} refused ({test})", yellow=True)


# --- `pytest -q` in two processes --------------------------------------------------------------------

WORKERS = 2
"""Processes for the whole suite: the machines are 2-core, and most tests use one core at a time."""

SHARE_LIVE_BOARD = ("tests/test_chat_browser.py", "tests/test_end_to_end.py", "tests/test_leaderboard_ui.py")
"""Test files that use the session's app (`live_board`): sent to one process together, so the app
starts once (seconds of CPU each start), not once per process that runs one of them.
`tests/test_ci_policy.py` fails when a file requests `live_board` and is not listed here."""


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown under `-p no:xdist`
def pytest_xdist_make_scheduler(config, log):
    """One test file per process at a time (`--dist loadfile`), the files of `SHARE_LIVE_BOARD` as one."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Files(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "live_board" if path in SHARE_LIVE_BOARD else path

    return Files(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """`pytest -q` with no paths runs the suite in `WORKERS` processes (pytest-xdist), one test
    file per process at a time, so module fixtures (an app, a model) are built once. With paths,
    `-n N` or `-p no:xdist`, pytest runs as asked."""
    if hasattr(config, "workerinput"):  # an xdist worker: tiny-model ops gain nothing from a second thread
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        return
    if (config.pluginmanager.hasplugin("xdist") and config.args_source == pytest.Config.ArgsSource.TESTPATHS
            and config.getoption("numprocesses", None) is None and not config.getoption("collectonly")
            and not config.getoption("usepdb")):
        config.option.numprocesses = WORKERS
        config.option.dist = "loadfile"
        config.option.tx = ["popen"] * WORKERS


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


@pytest.fixture(scope="session")
def mini_split(tmp_path_factory) -> tuple[Path, Path]:
    """`tests/mini_split.py`'s five-video split, written once: (split dir, videos dir). Read-only."""
    from mini_split import write_mini_split

    return write_mini_split(tmp_path_factory.mktemp("mini"))


@pytest.fixture(scope="session")
def example_clips_dir(tmp_path_factory) -> Path:
    """The chat tab's example clips as small 1 s stand-ins (the app renders 640x360 ones, seconds of
    work, when its examples folder lacks them; `tests/test_synthetic.py` checks those)."""
    from crashchat.synthetic import EXAMPLES, write_clip

    folder = tmp_path_factory.mktemp("examples")
    for name, scene, _seconds, seed in EXAMPLES:
        write_clip(folder / name, seconds=1.0, scene=scene, seed=seed)
    return folder


@pytest.fixture(scope="session")
def live_board(tmp_path_factory, split_dir, example_clips_dir):
    """One `python app.py` per test process (starting Gradio costs seconds of CPU), as the README
    starts it: the real test split, the tiny model in the chat tab (24 new tokens at most), its own
    fresh database, offline. The chat, leaderboard and end-to-end tests share it: each submits
    under its own model name and looks only at its own rows. Restarting it (`stop()`, `start()`)
    keeps its database; a test that must empty the app starts its own `live_app.LiveApp`."""
    from live_app import LiveApp

    app = LiveApp(tmp_path_factory.mktemp("live_board") / "board.sqlite3", split_dir,
                  env={"CRASHCHAT_MODEL": "tiny-random", "CRASHCHAT_MAX_NEW_TOKENS": "24",
                       "CRASHCHAT_EXAMPLES_DIR": str(example_clips_dir)})
    app.start()
    yield app
    app.stop()
