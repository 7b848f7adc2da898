"""`crashchat worker --url SPACE_URL --token TOKEN [--once | --until-empty] [--videos-dir DIR] [--split-dir DIR] [--name NAME]`

Evaluates the leaderboard's queued model ids on this machine: claims the oldest pending request
through the app's API, runs `predict --model hf:ID@COMMIT` on every clip of the test split (with
`accelerate launch` over all visible GPUs when there are several), and sends the answers and
their provenance back, or marks the request failed with a one-line reason (unknown id, not a
video model, out of memory, predict's exit code and last error line). Then it carries on with
the next request. While predict runs, a background thread renews the request's lease; if the
worker dies, the lease runs out and the request goes back to the queue for another worker. Any
number of workers may serve one leaderboard.

Before claiming anything the worker checks that every clip of the split is in `--videos-dir`
(`crashchat data fetch` puts them there), so a machine without the clips never fails requests.

## The API contract (named endpoints of the leaderboard app; server side `leaderboard.evaluation_api`)

Public:

    /request_evaluation(model_id, revision, frames)
        -> {"request_id", "status", "duplicate", "model", "revision", "commit", "frames"}
    /evaluation_queue()
        -> [{"request_id", "model", "revision", "commit", "frames", "status", "reason", "created_at",
             "started_at", "finished_at", "worker", "attempts", "row_id", "position"}, ...]  newest first

Worker calls, each with the worker token first (`CRASHCHAT_WORKER_TOKEN` on the server, compared
in constant time):

    /claim_evaluation(token, worker)
        -> {} when nothing is pending, else {"request_id", "lease", "lease_seconds", "model",
           "revision", "commit", "frames": {"name", "fps", "max_frames", "max_pixels"}, "attempt"}
    /renew_evaluation(token, request_id, lease)
        -> {"request_id", "lease_expires"}
    /finish_evaluation(token, request_id, lease, files, provenance)
        files: [predictions.jsonl, predictions.jsonl.meta.json] as uploads;
        provenance: {"worker", "gpu", "gpus", "code_version", "started_at", "finished_at", "seconds"}
        -> {"request_id", "status": "finished", "row_id"}
    /fail_evaluation(token, request_id, lease, reason)
        -> {"request_id", "status": "failed", "reason"}

`status` is pending, running, finished or failed. The lease (a token the claim hands out) is what
renew, finish and fail prove the request is still this worker's: after it runs out another worker
may hold the request, and the old lease is refused. A refused call is an error whose message is
one line (gradio_client raises `AppError` with it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crashchat.predict import errors_path
from crashchat.provenance import SUFFIX
from crashchat.weights import cache_root

POLL_SECONDS = 30.0
TIMEOUT_SECONDS = 48 * 3600.0
"""One predict run is stopped (and the request failed) after this long."""
FINISH_TRIES = 5
_COMMIT = re.compile(r"[0-9a-f]{40}")
_OOM = ("CUDA out of memory", "OutOfMemoryError", "CUDA error: out of memory", "HIP out of memory")


class Refused(Exception):
    """The leaderboard answered no (wrong token, lease lost, answers refused); one line."""


class Unreachable(Exception):
    """The leaderboard could not be reached or failed to answer; worth retrying."""


# --- the transport (the only part that knows gradio_client) -------------------------------------


class GradioTransport:
    """The contract's worker calls over `gradio_client`; kept thin: arguments in, JSON out, errors sorted."""

    def __init__(self, url: str, token: str, *, client_factory: Callable | None = None) -> None:
        self.url, self.token = url, token
        self._factory = client_factory
        self._client = None

    def _connect(self):
        if self._client is None:
            if self._factory is None:
                from gradio_client import Client

                hf_token = os.environ.get("HF_TOKEN")  # a private Space needs it; a public one ignores it
                self._client = Client(self.url, token=hf_token, verbose=False)
            else:
                self._client = self._factory(self.url)
        return self._client

    def _call(self, api_name: str, *args):
        from gradio_client.exceptions import AppError

        try:
            return self._connect().predict(*args, api_name=api_name)
        except AppError as exc:
            raise Refused(_line(exc)) from None
        except Exception as exc:  # noqa: BLE001 - network, a restarting Space, a bad gateway: retried
            self._client = None  # reconnect next time (the Space may have restarted)
            raise Unreachable(f"{type(exc).__name__}: {_line(exc)}") from None

    def claim(self, worker: str) -> dict:
        return self._call("/claim_evaluation", self.token, worker) or {}

    def renew(self, request_id: int, lease: str) -> dict:
        return self._call("/renew_evaluation", self.token, request_id, lease)

    def finish(self, request_id: int, lease: str, files: list[Path], provenance: dict) -> dict:
        from gradio_client import handle_file

        return self._call("/finish_evaluation", self.token, request_id, lease,
                          [handle_file(str(f)) for f in files], provenance)

    def fail(self, request_id: int, lease: str, reason: str) -> dict:
        return self._call("/fail_evaluation", self.token, request_id, lease, reason)


def _line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:limit]


# --- one request ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A claimed request, checked: what predict is asked to run."""

    request_id: int
    lease: str
    lease_seconds: float
    model: str
    commit: str
    """The resolved commit; '' for a local folder (tests with CRASHCHAT_ALLOW_LOCAL_MODELS)."""
    frames: str
    fps: float
    max_frames: int
    max_pixels: int | None
    attempt: int

    @classmethod
    def from_claim(cls, claim: dict) -> Job:
        """The claim's fields, typed and bounded; `ValueError` names the bad one."""
        def need(key, kinds, ok=lambda v: True):
            value = claim.get(key)
            if isinstance(value, bool) or not isinstance(value, kinds) or not ok(value):
                raise ValueError(f"claim field {key!r}: unusable value {str(value)[:80]!r}")
            return value

        frames = claim.get("frames")
        if not isinstance(frames, dict):
            raise ValueError("claim field 'frames': expected an object")
        model = need("model", str, lambda v: 0 < len(v) < 1000 and not any(c.isspace() or ord(c) < 32 for c in v))
        max_pixels = frames.get("max_pixels")
        if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int)
                                       or max_pixels < 28 * 28):
            raise ValueError(f"claim field 'frames.max_pixels': unusable value {max_pixels!r}")
        job = cls(request_id=need("request_id", int), lease=need("lease", str, lambda v: 0 < len(v) <= 200),
                  lease_seconds=float(need("lease_seconds", (int, float), lambda v: v > 0)), model=model,
                  commit=need("commit", str, lambda v: v == "" or bool(_COMMIT.fullmatch(v))),
                  frames=str(frames.get("name", ""))[:40], fps=float(_number(frames, "fps", 0.0)),
                  max_frames=int(_number(frames, "max_frames", 1)), max_pixels=max_pixels,
                  attempt=int(claim.get("attempt") or 1))
        return job

    @property
    def model_arg(self) -> str:
        return f"hf:{self.model}" + (f"@{self.commit}" if self.commit else "")


def _number(block: dict, key: str, minimum: float):
    value = block.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > minimum or value > 10_000:
        raise ValueError(f"claim field 'frames.{key}': unusable value {value!r}")
    return value


@dataclass
class WorkerConfig:
    """How this machine evaluates (`crashchat worker` flags)."""

    name: str
    split_dir: Path
    videos_dir: Path
    work_dir: Path
    gpus: int
    """Processes for predict: `accelerate launch --num_processes gpus` when more than one."""
    device: str | None = None
    """`predict --device` (None: cuda when available); `cpu` in tests."""
    max_new_tokens: int | None = None
    """None: predict's default (the authors' 2048); the leaderboard may refuse other limits."""
    poll_s: float = POLL_SECONDS
    timeout_s: float = TIMEOUT_SECONDS

    def __post_init__(self):
        if self.gpus < 1:
            raise ValueError(f"--gpus must be at least 1, got {self.gpus}")
        if self.poll_s <= 0 or self.timeout_s <= 0:
            raise ValueError("--poll and --timeout must be positive")


def predict_command(job: Job, cfg: WorkerConfig, out: Path) -> list[str]:
    """The predict run for a job, as an argument list (no shell)."""
    args = ["predict", "--model", job.model_arg, "--split-dir", str(cfg.split_dir), "--videos-dir",
            str(cfg.videos_dir), "--out", str(out), "--fps", f"{job.fps:g}", "--max-frames", str(job.max_frames),
            "--no-progress"]
    if job.max_pixels is not None:
        args += ["--max-pixels", str(job.max_pixels)]
    if cfg.device:
        args += ["--device", cfg.device]
    if cfg.max_new_tokens is not None:
        args += ["--max-new-tokens", str(cfg.max_new_tokens)]
    if cfg.gpus > 1:
        return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.gpus),
                "-m", "crashchat", *args]
    return [sys.executable, "-m", "crashchat", *args]


def failure_reason(returncode: int, log: str, gpu: str | None = None) -> str:
    """One line for a predict run that did not succeed.

    >>> failure_reason(1, "loading\\nerror: --model hf:x/y: llama is not an image-text-to-text model\\n")
    'predict exited with code 1: error: --model hf:x/y: llama is not an image-text-to-text model'
    >>> failure_reason(1, "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\\n", "NVIDIA L4")
    'out of memory on NVIDIA L4: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB'
    >>> failure_reason(-9, "")
    'predict was killed by signal 9'
    """
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    oom = next((line for line in reversed(lines) if any(m in line for m in _OOM)), None)
    if oom is not None:
        return _line(f"out of memory{f' on {gpu}' if gpu else ''}: {oom}")
    last = next((line for line in reversed(lines) if line.startswith("error:")), None)
    if last is None:
        last = next((line for line in reversed(lines) if "Error" in line or "error" in line), lines[-1] if lines else "")
    head = f"predict was killed by signal {-returncode}" if returncode < 0 else f"predict exited with code {returncode}"
    return _line(f"{head}: {last}" if last else head)


def run_predict(command: list[str], log_path: Path, *, timeout_s: float, stop: threading.Event) -> int:
    """Run predict with its output in `log_path`; stopped (process group) on `stop` or after `timeout_s`."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=os.name == "posix")
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                return proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
            if stop.is_set() or time.monotonic() > deadline:
                _stop(proc)
                if not stop.is_set():
                    with open(log_path, "a", encoding="utf-8") as log:
                        log.write(f"error: stopped after {timeout_s:g} s (worker --timeout)\n")
                return proc.wait()
    except BaseException:  # Ctrl-C or an error in the worker: never leave predict running on the GPUs
        _stop(proc)
        raise


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    def send(sig: int) -> None:
        # the whole group: accelerate's launcher has children of its own
        with contextlib.suppress(ProcessLookupError):
            if os.name == "posix":
                os.killpg(proc.pid, sig)
            else:
                proc.terminate()

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        send(getattr(signal, "SIGKILL", signal.SIGTERM))
        proc.wait()


class Renewer:
    """Renews a lease every third of its length in a background thread; `lost` is set when refused."""

    def __init__(self, transport, job: Job, interval: float | None = None) -> None:
        self.transport, self.job = transport, job
        self.interval = interval if interval is not None else max(job.lease_seconds / 3, 0.05)
        self.lost = threading.Event()
        self.why = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"renew-{job.request_id}", daemon=True)

    def start(self) -> Renewer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.transport.renew(self.job.request_id, self.job.lease)
            except Refused as exc:
                self.why = str(exc)
                self.lost.set()
                return
            except Unreachable as exc:  # keep trying: the lease may still be saved
                log(f"request #{self.job.request_id}: could not renew the lease ({exc})")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def code_version() -> str:
    """`crashchat <version>` and, in a git checkout, its commit (`+dirty` with local changes)."""
    import crashchat

    text = f"crashchat {crashchat.__version__}"
    repo = Path(crashchat.__file__).resolve().parents[1]
    if (repo / ".git").exists() and shutil.which("git"):
        try:
            commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                    text=True, timeout=10).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return text
        if commit:
            text += f" (git {commit}{'+dirty' if dirty else ''})"
    return text


def log(message: str) -> None:
    print(f"worker: {message}", file=sys.stderr, flush=True)


Runner = Callable[..., int]


def handle(transport, cfg: WorkerConfig, claim: dict, *, runner: Runner = run_predict) -> str:
    """Run one claimed request to its end; returns `finished`, `failed` or `lost` (lease taken away)."""
    try:
        job = Job.from_claim(claim)
    except ValueError as exc:
        rid, lease = claim.get("request_id"), claim.get("lease")
        _fail(transport, rid, lease, f"worker {cfg.name}: {exc}")
        return "failed"
    folder = cfg.work_dir / f"request-{job.request_id}-attempt-{job.attempt}"
    shutil.rmtree(folder, ignore_errors=True)  # a half run of an earlier worker life is not this run's
    folder.mkdir(parents=True)
    out = folder / "predictions.jsonl"
    meta = out.with_name(out.name + SUFFIX)
    command = predict_command(job, cfg, out)
    log(f"request #{job.request_id} (attempt {job.attempt}): {job.model_arg}, frames {job.frames}, "
        f"{cfg.gpus} process(es); log in {folder / 'predict.log'}")
    renewer = Renewer(transport, job).start()
    started, began = _now(), time.monotonic()
    try:
        code = runner(command, folder / "predict.log", timeout_s=cfg.timeout_s, stop=renewer.lost)
        if renewer.lost.is_set():
            log(f"request #{job.request_id}: lost its lease ({renewer.why}); predict stopped, nothing sent")
            return "lost"
        text = (folder / "predict.log").read_text(encoding="utf-8", errors="replace")
        if code != 0 or not out.is_file() or not meta.is_file():
            reason = failure_reason(code, text) if code != 0 else "predict wrote no answers or no provenance"
            _fail(transport, job.request_id, job.lease, reason)
            return "failed"
        unreadable = [line for line in errors_path(out).read_text(encoding="utf-8").splitlines() if line.strip()] \
            if errors_path(out).is_file() else []
        if unreadable:  # this machine's clips, not the model: no partial row under the model's name
            names = [json.loads(line).get("video", "?") for line in unreadable[:3]]
            _fail(transport, job.request_id, job.lease,
                  f"worker {cfg.name}: {len(unreadable)} videos could not be read on this machine "
                  f"({', '.join(names)}); not the model's fault: ask again")
            return "failed"
        run = json.loads(meta.read_text(encoding="utf-8")).get("run", {})
        provenance = {"worker": cfg.name, "gpu": str(run.get("device") or "unknown")[:200],
                      "gpus": int(run.get("processes") or cfg.gpus), "code_version": code_version(),
                      "started_at": started, "finished_at": _now(), "seconds": round(time.monotonic() - began, 1)}
        return _finish(transport, job, [out, meta], provenance)
    finally:
        renewer.stop()


def _finish(transport, job: Job, files: list[Path], provenance: dict) -> str:
    for attempt in range(1, FINISH_TRIES + 1):
        try:
            result = transport.finish(job.request_id, job.lease, files, provenance)
        except Refused as exc:
            _fail(transport, job.request_id, job.lease, f"the leaderboard refused the answers: {exc}")
            return "failed"
        except Unreachable as exc:
            log(f"request #{job.request_id}: could not send the answers ({exc}); try {attempt} of {FINISH_TRIES}")
            time.sleep(min(60.0, job.lease_seconds / 4) * attempt)
            continue
        log(f"request #{job.request_id}: finished, leaderboard row #{result.get('row_id')}")
        return "finished"
    log(f"request #{job.request_id}: gave up sending the answers; its lease will run out and another worker "
        "will take it")
    return "lost"


def _fail(transport, request_id, lease, reason: str) -> None:
    log(f"request #{request_id}: failed: {reason}")
    try:
        transport.fail(request_id, lease, reason)
    except (Refused, Unreachable) as exc:
        log(f"request #{request_id}: could not record the failure ({exc}); its lease will run out")


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the loop -------------------------------------------------------------------------------------


def serve(transport, cfg: WorkerConfig, *, once: bool = False, until_empty: bool = False,
          runner: Runner = run_predict, sleep: Callable[[float], None] = time.sleep) -> int:
    """Claim and handle requests. `once`: one request (exit 0 when it finished or none was pending,
    1 when it failed); `until_empty`: stop when none is pending. Otherwise runs until stopped."""
    while True:
        try:
            claim = transport.claim(cfg.name)
        except Refused as exc:
            print(f"error: the leaderboard refused this worker: {exc}", file=sys.stderr)
            return 2
        except Unreachable as exc:
            if once or until_empty:
                print(f"error: cannot reach the leaderboard: {exc}", file=sys.stderr)
                return 1
            log(f"cannot reach the leaderboard ({exc}); trying again in {cfg.poll_s:g} s")
            sleep(cfg.poll_s)
            continue
        if not claim:
            if once or until_empty:
                log("no pending request")
                return 0
            sleep(cfg.poll_s)
            continue
        try:
            outcome = handle(transport, cfg, claim, runner=runner)
        except Exception as exc:  # noqa: BLE001 - e.g. a full disk: this request fails, the worker goes on
            _fail(transport, claim.get("request_id"), claim.get("lease"),
                  f"worker {cfg.name}: {type(exc).__name__}: {_line(exc)}")
            outcome = "failed"
        if once:
            return 0 if outcome == "finished" else 1


def preflight(split_dir: Path | None, videos_dir: Path) -> Path:
    """The split's folder, once every clip it names is in `videos_dir`; `ValueError` otherwise (one line)."""
    from crashchat.clips import listing, needed_clips
    from crashchat.records import find_video
    from leaderboard.split import SplitError, load_split

    try:
        split = load_split(split_dir)
    except SplitError as exc:
        raise ValueError(str(exc)) from None
    needed = needed_clips(split)
    missing = [n for n in needed if find_video(videos_dir, f"videos/{n}") is None]
    if missing:
        raise ValueError(f"{len(missing)} of the split's {len(needed)} clips are not in {videos_dir} "
                         f"({listing(missing, 5)}); get them with `crashchat data fetch` first")
    if not split.official:
        log(f"warning: the split in {split.dir} is not the published one; the leaderboard scores the answers "
            "on its own split, so videos this one lacks count as missing")
    return split.dir


def visible_gpus() -> int:
    """CUDA devices this process may use (CUDA_VISIBLE_DEVICES respected); no CUDA context is created."""
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch or no driver: a CPU machine
        return 0


def main(argv: list[str], prog: str = "python -m crashchat worker") -> int:
    from crashchat.clips import default_dest

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    parser.add_argument("--url", required=True, help="the leaderboard app, e.g. https://<owner>-<space>.hf.space")
    parser.add_argument("--token", default=os.environ.get("CRASHCHAT_WORKER_TOKEN"),
                        help="the app's CRASHCHAT_WORKER_TOKEN (default: that environment variable; safer than "
                             "the command line, which other users of the machine can see)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="handle one request and exit")
    mode.add_argument("--until-empty", action="store_true", help="handle requests until none is pending, then exit")
    parser.add_argument("--videos-dir", type=Path, default=None,
                        help="the clips (default: where `crashchat data fetch` puts them)")
    parser.add_argument("--split-dir", type=Path, default=None,
                        help="the test split (default: CRASHCHAT_SPLIT_DIR, else the verified download)")
    parser.add_argument("--name", default=socket.gethostname(), help="this worker's name in the queue and the "
                                                                     "provenance (default: the host name)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where each request's answers and predict log go (default $CRASHCHAT_CACHE/worker)")
    parser.add_argument("--gpus", type=int, default=None, help="processes for predict (default: every visible GPU)")
    parser.add_argument("--device", help="predict --device (default: cuda when available)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="predict --max-new-tokens (default: the authors' 2048; for trials only)")
    parser.add_argument("--poll", type=float, default=POLL_SECONDS, help=f"seconds between looks at an empty "
                                                                         f"queue (default {POLL_SECONDS:g})")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS,
                        help=f"stop one predict run after this many seconds (default {TIMEOUT_SECONDS:g})")
    args = parser.parse_args(argv)
    if not args.token:
        print("error: --token (or CRASHCHAT_WORKER_TOKEN) is required: the app's worker token", file=sys.stderr)
        return 2
    videos_dir = args.videos_dir or default_dest()
    try:
        split_dir = preflight(args.split_dir, videos_dir)
        work_dir = args.work_dir or cache_root() / "worker"
        work_dir.mkdir(parents=True, exist_ok=True)
        cfg = WorkerConfig(name=args.name, split_dir=split_dir, videos_dir=videos_dir, work_dir=work_dir,
                           gpus=args.gpus or max(visible_gpus(), 1), device=args.device,
                           max_new_tokens=args.max_new_tokens, poll_s=args.poll, timeout_s=args.timeout)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log(f"{cfg.name}: serving {args.url} with {cfg.gpus} process(es), clips in {videos_dir}")
    try:
        return serve(GradioTransport(args.url, args.token), cfg, once=args.once, until_empty=args.until_empty)
    except KeyboardInterrupt:
        log("stopped; a request in progress goes back to the queue when its lease runs out")
        return 130
