"""Evaluation requests end to end against `python app.py`: model ids asked for through the app's
API, a real `crashchat worker` process claiming them over HTTP, `predict` on a tiny random
Qwen2-VL saved as a local folder, the answers filed back as an `evaluated` row.

One app and one worker run cover the three paths the issue names: a request whose first worker
died (claimed and never renewed) is taken again once its lease runs out; a model that cannot be
loaded ends `failed` with predict's reason and the worker goes on to the next request; the tiny
model's answers become a row of kind `evaluated`, listed apart from self-reported rows, whose
provenance names the worker, its device and the code version.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from hf_families import write_family
from live_app import REPO, LiveApp
from mini_split import VIDEOS, write_mini_split

from crashchat.tasks import TASK_IDS

TOKEN = "e2e-worker-token"
LEASE_S = 2.0
READABLE = [v for v in VIDEOS if v[2] == "ok"]


@pytest.fixture(scope="module")
def evaluating_app(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluations")
    split_dir, videos_dir = write_mini_split(root / "data", READABLE)
    app = LiveApp(root / "board.sqlite3", split_dir, env={
        "CRASHCHAT_WORKER_TOKEN": TOKEN, "CRASHCHAT_ALLOW_LOCAL_MODELS": "1",
        "CRASHCHAT_EVAL_MAX_NEW_TOKENS": "3", "CRASHCHAT_LEASE_SECONDS": str(LEASE_S),
        "CRASHCHAT_MODEL": "tiny-random"})
    app.start()
    yield app, root, split_dir, videos_dir
    app.stop()


def test_requests_go_through_a_worker_to_an_evaluated_row(evaluating_app):
    from gradio_client import Client
    from transformers import Qwen2VLConfig

    app, root, split_dir, videos_dir = evaluating_app
    tiny = write_family("qwen2_vl", root / "tiny-qwen2-vl")
    broken = root / "config-only"  # passes the request checks; predict cannot load it
    Qwen2VLConfig().save_pretrained(broken)
    client = Client(app.url, verbose=False)

    asked = client.predict(str(tiny), "main", "paper", api_name="/request_evaluation")
    assert asked["status"] == "pending" and not asked["duplicate"]
    again = client.predict(str(tiny), "main", "paper", api_name="/request_evaluation")
    assert again["request_id"] == asked["request_id"] and again["duplicate"]
    bad = client.predict(str(broken), "main", "paper", api_name="/request_evaluation")
    with pytest.raises(Exception, match="frames: 'every-frame' is not a frame policy"):
        client.predict(str(tiny), "main", "every-frame", api_name="/request_evaluation")
    with pytest.raises(Exception, match="wrong worker token"):
        client.predict("not-the-token", "thief", api_name="/claim_evaluation")

    # A worker that dies after claiming: the oldest request is held, never renewed.
    dead = client.predict(TOKEN, "dead-worker", api_name="/claim_evaluation")
    assert dead["request_id"] == asked["request_id"]
    time.sleep(LEASE_S + 0.5)

    env = dict(os.environ, CRASHCHAT_WORKER_TOKEN=TOKEN, HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-m", "crashchat", "worker", "--url", app.url, "--until-empty", "--name", "e2e-worker",
         "--videos-dir", str(videos_dir), "--split-dir", str(split_dir), "--work-dir", str(root / "work"),
         "--device", "cpu", "--gpus", "1", "--max-new-tokens", "3", "--poll", "0.2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    queue = {r["request_id"]: r for r in client.predict(api_name="/evaluation_queue")}
    done, failed = queue[asked["request_id"]], queue[bad["request_id"]]
    assert failed["status"] == "failed" and failed["worker"] == "e2e-worker"
    assert "cannot read its config or processor" in failed["reason"], failed["reason"]
    assert done["status"] == "finished" and done["worker"] == "e2e-worker" and done["attempts"] == 2
    assert "submitter" not in done  # who asked is not published by the queue

    page = client.predict("strict", False, 100, 0, "evaluated", api_name="/leaderboard")
    [row] = page["rows"]
    assert page["total"] == 1 and row["id"] == done["row_id"] and row["kind"] == "evaluated"
    assert row["model"] == "local/tiny-qwen2-vl"
    by = row["evaluation"]
    assert by["request_id"] == asked["request_id"] and by["worker"] == "e2e-worker" and by["gpu"] == "cpu"
    assert by["code_version"].startswith("crashchat ") and by["frames"] == "paper"
    assert row["how_produced"].startswith("evaluated here (request #")
    # Every clip was answered (random weights, 3 tokens: the answers rarely parse, so coverage is not asserted).
    assert row["answered"]["crash_recognition"][1] == len(READABLE)
    assert all(c == "evaluated" for c in [r["kind"] for r in client.predict(
        "paper", False, 100, 0, "evaluated", api_name="/leaderboard")["rows"]])
    assert client.predict("strict", False, 100, 0, "verified", api_name="/leaderboard")["total"] == 0
    meta = client.predict("strict", True, 100, 0, "evaluated", api_name="/leaderboard")["rows"][0]["provenance"]
    assert meta["model"]["id"] == f"hf:{tiny.resolve()}" and meta["frames"]["max_frames"] == 96
    assert meta["generation"]["max_new_tokens"] == 3 and sorted(meta["run"]["tasks"]) == sorted(TASK_IDS)
    with pytest.raises(Exception, match="kind must be empty"):
        client.predict("strict", False, 100, 0, "made-up", api_name="/leaderboard")

    # The finished request is a duplicate now; its lease is gone, so a late call from the dead worker fails.
    assert client.predict(str(tiny), "main", "paper", api_name="/request_evaluation")["status"] == "finished"
    with pytest.raises(Exception, match="not held by this lease"):
        client.predict(TOKEN, dead["request_id"], dead["lease"], "too late", api_name="/fail_evaluation")
