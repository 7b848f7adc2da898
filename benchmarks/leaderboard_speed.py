"""python benchmarks/leaderboard_speed.py [--split-dir DIR] [--rows 1000 10000] [--repeat 10] [--out FILE]

The leaderboard at scale, 1,000 and 10,000 verified rows side by side (issue 18, item 8):
- the database: bytes per row;
- in-process: `/leaderboard` (the API's function, the first page of 100) and a table view (a page
  of the main table with its highlighting, and Gradio's own postprocessing of the Dataframe value),
  each from the caches, right after a write, and uncached (every cache cleared: every row parsed
  again, what the first call after start costs);
- one write: `Store.add` of one scored row (the database's share of a submission) beside the
  scoring of a complete submission (`scoring.score`, 1000 resamples: the rest of it);
- through a real `python app.py`: `/leaderboard` over plain HTTP (cached, and right after a
  submission through the app's own `/submit`), the same while 30 table views of other users are
  queued, a table view event right after a write, and the app's memory (resident set) beside the
  same app on an empty database.

The rows are real scorer results: three complete submissions with model-like answers (each answer
the truth, or another video's answer to the same question, so the text compresses like a model's)
are scored with 1000 bootstrap resamples, then stored N times over with jittered numbers, distinct
names, submitters and identities, each with its base's packed answers, through `Store.add`.
Everything stops by itself (HTTP calls time out; the app is terminated).
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
sys.path[:0] = [str(ROOT)]

from crashchat.tasks import TASKS  # noqa: E402
from leaderboard.scoring import score  # noqa: E402
from leaderboard.split import load_split  # noqa: E402
from leaderboard.store import Store, pack_answers  # noqa: E402
from leaderboard.submission import canonical_rows, read_submission  # noqa: E402
from leaderboard.ui import Board  # noqa: E402

TARGETS = {"/leaderboard": 0.2, "table view": 0.3}
HTTP_TIMEOUT = 120


def model_like(split, seed: int, right: float = 0.6) -> bytes:
    """A complete JSONL submission: each answer the truth, else another video's answer to the task."""
    rng = random.Random(seed)
    lines = []
    for task in TASKS:
        records = split.records[task.id]
        for rec in records:
            answer = rec.answer if rng.random() < right else rng.choice(records).answer
            lines.append(json.dumps({"video": rec.video, "task": task.id, "response": answer}))
    return "\n".join(lines).encode()


def jitter(result: dict, rng: random.Random) -> dict:
    """The same result with every rate moved a little (so rows sort differently)."""
    out = copy.deepcopy(result)
    same = out["protocols"]["strict"] == out["protocols"]["paper"]  # a complete row: one set of numbers
    for proto in ([out["protocols"]["paper"]] if same else out["protocols"].values()):
        for metrics in proto["tasks"].values():
            for key, value in metrics.items():
                if isinstance(value, float) and 0 <= value <= 1:
                    metrics[key] = min(1.0, max(0.0, value + rng.uniform(-0.05, 0.05)))
    if same:
        out["protocols"]["strict"] = copy.deepcopy(out["protocols"]["paper"])
    if out["overall"]["value"] is not None:
        out["overall"]["value"] = min(1.0, max(0.0, out["overall"]["value"] + rng.uniform(-0.05, 0.05)))
    return out


def scored_bases(split) -> list[tuple[dict, object, float]]:
    bases = []
    for seed in range(3):
        sub = read_submission([(f"base{seed}.jsonl", model_like(split, seed))], split)
        start = time.perf_counter()
        result = score(sub, split, bootstrap=1000, seed=seed)
        bases.append((result, pack_answers(canonical_rows(sub.answers)), time.perf_counter() - start))
    return bases


def fill(store: Store, bases, start: int, stop: int) -> None:
    rng = random.Random(start)
    for i in range(start, stop):
        result, packed, _ = bases[i % len(bases)]
        store.add(model=f"benchmark model {i:05d}", submitter=f"user{i % 97}", answers_sha256=f"bench-{i:064d}",
                  files_sha256="0" * 64, files=[("benchmark.jsonl", "0" * 64)], result=jitter(result, rng),
                  answers=packed, notes="benchmark row")


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


def in_process(store: Store, split_dir: Path, repeat: int, bases) -> dict[str, tuple[float, float, float]]:
    import gradio as gr

    board = Board(store, split_dir=split_dir)
    frame = gr.Dataframe(datatype="str", interactive=False)

    def table_view():
        frame.postprocess(board.view("paper")["value"])  # what Gradio does with the value before sending it

    calls = {"/leaderboard": lambda: board.api_rows("paper"), "table view": table_view}
    row = store.rows()[-1]

    def write():  # a re-scored row: the store's generation moves on, that row is parsed again
        store.update_result(row.id, store.result(row.id))

    out = {}
    for name, fn in calls.items():
        fn()  # warm: the first call fills the caches
        out[name] = (timed(fn, repeat), timed(fn, repeat, before=write), timed(fn, 3, before=board.clear_cache))
    assert board.api_rows("paper")["total"] == len(store.rows()) + 10
    return out


def one_write(store: Store, bases, n: int) -> float:
    """Median seconds of `Store.add` of one scored row into the full store."""
    times = []
    for k in range(5):
        start = time.perf_counter()
        fill(store, bases, n + k, n + k + 1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(db: Path, split_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, CRASHCHAT_DB=str(db), CRASHCHAT_SPLIT_DIR=str(split_dir), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1")
    env.pop("CRASHCHAT_RESULTS_REPO", None)
    env.pop("SPACE_ID", None)
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"app.py did not start:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.5)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def call(url: str, name: str, data: list) -> object:
    """A named endpoint through Gradio's documented `/call` route (plain HTTP, JSON parsed)."""
    request = urllib.request.Request(f"{url}gradio_api/call/{name}", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
        event = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{name}/{event}", timeout=HTTP_TIMEOUT) as response:
        body = response.read().decode("utf-8")
    if "event: error" in body:
        raise RuntimeError(f"{name}: {body[-300:]}")
    return json.loads(body.split("data: ", 1)[1])[0]


def table_view(url: str, search: str) -> None:
    """One table-view event as the page sends it (Gradio's queue: join, then read the stream)."""
    config = json.loads(urllib.request.urlopen(url + "config", timeout=HTTP_TIMEOUT).read())
    main = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "board-main")
    search_box = next(c["id"] for c in config["components"] if c.get("props", {}).get("label") == "Search")
    dep = next(d for d in config["dependencies"] if main in d["outputs"] and len(d["inputs"]) == 6
               and any(t[0] == search_box for t in d.get("targets", [])))
    session = uuid.uuid4().hex[:12]
    body = json.dumps({"fn_index": dep["id"], "data": ["paper", search, None, True, [], 1], "session_hash": session,
                       "event_data": None, "trigger_id": search_box}).encode()
    request = urllib.request.Request(url + "gradio_api/queue/join", data=body, headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=HTTP_TIMEOUT).read()
    with urllib.request.urlopen(f"{url}gradio_api/queue/data?session_hash={session}", timeout=HTTP_TIMEOUT) as stream:
        for line in stream:
            if b"process_completed" in line:
                assert b'"success": true' in line or b'"success":true' in line, line[:200]
                return


def upload(url: str, path: Path) -> dict:
    """A file into the app's upload route, as gradio_client sends it."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{path.name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "gradio_api/upload", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
        remote = json.loads(response.read())[0]
    return {"path": remote, "meta": {"_type": "gradio.FileData"}, "orig_name": path.name}


def over_http(db: Path, split_dir: Path, split, repeat: int, work: Path, round_: int) -> dict[str, float]:
    out: dict[str, float] = {}
    proc, url = start_app(db, split_dir, work / "app.log")
    try:
        start = time.perf_counter()
        page = call(url, "leaderboard", ["paper", False, 100, 0])
        out["first /leaderboard after start"] = time.perf_counter() - start
        out["payload KB"] = len(json.dumps(page)) / 1024
        out["/leaderboard cached"] = timed(lambda: call(url, "leaderboard", ["paper", False, 100, 0]), repeat)

        # After a write through the app: a small new submission through /submit, then the call.
        after, views = [], []
        for k in range(3):
            path = work / f"new{round_}-{k}.jsonl"
            first = (round_ * 3 + k) * 20
            rows = [json.dumps({"video": r.video, "task": "crash_recognition", "response": "Yes"})
                    for r in split.records["crash_recognition"][first:first + 20]]
            path.write_text("\n".join(rows))
            added = call(url, "submit", [[upload(url, path)], f"http write {round_}.{k}", "", "", None])
            assert added["leaderboard"]["added"]
            start = time.perf_counter()
            call(url, "leaderboard", ["paper", False, 100, 0])
            after.append(time.perf_counter() - start)
            fresh = Store(db)  # another process writes too: the app sees the generation move on
            row = fresh.rows()[0]
            fresh.update_result(row.id, fresh.result(row.id))
            start = time.perf_counter()
            table_view(url, "")
            views.append(time.perf_counter() - start)
        out["/leaderboard after a write"] = statistics.median(after)
        out["table view after a write"] = statistics.median(views)

        threads = [threading.Thread(target=table_view, args=(url, f"benchmark model {i:05d}")) for i in range(30)]
        for thread in threads:
            thread.start()
        time.sleep(0.05)
        out["/leaderboard during 30 table views"] = timed(lambda: call(url, "leaderboard", ["paper", False, 100, 0]), 5)
        for thread in threads:
            thread.join(timeout=HTTP_TIMEOUT)
        out["app memory MB"] = rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return out


def empty_app_memory(split_dir: Path, work: Path) -> float:
    proc, url = start_app(work / "empty.sqlite3", split_dir, work / "empty.log")
    try:
        call(url, "leaderboard", ["paper", False, 100, 0])
        time.sleep(1)
        return rss_mb(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split-dir", default=str(ROOT.parent / "shared/data/crashchat"))
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()
    split_dir = Path(args.split_dir)
    split = load_split(split_dir)
    started = time.perf_counter()
    bases = scored_bases(split)
    columns: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = work / "board.sqlite3"
        store = Store(db)
        baseline = empty_app_memory(split_dir, work)
        next_index = 0
        for round_, n in enumerate(sorted(args.rows)):
            missing = n - len(store.rows())
            start = time.perf_counter()
            fill(store, bases, next_index, next_index + missing)
            fill_s = time.perf_counter() - start
            next_index += missing
            size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))
            figures = {"rows stored per second (filling)": missing / fill_s,
                       "database KB per row": size / len(store.rows()) / 1024}
            for name, (cached, after, uncached) in in_process(store, split_dir, args.repeat, bases).items():
                figures[f"{name} in-process cached"] = cached
                figures[f"{name} in-process after a write"] = after
                figures[f"{name} in-process uncached"] = uncached
            figures["one write (Store.add)"] = one_write(store, bases, 10**6 + 10 * round_)
            figures.update(over_http(db, split_dir, split, args.repeat, work, round_))
            figures["app memory MB, empty database"] = baseline
            columns[n] = figures

    sizes = sorted(columns)
    score_s = statistics.median(b[2] for b in bases)
    lines = [f"# python benchmarks/leaderboard_speed.py --rows {' '.join(map(str, sizes))} --repeat {args.repeat}   "
             f"({time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core CPU, Python {sys.version.split()[0]}, "
             f"{time.perf_counter() - started:.0f} s in all)",
             "# seconds unless said; medians; targets at 10,000 rows: /leaderboard <= 0.2 s after a write through the "
             "app, table view <= 0.3 s, <= 20 KB per row, app memory <= 500 MB",
             f"{'':<44}" + "".join(f"{f'{n:,} rows':>14}" for n in sizes)]
    keys = list(columns[sizes[0]])
    for key in keys:
        cells = []
        for n in sizes:
            value = columns[n][key]
            cells.append(f"{value:>14.1f}" if key.endswith(("MB", "KB", "per row", "(filling)")) else f"{value:>14.4f}")
        lines.append(f"{key:<44}" + "".join(cells))
    lines += [f"# scoring one complete submission (scoring.score, 1000 resamples): {score_s:.2f} s, beside the "
              "write above: a submission's time is its scoring",
              "# in-process 'after a write': the first call after one row was re-scored (that row parsed again, the",
              "# page rebuilt); 'uncached': every cache cleared first (every row parsed: the first call after start).",
              "# Through the app: plain HTTP to Gradio's /call route; 'after a write' follows a /submit through the app;",
              "# the table view is the Search box's event through the queue, after another process wrote a row;",
              "# 'during 30 table views': /leaderboard while 30 table views with distinct searches are queued.",
              "# App memory: resident set of the app process (chat tab included: torch alone is ~0.4 GB) after",
              "# these calls, beside the same app on an empty database (the difference is the leaderboard's rows)."]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
