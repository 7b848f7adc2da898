"""python benchmarks/leaderboard_speed.py [--split-dir DIR] [--rows 1000] [--repeat 20] [--out FILE] [--db FILE]

Times the leaderboard's read paths on a store of 1000 verified rows: `/leaderboard` (the API's
function) and a full table view (the main table with its highlighting, the CSV of the view, and
Gradio's own postprocessing of the Dataframe value), each served from the caches and, in the same
run, on the uncached path (every cache cleared before each call: every row's JSON parsed and every
table built again, which is what every call cost before the caches). Then the same `/leaderboard`
through a real `python app.py` (plain HTTP and gradio_client, JSON of 1000 rows included), also
while 30 table-view events from other users are queued.

The rows are real scorer results: a few random full submissions are scored (1000 bootstrap
resamples each) and stored 1000 times over with jittered numbers and distinct identities, each
with the real compressed answers, through `Store.add` as `submit` stores them.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from submissions import random_responses, write_jsonl  # noqa: E402

from leaderboard.intake import read_upload  # noqa: E402
from leaderboard.scoring import score  # noqa: E402
from leaderboard.split import load_split  # noqa: E402
from leaderboard.store import Store  # noqa: E402
from leaderboard.submission import answers_digest, canonical_rows, read_submission  # noqa: E402
from leaderboard.ui import Board  # noqa: E402

TARGETS = {"/leaderboard": 0.2, "full table view": 0.3}


def jitter(result: dict, rng: random.Random) -> dict:
    """The same result with every rate moved a little (so rows sort differently)."""
    out = copy.deepcopy(result)
    for proto in out["protocols"].values():
        for metrics in proto["tasks"].values():
            for key, value in metrics.items():
                if isinstance(value, float) and 0 <= value <= 1:
                    metrics[key] = min(1.0, max(0.0, value + rng.uniform(-0.05, 0.05)))
    return out


def build_store(path: Path, split_dir: Path, rows: int) -> Store:
    split = load_split(split_dir)
    store = Store(path)
    rng = random.Random(0)
    bases = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(3):
            preds = write_jsonl(Path(tmp) / f"s{seed}.jsonl", random_responses(split_dir, seed=seed, missing=0.0))
            sub = read_submission([preds], split)
            bases.append((score(sub, split, bootstrap=1000, seed=seed), canonical_rows(sub.answers),
                          read_upload([preds])))
    for i in range(rows):
        result, answers, upload = bases[i % len(bases)]
        store.add(model=f"benchmark model {i:04d}", answers_sha256=answers_digest(answers + [{"row": i}]),
                  files_sha256=upload.files_sha256, files=upload.files, result=jitter(result, rng),
                  answers=answers, notes="benchmark row")
    return store


def timed(fn, repeat: int, *, before=None) -> float:
    """Median seconds of `repeat` calls (`before()` runs untimed ahead of each call)."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def in_process(store: Store, split_dir: Path, repeat: int) -> dict[str, tuple[float, float]]:
    import gradio as gr

    board = Board(store, split_dir=split_dir)
    frame = gr.Dataframe(datatype="str", interactive=False)

    def table_view():
        shown, csv_path = board.view("paper", "", None, True)
        frame.postprocess(shown)  # what Gradio does with the value before sending it

    calls = {"/leaderboard": lambda: board.api_rows("paper"), "full table view": table_view,
             "pickers (row choices)": lambda: board.choices("paper")}
    row = store.rows()[-1]

    def write():  # a re-scored row: the store's generation moves on, one row's JSON is parsed again
        store.update_result(row.id, row.result)

    out = {}
    for name, fn in calls.items():
        fn()  # warm: the first call fills the caches
        cached = timed(fn, repeat)
        after_write = timed(fn, max(3, repeat // 4), before=write)
        uncached = timed(fn, max(3, repeat // 4), before=board.clear_cache)
        out[name] = (cached, after_write, uncached)
    assert len(board.api_rows("paper")) == len(store.rows()) + 10
    return out


def over_http(db: Path, split_dir: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """`/leaderboard` through `python app.py`: (first call, median of later calls) for a plain
    HTTP client (Gradio's documented `/call` route, JSON parsed) and for gradio_client; and the
    payload size."""
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, CRASHCHAT_DB=str(db), CRASHCHAT_SPLIT_DIR=str(split_dir), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1")
    env.pop("CRASHCHAT_RESULTS_REPO", None)
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"

    def plain_http() -> list:
        request = urllib.request.Request(url + "gradio_api/call/leaderboard", data=b'{"data": ["paper", false]}',
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as response:
            event = json.loads(response.read())["event_id"]
        with urllib.request.urlopen(f"{url}gradio_api/call/leaderboard/{event}") as response:
            body = response.read().decode("utf-8")
        return json.loads(body.split("data: ", 1)[1])[0]

    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("app.py did not start") from None
                time.sleep(0.5)
        out = {}
        start = time.perf_counter()
        rows = plain_http()
        out["/leaderboard via HTTP (app.py)"] = (time.perf_counter() - start, timed(plain_http, repeat))
        client = Client(url, verbose=False)
        call = lambda: client.predict("paper", api_name="/leaderboard")  # noqa: E731
        out["/leaderboard via gradio_client"] = (out["/leaderboard via HTTP (app.py)"][0], timed(call, repeat))
        assert call() == rows
        out["/leaderboard during 30 table views"] = (None, during_views(url, call, views=30))
        return out, len(json.dumps(rows))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def table_view(url: str, search: str) -> None:
    """One table-view event as the page sends it (Gradio's queue: join, then read the stream)."""
    config = json.loads(urllib.request.urlopen(url + "config").read())
    main = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "board-main")
    fn_index = next(d["id"] for d in config["dependencies"] if main in d["outputs"] and len(d["inputs"]) == 4)
    session = uuid.uuid4().hex[:12]
    body = json.dumps({"fn_index": fn_index, "data": ["paper", search, None, True], "session_hash": session,
                       "event_data": None, "trigger_id": None}).encode()
    request = urllib.request.Request(url + "gradio_api/queue/join", data=body, headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request).read()
    with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={session}") as stream:
        for line in stream:
            if b"process_completed" in line:
                assert b'"success": true' in line or b'"success":true' in line, line[:200]
                return


def during_views(url: str, call, views: int) -> float:
    """Median `/leaderboard` time while `views` table views (each a new search: nothing cached) run."""
    threads = [threading.Thread(target=table_view, args=(url, f"benchmark model {i:04d}")) for i in range(views)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    for thread in threads:
        thread.join()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split-dir", default=str(ROOT.parent / "shared/data/crashchat"))
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--db", type=Path, help="keep the store here and reuse it when it has --rows rows")
    args = parser.parse_args()
    split_dir = Path(args.split_dir)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "board.sqlite3"
        if db.exists() and len(Store(db).rows()) == args.rows:
            store = Store(db)
        else:
            db.unlink(missing_ok=True)
            store = build_store(db, split_dir, args.rows)
        size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 1024**2
        results = in_process(store, split_dir, args.repeat)
        http, payload = over_http(db, split_dir, args.repeat)

    lines = [f"# python benchmarks/leaderboard_speed.py --rows {args.rows} --repeat {args.repeat}   "
             f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core CPU, Python {sys.version.split()[0]})",
             f"# store: {args.rows} verified rows + 10 paper rows, {size:.0f} MB on disk",
             f"{'median seconds per call':<34}{'cached':>10}{'after a write':>15}{'uncached':>10}{'ratio':>8}"
             f"{'target':>9}"]
    for name, (cached, after_write, uncached) in results.items():
        target = f"<= {TARGETS[name]}" if name in TARGETS else ""
        lines.append(f"{name:<34}{cached:>10.4f}{after_write:>15.3f}{uncached:>10.3f}{uncached / cached:>7.0f}x"
                     f"{target:>9}")
    for name, (first, later) in http.items():
        if "during" in name:  # no uncached counterpart: the value under load only
            lines.append(f"{name:<34}{later:>10.4f}")
        else:
            lines.append(f"{name:<34}{later:>10.4f}{'':>15}{first:>10.3f}{first / later:>7.0f}x{'<= 0.2':>9}")
    lines += ["# cached: served from the caches; after a write: the first call after any write to the store",
              "# (one row re-scored: that row's JSON is parsed again, the tables rebuilt); uncached: every",
              "# cache cleared first, every row's JSON parsed (what every call cost before the caches).",
              f"# Over HTTP ({payload / 1024**2:.1f} MB of JSON per call) 'uncached' is the first call after start;",
              "# 'during 30 table views': gradio_client's call while 30 table-view events with distinct searches",
              "# (each built anew) are queued by other users."]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
