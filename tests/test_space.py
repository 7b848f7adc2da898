"""Deploying as a Hugging Face Space (issue 15).

- The README's front matter, read as the Hub's library reads it (`huggingface_hub.SpaceCard`),
  agrees with requirements.txt, pyproject.toml, `.ci/run` and the model ids in the code.
- `.ci/run`'s Python 3.10 check (vermin) fails on a 3.11-only call.
- A smoke test starts `python app.py` as a Space starts it (`SPACE_ID`, `GRADIO_SERVER_NAME=0.0.0.0`,
  a port from `GRADIO_SERVER_PORT`, no arguments, a fresh database, no local split but the
  download cache already filled) and uses both tabs through `gradio_client`, with results synced
  to a dataset repository through a LOCAL STAND-IN for the Hub (`tests/test_store.py`'s
  `LocalHub`, given to `HubSync` in the app's process by a `sitecustomize` module on
  `PYTHONPATH`): no network, the real `HubSync` and `CommitScheduler` code.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from live_app import free_port, launch, terminate

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


# --- the front matter ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def card():
    """The README's YAML front matter as the Hub's own library parses it."""
    from huggingface_hub import SpaceCard

    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must start with the Space's YAML front matter"
    return SpaceCard(text).data


def _requirement(name: str) -> str:
    """The version `requirements.txt` pins (through the role files it includes)."""
    lines = [line for part in ("requirements-leaderboard.txt", "requirements-model.txt")
             for line in (REPO / part).read_text().splitlines()]
    for line in lines:
        found = re.match(rf"{re.escape(name)}\s*==\s*([\w.]+)", line.split("#")[0].strip())
        if found:
            return found.group(1)
    raise AssertionError(f"requirements.txt does not pin {name}==VERSION (in its role files)")


def test_sdk_version_is_the_gradio_that_requirements_pin_and_the_tests_run(card):
    import gradio

    assert card.sdk == "gradio" and card.app_file == "app.py" and (REPO / card.app_file).is_file()
    assert isinstance(card.sdk_version, str), "quote sdk_version: YAML reads 6.3 as a number"
    assert card.sdk_version == _requirement("gradio") == gradio.__version__


def test_python_version_is_the_supported_minimum_everywhere(card):
    """A string ("3.10"; unquoted YAML reads 3.10 as the number 3.1), equal to pyproject's
    requires-python floor and to the target `.ci/run` checks with vermin."""
    try:
        import tomllib  # novermin (3.11+; 3.10 falls back to tomli below)
    except ModuleNotFoundError:
        import tomli as tomllib

    assert isinstance(card.python_version, str) and re.fullmatch(r"3\.\d+", card.python_version)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == f">={card.python_version}"
    assert f"--target={card.python_version}-" in _vermin_command()
    assert sys.version_info >= tuple(int(p) for p in card.python_version.split("."))


def test_hardware_colours_and_description_are_values_the_hub_accepts(card):
    from huggingface_hub import SpaceHardware

    assert card.get("suggested_hardware") in {h.value for h in SpaceHardware}
    assert card.get("colorFrom") in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert card.get("colorTo") in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    assert len(card.get("short_description", "")) <= 60
    assert re.fullmatch(r"\d+(m|h)", card.get("startup_duration_timeout", "30m"))
    tags = card.get("tags")
    assert tags and all(isinstance(t, str) and re.fullmatch(r"[a-z0-9-]+", t) for t in tags)


def test_models_and_preloads_are_the_weights_the_code_loads(card):
    """`models:` links every repo the code can load (the bases `--base` names, the adapters, the vision
    encoder whose preprocessor config sets the token floor); `preload_from_hub:` fetches at build
    time the files `crashchat.loading` reads for the default: the default base's folder and the two
    adapter checkpoints of `KDliang/crashchat`, and the vision encoder's preprocessor config (file
    names assumed, see the README's Deploy section)."""
    from fnmatch import fnmatch

    from crashchat.bases import BASES, DEFAULT_BASE, PREPROCESSOR_FILES, VISION_ENCODER
    from crashchat.convert import ADAPTER_PATTERNS, BASE_PATTERNS
    from crashchat.weights import ADAPTER_REPO, ADAPTER_SUBFOLDERS

    assert sorted(card.models) == sorted({b.repo for b in BASES.values()} | {ADAPTER_REPO, VISION_ENCODER})
    preload = {}
    for entry in card.get("preload_from_hub"):
        repo, *rest = entry.split()
        assert len(rest) <= 2 and repo not in preload, entry  # "repo [file1,file2 [revision]]"
        preload[repo] = rest[0].split(",") if rest else None
    default = BASES[DEFAULT_BASE]
    assert default.repo == ADAPTER_REPO and default.subfolder  # one repo holds the base and the adapters
    assert set(preload) == {ADAPTER_REPO, VISION_ENCODER}
    assert preload[VISION_ENCODER] == [PREPROCESSOR_FILES[0]]
    files = preload[ADAPTER_REPO]
    assert len(files) == len(set(files))
    by_folder: dict[str, set[str]] = {}
    for path in files:
        folder, _, name = path.rpartition("/")
        by_folder.setdefault(folder, set()).add(name)
    base = by_folder.pop(default.subfolder)
    assert all(any(fnmatch(name, p) for p in BASE_PATTERNS) for name in base), base  # files a base download fetches
    assert {"config.json", "model.safetensors.index.json", "tokenizer_config.json"} <= base
    assert any(name.endswith(".safetensors") for name in base)
    assert set(by_folder) == set(ADAPTER_SUBFOLDERS.values())
    for folder, names in by_folder.items():
        assert names <= set(ADAPTER_PATTERNS), f"{folder}: not files crashchat.loading reads"
        assert {"adapter_config.json", "non_lora_trainables.bin"} <= names, folder
        assert names & {"adapter_model.bin", "adapter_model.safetensors"}, folder


# --- Python 3.10 ----------------------------------------------------------------------------------------


def _vermin_command() -> list[str]:
    lines = [line for line in (REPO / ".ci/run").read_text().splitlines() if line.startswith("vermin ")]
    assert len(lines) == 1, ".ci/run must run vermin once"
    return shlex.split(lines[0])


def test_the_ci_python_check_fails_on_a_call_newer_than_the_target(tmp_path):
    if shutil.which("vermin") is None:
        pytest.skip("vermin is not installed (pip install -r requirements-dev.txt)")
    command = [arg for arg in _vermin_command() if arg.startswith("-")]  # the flags, on our own files
    (tmp_path / "new.py").write_text("import tomllib\nfrom datetime import UTC\n")
    (tmp_path / "old.py").write_text("from __future__ import annotations\n\ndef f(x: int | None) -> str:\n"
                                     "    return f'{x}'.removeprefix('1')\n")
    bad = subprocess.run(["vermin", *command, str(tmp_path / "new.py")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "'tomllib' module requires" in bad.stdout
    good = subprocess.run(["vermin", *command, str(tmp_path / "old.py")], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stdout


# --- the app started as a Space ---------------------------------------------------------------------------

HUB_STAND_IN = '''"""STAND-IN for the Hugging Face Hub, written by tests/test_space.py: loaded by Python at start-up
(sitecustomize, through PYTHONPATH) in the app's process only, it gives the results sync
(`leaderboard.hubsync.HubSync.from_env`) tests/test_store.py's LocalHub as its `api`: a real `HfApi`
whose network methods write to and read from the folder named by CRASHCHAT_TEST_LOCAL_HUB.
NOT the Hub; no network."""
import os
import sys
from pathlib import Path

_folder = os.environ.pop("CRASHCHAT_TEST_LOCAL_HUB", None)  # popped: child processes use no hub
if _folder:
    sys.path[:0] = [{tests!r}, {repo!r}]  # before app.py's folder is added: test_store imports leaderboard
    from leaderboard.hubsync import HubSync
    from test_store import LocalHub

    _from_env = HubSync.from_env.__func__

    def _with_local_hub(cls, store):
        sync = _from_env(cls, store)
        if sync is not None:
            sync.api = LocalHub(Path(_folder))
            print(f"hub stand-in: HubSync.api -> LocalHub({{_folder}})", file=sys.stderr)
        return sync

    HubSync.from_env = classmethod(_with_local_hub)

    # Who a token belongs to (the Hub's whoami): the test's API client sends this stand-in token.
    from leaderboard import identity

    _real_username = identity.hub_username
    identity.hub_username = lambda token: "space-tester" if token == "hf_stand_in_user" else _real_username(token)
'''

RESULTS_REPO = "tester/crashchat-results"


HOT_RELOAD_WITHOUT_SPACES = "`spaces` package is required to run hot-reloading in Spaces"


def unexpected_tracebacks(log: str) -> list[str]:
    """The log's tracebacks, less one: with `SPACE_ID` set Gradio starts its Spaces hot-reload
    watcher, which needs the `spaces` package that a Space installs with the Gradio SDK and that
    this test environment lacks (that thread fails; the app does not depend on it)."""
    blocks = re.split(r"\n(?=Exception in thread|Traceback \(most recent call last\))", log)
    return [b for b in blocks if "Traceback" in b and HOT_RELOAD_WITHOUT_SPACES not in b]


class SpaceApp:
    """`python app.py`, no arguments, in the environment a Space gives it."""

    def __init__(self, tmp: Path, split_dir: Path, *, model: str | None, examples: Path | None = None):
        """`examples`: the chat tab's example clips (conftest's `example_clips_dir`); None: the app
        renders its 640x360 ones into a fresh folder at start (seconds of work)."""
        from leaderboard.split import COMMIT

        self.tmp, self.remote = tmp, tmp / "remote-dataset"
        self.db = tmp / "data" / "leaderboard.sqlite3"  # fresh: nothing there yet
        cache = tmp / "cache"
        # The split as the app's first use leaves it: the six files in the verified download
        # cache (`leaderboard.split.cache_dir()` under CRASHCHAT_CACHE); no local split folder.
        self.split_cache = cache / "split" / COMMIT[:12]
        self.split_cache.mkdir(parents=True)
        for file in sorted(split_dir.glob("crashchat_dada_video_total_*_test.json")):
            shutil.copy(file, self.split_cache / file.name)
        stand_in = tmp / "hub-stand-in"
        stand_in.mkdir()
        (stand_in / "sitecustomize.py").write_text(HUB_STAND_IN.format(tests=str(TESTS), repo=str(REPO)))
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CRASHCHAT_", "GRADIO_", "SPACES_", "PYTEST_"))}
        self.env.update(
            SPACE_ID="tester/crashchat", SPACE_AUTHOR_NAME="tester", SYSTEM="spaces",
            GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT=str(self.port), GRADIO_ANALYTICS_ENABLED="False",
            GRADIO_TEMP_DIR=str(tmp / "gradio-tmp"),
            CRASHCHAT_DB=str(self.db), CRASHCHAT_CACHE=str(cache), CRASHCHAT_EXAMPLES_DIR=str(examples or tmp / "examples"),
            CRASHCHAT_RESULTS_REPO=RESULTS_REPO, HF_TOKEN="hf_local_stand_in", CRASHCHAT_SYNC_MINUTES="0.02",
            CRASHCHAT_ADMIN_TOKEN="space-admin", CRASHCHAT_TEST_LOCAL_HUB=str(self.remote),
            HF_HUB_OFFLINE="1",  # nothing leaves this machine; the results repo is the stand-in
            # hf_oauth: true makes the Space set these; Gradio then serves Sign in with Hugging Face.
            OAUTH_CLIENT_ID="stand-in", OAUTH_CLIENT_SECRET="stand-in", OAUTH_SCOPES="openid profile",
            OPENID_PROVIDER_URL="https://huggingface.co",
            PYTHONPATH=os.pathsep.join([str(stand_in), *filter(None, [os.environ.get("PYTHONPATH")])]),
        )
        if model:
            self.env["CRASHCHAT_MODEL"] = model
        self.log = tmp / "space.log"
        self.proc = None
        self.url = f"http://127.0.0.1:{self.port}/"

    def start(self) -> str:
        self.proc = launch([], self.env, self.url, self.log)
        with urllib.request.urlopen(self.url, timeout=5) as page:
            assert b"CrashChat" in page.read()
        return self.url

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None

    def remote_models(self) -> list[str] | None:
        """Models in the database the stand-in Hub holds; None while it is absent or half written."""
        from leaderboard.store import DB_NAME, Store

        path = self.remote / DB_NAME
        if not path.is_file():
            return None
        copy = self.tmp / "remote-read.sqlite3"
        shutil.copy(path, copy)
        try:
            return sorted(r.model for r in Store(copy).rows())
        except (sqlite3.Error, Exception):  # noqa: BLE001 - a file caught mid-write: read again
            return None
        finally:
            copy.unlink(missing_ok=True)


@pytest.fixture
def stored_results(tmp_path, split):
    """The results dataset as an earlier run of the Space left it: one verified row."""
    from test_store import write_submission

    from leaderboard.intake import submit
    from leaderboard.store import DB_NAME, Store

    remote = tmp_path / "remote-dataset"
    remote.mkdir()
    submit(Store(remote / DB_NAME), [write_submission(tmp_path / "earlier.jsonl", split, seed=7, share=0.003)],
           "stored before restart", split=split, bootstrap=0)
    for extra in remote.glob(f"{DB_NAME}-*"):  # WAL/SHM side files: the Hub holds one file
        extra.unlink()
    return remote


def test_cpu_space_serves_the_leaderboard_syncs_results_and_the_chat_says_it_needs_a_gpu(
        tmp_path, split_dir, split, stored_results, crash_clip, example_clips_dir):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from test_store import write_submission

    space = SpaceApp(tmp_path, split_dir, model=None, examples=example_clips_dir)  # the default model, on a CPU
    before = sorted(p.name for p in space.split_cache.iterdir())
    space.start()
    try:
        client = Client(space.url, verbose=False, download_files=False, oauth_token="hf_stand_in_user")
        log = space.log.read_text()
        assert "hub stand-in: HubSync.api -> LocalHub" in log
        assert f"restored 1 rows from {RESULTS_REPO}" in log and "a commit at most every" in log

        # the leaderboard tab: the restored row and the paper's rows, a new submission scored
        rows = client.predict(api_name="/leaderboard")["rows"]
        assert {r["kind"] for r in rows} == {"reported", "verified"}
        assert [r["model"] for r in rows if r["kind"] == "verified"] == ["stored before restart"]
        result = client.predict(files=[handle_file(str(write_submission(tmp_path / "new.jsonl", split, seed=8,
                                                                        share=0.003)))],
                                model="submitted on the Space", api_name="/submit")
        assert result["leaderboard"]["added"] and result["split"]["official"]
        assert result["leaderboard"]["submitter"] == "space-tester"  # the token's owner, through OAuthToken
        assert "submitted on the Space" in [r["model"] for r in client.predict("strict", api_name="/leaderboard")["rows"]]
        anonymous = Client(space.url, verbose=False, download_files=False)
        with pytest.raises(AppError, match="Sign in with Hugging Face"):
            anonymous.predict(files=[handle_file(str(write_submission(tmp_path / "anon.jsonl", split, seed=9,
                                                                      share=0.003)))],
                              model="anonymous on the Space", api_name="/submit")
        # the split came from the filled cache: nothing downloaded, nothing added
        assert sorted(p.name for p in space.split_cache.iterdir()) == before

        # the submission reaches the results repository (CommitScheduler, every 0.02 min)
        deadline = time.monotonic() + 60
        while space.remote_models() != ["stored before restart", "submitted on the Space"]:
            assert time.monotonic() < deadline, f"not synced: {space.remote_models()}\n{space.log.read_text()[-2000:]}"
            time.sleep(0.5)

        # the chat tab: the real model on a CPU is refused in one plain sentence
        with pytest.raises(AppError, match="needs a GPU"):
            client.predict(handle_file(str(crash_clip)), api_name="/analyze")
    finally:
        space.stop()
    assert not unexpected_tracebacks(space.log.read_text())


def test_cpu_space_with_the_tiny_model_answers_the_chat_api(tmp_path, split_dir, crash_clip, example_clips_dir):
    from gradio_client import Client, handle_file

    from crashchat.tasks import TASK_IDS

    space = SpaceApp(tmp_path, split_dir, model="tiny-random", examples=example_clips_dir)
    space.env["CRASHCHAT_MAX_NEW_TOKENS"] = "8"
    space.start()
    try:
        client = Client(space.url, verbose=False, download_files=False, oauth_token="hf_stand_in_user")
        report = client.predict(handle_file(str(crash_clip)), api_name="/analyze")
        assert set(report["tasks"]) == set(TASK_IDS) and report["model"]["random_weights"]
        assert client.predict(api_name="/leaderboard")  # the other tab answers too
    finally:
        space.stop()
    assert not unexpected_tracebacks(space.log.read_text())
