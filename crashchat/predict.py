"""`python -m crashchat predict --split-dir DIR --videos-dir DIR --out FILE.jsonl [--tasks ...] [--model ...] [--resume]`

Answer the test split's prompts for every video and write a leaderboard submission: one JSON row
`{"video": <basename>, "task": <task id>, "response": <raw text>}` per question. Every prompt of
the split is asked (no recognition gate: the benchmark scores each task on its own records).

- Resumable: with `--resume`, rows already in the output (or in parts left by a stopped run) are
  kept and not asked again.
- The inputs are checked before any model is loaded: the split, the videos (how many of the split's
  are found, and the first missing names) and that the output folder can be written. A missing
  video is then recorded in `<out>.errors.jsonl` (one row per video with the reason), counted at
  the end and skipped, as is one that does not decode; nothing is dropped silently. When none of
  the split's videos is found the command stops there (exit 2). Without `--videos-dir` the clips
  are read where `crashchat data fetch` puts them (`crashchat.clips.default_dest()`); without
  `--split-dir` the split comes from `CRASHCHAT_SPLIT_DIR` or the verified download
  (`leaderboard.split.load_split`).
- The next video is decoded (and patched by the processor) in a background thread while the model
  answers the current one; each group's questions share one prefill of the video.
- Several GPUs: `accelerate launch --num_processes N -m crashchat predict ...`. Videos are split
  across processes by index; each writes `<out>.part<rank>.jsonl`, and rank 0 merges the parts
  into `<out>` once every rank has written its `.done` marker (a file, so that ranks finishing far
  apart never hit a collective timeout).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from crashchat.clips import listing
from crashchat.pipeline import answer_clips
from crashchat.records import RecordError, find_video, read_records
from crashchat.tasks import GROUPS, TASK_IDS, get_task


class SplitFileError(ValueError):
    """A split or output file cannot be read; the message names the file and the record."""


@dataclass
class VideoJob:
    """Every question the split asks about one video."""

    name: str
    """Basename: the key of the submission rows."""
    relative: str
    """`video[0]` as written in the split (`videos/x.mp4`)."""
    questions: list[tuple[str, str]] = field(default_factory=list)
    """(task id, question as the model is asked it) in task order."""


def read_jobs(split_dir: Path, tasks: Sequence[str]) -> list[VideoJob]:
    """The split's questions grouped per video, videos in first-seen order (recognition first).

    A question is the split's human value as written, `<video>\n` included: the authors'
    evaluation asks it that way (`../shared/reference/authors_eval.md`). Answers are not needed.
    """
    jobs: dict[str, VideoJob] = {}
    for task_id in tasks:
        task = get_task(task_id)
        path = split_dir / task.split_file()
        if not path.is_file():
            raise SplitFileError(f"{path}: no such split file (task {task.id}); pass --tasks to choose others")
        try:
            found, _ = read_records(path, task=task.id, require_answer=False)
        except RecordError as exc:
            raise SplitFileError(str(exc)) from None
        for rec in found:
            job = jobs.setdefault(rec.name, VideoJob(rec.name, rec.video))
            if any(t == task.id for t, _ in job.questions):
                raise SplitFileError(f"{rec.where}: video {rec.name} appears twice in this file")
            job.questions.append((task.id, rec.human))
    order = {t: i for i, t in enumerate(TASK_IDS)}
    for job in jobs.values():
        job.questions.sort(key=lambda q: order[q[0]])
    return list(jobs.values())


def read_rows(path: Path) -> list[dict]:
    """Rows of a JSONL file; a torn last line (a run killed mid-write) is ignored, others are errors."""
    if not path.is_file():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                continue
            raise SplitFileError(f"{path}:{number}: not valid JSON; fix or delete the file") from None
    return rows


@dataclass(frozen=True)
class Shard:
    """Which videos this process answers, from the variables `accelerate launch` sets."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> Shard:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))

    def part(self, out: Path, rank: int | None = None) -> Path:
        return out.with_name(f"{out.name}.part{self.rank if rank is None else rank}")


def _rank(part: Path) -> int:
    return int(part.name.rsplit(".part", 1)[1])


def errors_path(out: Path) -> Path:
    return out.with_name(out.name + ".errors.jsonl")


def _parts(out: Path) -> list[Path]:
    """The rows each rank wrote (`OUT.part<rank>`), not their markers or error files."""
    return sorted(p for p in out.parent.glob(out.name + ".part*") if p.name[len(out.name) + 5:].isdigit())


def merge(out: Path) -> tuple[int, int]:
    """Rank 0: append the parts' new rows to `out`, gather errors, remove the parts. Returns (rows, errors)."""
    rows = read_rows(out)
    seen = {(r["video"], r["task"]) for r in rows}
    added = []
    for part in _parts(out):
        for row in read_rows(part):
            key = (row["video"], row["task"])
            if key not in seen:
                seen.add(key)
                added.append(row)
    tmp = out.with_name(out.name + ".merging")  # rewritten whole: drops a torn last line, never half-written
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows + added:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    errors = []
    for err in sorted(out.parent.glob(out.name + ".part*.errors.jsonl")):
        errors += read_rows(err)
        err.unlink()
    errors = [e for e in errors if not any((e["video"], t) in seen for t in e.get("tasks", []))]
    with errors_path(out).open("w", encoding="utf-8") as fh:
        for e in errors:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")
    for part in _parts(out) + sorted(out.parent.glob(out.name + ".part*.done")) + sorted(
            out.parent.glob(out.name + ".part*.alive")):
        part.unlink()
    return len(rows) + len(added), len(errors)


def _prepare_one(preparer, videos_dir: Path, video_kwargs: dict, relative: str, name: str):
    """Decode and prepare one video; (prepared, None), or (None, why) for a missing or unreadable one."""
    from crashchat.video import VideoError, load_video

    path = find_video(videos_dir, relative)
    if path is None:
        return None, f"missing: not found in {videos_dir} as {relative} or {name}"
    try:
        return preparer(load_video(path, **video_kwargs)), None
    except VideoError as exc:
        return None, f"unreadable: {exc}"


_WORKER: tuple | None = None


def _init_worker(preparer, videos_dir: Path, video_kwargs: dict, threads: int) -> None:
    """A decoding worker process: its preparer (the model's processor) arrives once, not per video."""
    global _WORKER
    if "torch" in sys.modules:  # unpickling the preparer loaded it (the model's processor does)
        import torch

        torch.set_num_threads(threads)
    else:  # a preparer without torch: no seconds spent importing it; should it load torch later, it starts so
        os.environ["OMP_NUM_THREADS"] = str(threads)
    _WORKER = (preparer, videos_dir, video_kwargs)


def _worker_prepare(relative: str, name: str):
    preparer, videos_dir, video_kwargs = _WORKER
    return _prepare_one(preparer, videos_dir, video_kwargs, relative, name)


def prepared_jobs(jobs: Sequence[VideoJob], preparer, *, videos_dir: Path, video_kwargs: dict, workers: int = 1,
                  ahead: int = 2):
    """`(job, prepared, error)` in job order, decoded and prepared ahead of the model.

    One background thread by default; with `workers` > 1, that many processes (spawned, so no
    CUDA or torch threads are inherited), at most `ahead` videos in flight. Tensors come back
    through shared memory (torch's multiprocessing reductions). A worker that dies (a decoder
    crash) costs only the video it held: that one is reported unreadable and a new pool takes
    over the rest.
    """
    import collections
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    if workers > 1:
        import torch.multiprocessing  # noqa: F401  (registers the shared-memory tensor reductions)

    def new_pool():
        """A pool and how to hand it one job."""
        if workers <= 1:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
            return pool, lambda job: pool.submit(_prepare_one, preparer, videos_dir, video_kwargs, job.relative, job.name)
        threads = max(1, (os.cpu_count() or 1) // workers)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(preparer, videos_dir, video_kwargs, threads))
        return pool, lambda job: pool.submit(_worker_prepare, job.relative, job.name)

    pool, submit = new_pool()
    todo = collections.deque(jobs)
    flying: collections.deque = collections.deque()
    try:
        while todo or flying:
            while todo and len(flying) < max(1, ahead):
                try:
                    future = submit(todo[0])
                except BrokenProcessPool:
                    # a worker died since the last look (the model is slower than decoding, so this is
                    # the usual way to learn of it): the video it held is in flight, and its future
                    # reports the break below. With none in flight (an idle worker killed), start afresh.
                    if flying:
                        break
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool, submit = new_pool()
                    continue
                flying.append((todo.popleft(), future))
            job, future = flying.popleft()
            try:
                prepared, error = future.result()
            except BrokenProcessPool:
                # some worker died, not necessarily on this video: retry it alone in a fresh pool
                requeue = [j for j, _ in flying]
                flying.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool, submit = new_pool()
                try:
                    prepared, error = submit(job).result()
                except BrokenProcessPool:
                    prepared, error = None, "unreadable: the decoding worker died on this video"
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool, submit = new_pool()
                todo.extendleft(reversed(requeue))
            yield job, prepared, error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run(model, jobs: list[VideoJob], *, videos_dir: Path, out: Path, shard: Shard, video_kwargs: dict,
        options: dict, progress: bool = True, workers: int = 1, batch_videos: int = 1) -> tuple[int, int]:
    """Answer this shard's pending questions; returns (rows written, videos failed).

    `options` go to `crashchat.pipeline.answer_clips` (max_new_tokens, guided, repetition_stop).
    Videos are decoded ahead by `workers` (`prepared_jobs`) and answered `batch_videos` at a time
    (each group's questions about them in one batch); rows are written video by video in the
    order a one-video-at-a-time run writes them, so the output is the same.
    """
    from tqdm import tqdm

    part = shard.part(out)
    part_errors = Path(str(part) + ".errors.jsonl")
    mine = jobs[shard.rank::shard.world]
    written = failed = 0
    heartbeat(out, shard)
    ahead = max(2, 2 * batch_videos, workers + batch_videos)
    with part.open("a", encoding="utf-8") as fh, part_errors.open("w", encoding="utf-8") as err_fh:
        bar = tqdm(total=len(mine), desc=f"predict[{shard.rank}]" if shard.world > 1 else "predict",
                   unit="video", position=shard.rank, disable=not progress, file=sys.stderr)
        ready: list[tuple[VideoJob, object]] = []
        # one background thread may use the model's GPU for the processor; worker processes stay on the CPU
        preparer = model.preparer(model.device) if workers <= 1 else model.preparer()
        loaded = prepared_jobs(mine, preparer, videos_dir=videos_dir, video_kwargs=video_kwargs,
                               workers=workers, ahead=ahead)
        for n, (job, prepared, error) in enumerate(loaded, start=1):
            if error is not None:
                failed += 1
                err_fh.write(json.dumps({"video": job.name, "tasks": [t for t, _ in job.questions],
                                         "error": error}, ensure_ascii=False) + "\n")
                err_fh.flush()
                bar.set_postfix(failed=failed)
                bar.update(1)
            else:
                ready.append((job, prepared))
            if ready and (len(ready) == batch_videos or n == len(mine)):
                written += _answer_and_write(model, ready, fh, options)
                heartbeat(out, shard)
                bar.update(len(ready))
                ready = []
        bar.close()
    return written, failed


def _answer_and_write(model, ready: list, fh, options: dict) -> int:
    """Answer a chunk of videos together and write their rows, video by video, in task order."""
    results: dict[int, dict[str, dict]] = {}
    for i, task_id, result in answer_clips(model, [p for _, p in ready], [job.questions for job, _ in ready],
                                           gate=False, **options):
        results.setdefault(i, {})[task_id] = result
    written = 0
    for i, (job, _) in enumerate(ready):
        # the order a single-video run yields: linguistic questions first (GROUPS order), then perception
        for group in GROUPS:
            for task_id, _ in job.questions:
                if get_task(task_id).group != group:
                    continue
                result = results[i][task_id]
                row = {"video": job.name, "task": task_id, "response": result["response"]}
                if result["stopped"]:
                    row["stopped"] = result["stopped"]
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
    fh.flush()  # a chunk's rows reach the disk together: a resume loses at most one chunk
    return written


def _pending(jobs: list[VideoJob], done: set[tuple[str, str]]) -> list[VideoJob]:
    out = []
    for job in jobs:
        questions = [q for q in job.questions if (job.name, q[0]) not in done]
        if questions:
            out.append(VideoJob(job.name, job.relative, questions))
    return out


def heartbeat(out: Path, shard: Shard) -> None:
    """Mark this rank alive (rank 0 gives up on a rank whose mark is older than --rank-timeout)."""
    Path(str(shard.part(out)) + ".alive").touch()


def wait_for_ranks(out: Path, shard: Shard, timeout_s: float, poll_s: float = 5.0) -> None:
    """Rank 0: wait for every other rank's `.done` marker; `RankTimeout` if one stops showing signs of life.

    A file per rank, no collective: ranks that finish far apart never hit a NCCL timeout, and a
    rank that died (its `.alive` mark not touched for `timeout_s`) is reported instead of waited
    for forever.
    """
    began = time.time()
    waiting = set(range(1, shard.world))
    while True:
        waiting = {r for r in waiting if not Path(str(shard.part(out, r)) + ".done").exists()}
        if not waiting:
            return
        now = time.time()
        for r in sorted(waiting):
            alive = Path(str(shard.part(out, r)) + ".alive")
            # a mark older than this wait is a killed run's leftover: count from the wait's start
            last = max(alive.stat().st_mtime, began) if alive.exists() else began
            if now - last > timeout_s:
                raise RankTimeout(
                    f"rank {r} has shown no progress for {now - last:.0f} s (--rank-timeout {timeout_s:g}) and has "
                    f"not finished; it may have died. Its answers so far are kept: rerun with --resume")
        time.sleep(poll_s)


class RankTimeout(RuntimeError):
    """Another rank stopped making progress; the message says what to do."""


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    import crashchat

    versions = {"crashchat": crashchat.__version__}
    for name in ("torch", "transformers", "peft", "accelerate", "decord", "av", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return device


def _split_dir(given: Path | None) -> Path:
    """`--split-dir` as given, else the split `leaderboard.split.load_split` finds (env, verified cache)."""
    if given is not None:
        if not given.is_dir():
            raise SplitFileError(f"--split-dir {given}: no such folder")
        return given
    from leaderboard.split import SplitError, load_split

    try:
        return load_split().dir
    except SplitError as exc:
        raise SplitFileError(f"--split-dir not given: {exc}") from None


def missing_videos(jobs: Sequence[VideoJob], videos_dir: Path) -> list[str]:
    """Names of the jobs' videos not in `videos_dir` (a stat per video: nothing is opened)."""
    return [job.name for job in jobs if find_video(videos_dir, job.relative) is None]


def check_writable(out: Path) -> None:
    """`out`'s folder exists and takes a new file (tried, not guessed from permission bits)."""
    import tempfile

    if not out.parent.is_dir():
        raise SplitFileError(f"--out {out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise SplitFileError(f"--out {out}: is a folder; name the file to write")
    try:
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".check"):
            pass
    except OSError as exc:
        raise SplitFileError(f"--out {out}: cannot write in {out.parent} ({exc.strerror or exc})") from None


def meta_path(out: Path) -> Path:
    from crashchat.provenance import SUFFIX

    return out.with_name(out.name + SUFFIX)


def write_meta(out: Path, *, model, args, video_kwargs: dict, options: dict, started: str, questions: int) -> dict:
    """`OUT.meta.json` (`crashchat.provenance`): how these predictions were made, counted from `out`."""
    from crashchat import provenance
    from crashchat.video import SAMPLER

    model_block = model.provenance()
    rows = read_rows(out)
    errors = read_rows(errors_path(out))
    frames = {"sampler": SAMPLER, "fps": float(video_kwargs["fps"]), "max_frames": int(video_kwargs["max_frames"]),
              "max_pixels": getattr(model, "max_pixels", None), "token_budget": getattr(model, "token_budget", None),
              "policy": getattr(model, "frame_policy", "benchmark")}
    settings = getattr(model, "settings", None)  # CrashChat: what the base's configs set, and from where
    if settings is not None:
        frames.update(token_compression=settings.token_compression, min_tokens=settings.min_tokens,
                      image_mean=list(settings.image_mean), image_std=list(settings.image_std),
                      settings_from=_clipped(settings.sources))
    policy = getattr(model, "frames", None)  # hf: models under --frames model-card: where fps and frames came from
    if policy is not None:
        frames.update(settings_from=_clipped(policy.sources))
    meta = {
        "format": provenance.FORMAT,
        "model": model_block,
        "frames": frames,
        "prompt": {"format": model.prompt_format, "video_tag": model.prompt_format == "authors-eval",
                   "system_prompt": False},
        "generation": {"do_sample": False, "num_beams": 1, "max_new_tokens": int(options["max_new_tokens"]),
                       "guided": bool(options["guided"]), "repetition_stop": bool(options["repetition_stop"])},
        "run": {"started_at": started, "finished_at": _now(), "device": _device_name(model.device),
                "processes": Shard.from_env().world, "tasks": list(args.tasks)},
        "answers": {"written": len(rows), "skipped": max(questions - len(rows), 0), "videos_failed": len(errors),
                    "stopped_by_repetition": sum(1 for r in rows if r.get("stopped") == "repetition")},
        "packages": _package_versions(),
    }
    meta = provenance.validate(meta)  # what we write is what the leaderboard accepts
    path = meta_path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return meta


def _clipped(sources: dict) -> dict:
    """Setting -> source, each within the provenance's text limit (a source may name a long local path)."""
    from crashchat.provenance import MAX_TEXT

    return {k: v[:MAX_TEXT] for k, v in sources.items()}


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: Sequence[str], prog: str = "python -m crashchat predict") -> int:
    from crashchat.cli import (
        add_frames_arg,
        add_generation_args,
        add_model_args,
        add_video_args,
        generation_options,
        load,
        model_config,
        model_defaults_applied,
        show_progress,
        tasks_arg,
        video_options,
    )

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    parser.add_argument("--split-dir", type=Path,
                        help="folder with crashchat_dada_video_total_<task>_test.json (default: CRASHCHAT_SPLIT_DIR, "
                             "else the verified download in the cache)")
    parser.add_argument("--videos-dir", type=Path,
                        help="folder the split's video paths are relative to, or the videos folder itself (default: "
                             "where `crashchat data fetch` puts them, $CRASHCHAT_CACHE/videos/resized)")
    parser.add_argument("--out", type=Path, required=True, help="submission file to write (JSONL); OUT.meta.json records how")
    parser.add_argument("--tasks", type=tasks_arg, default=list(TASK_IDS), help="comma-separated task ids (default: all six)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N videos of the split (to try a setup)")
    parser.add_argument("--resume", action="store_true", help="keep the rows already written and answer the rest")
    parser.add_argument("--rank-timeout", type=float, default=1800.0, metavar="S",
                        help="under accelerate launch: rank 0 gives up on a rank silent this long (default 1800 s)")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="decode and prepare videos in N worker processes ahead of the model (default 1: one "
                             "background thread)")
    parser.add_argument("--batch-videos", type=int, default=1, metavar="N",
                        help="answer N videos together (each group's questions about them in one batch; default 1)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (there is none anyway when stderr is not a terminal)")
    add_model_args(parser)
    add_generation_args(parser, repetition_stop=False)  # decode as the authors' evaluation
    add_video_args(parser)
    add_frames_arg(parser)
    args = parser.parse_args(list(argv))

    from crashchat.convert import ConvertError
    from crashchat.weights import ModelLoadError

    started = _now()
    shard = Shard.from_env()
    out: Path = args.out
    try:
        args.split_dir = _split_dir(args.split_dir)
        if args.videos_dir is None:
            from crashchat.clips import default_dest

            args.videos_dir = default_dest()
            if not args.videos_dir.is_dir():
                raise SplitFileError(f"--videos-dir not given and {args.videos_dir} does not exist: get the clips "
                                     "with `crashchat data fetch`, or pass --videos-dir DIR")
        if not args.videos_dir.is_dir():
            raise SplitFileError(f"--videos-dir {args.videos_dir}: no such folder")
        check_writable(out)
        if args.limit is not None and args.limit < 1:
            raise SplitFileError(f"--limit must be at least 1, got {args.limit}")
        for flag, value in (("--workers", args.workers), ("--batch-videos", args.batch_videos)):
            if value < 1:
                raise SplitFileError(f"{flag} must be at least 1, got {value}")
        if shard.rank == 0 and not args.resume and out.exists():
            raise SplitFileError(f"--out {out} already exists; pass --resume to continue it, or remove it")
        jobs = read_jobs(args.split_dir, args.tasks)[:args.limit]
        missing = missing_videos(jobs, args.videos_dir)
        if jobs and len(missing) == len(jobs):
            raise SplitFileError(f"--videos-dir {args.videos_dir}: none of the split's {len(jobs)} videos is there "
                                 f"(looked for {jobs[0].relative} and {jobs[0].name}); get them with `crashchat data "
                                 "fetch`")
        done = {(r["video"], r["task"]) for p in [out, *_parts(out)] for r in read_rows(p)} if args.resume else set()
        video_kwargs = video_options(args)
        options = generation_options(args)
        cfg = model_config(args)
    except (SplitFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.resume:  # parts left by an earlier, stopped run are not this run's answers
        stale = [p for p in _parts(out) if p == shard.part(out) or (shard.rank == 0 and _rank(p) >= shard.world)]
        for p in stale:
            p.unlink()
    todo = _pending(jobs, done)
    total = sum(len(j.questions) for j in jobs)
    if shard.rank == 0:
        print(f"{len(jobs)} videos, {total} questions; {total - sum(len(j.questions) for j in todo)} already answered",
              file=sys.stderr)
        print(f"videos: {len(jobs) - len(missing)} of {len(jobs)} found in {args.videos_dir}"
              + (f"; {len(missing)} missing ({listing(missing)}): recorded in {errors_path(out)} and skipped"
                 if missing else ""), file=sys.stderr)
    Path(str(shard.part(out)) + ".done").unlink(missing_ok=True)
    model = None
    if todo:
        if cfg.device is None and shard.world > 1:
            cfg.device = f"cuda:{int(os.environ.get('LOCAL_RANK', shard.rank))}"
        try:
            model = load(cfg)
        except (ModelLoadError, ConvertError) as exc:  # one line, no traceback
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if model.random_weights and shard.rank == 0:
            from crashchat.tiny import random_weights_note

            print(random_weights_note(list(model_defaults_applied(args))), file=sys.stderr)
        policy = getattr(model, "frames", None)  # --frames model-card: the family's own fps and frame count
        if policy is not None:
            video_kwargs = {**video_kwargs, "fps": policy.fps, "max_frames": policy.max_frames}
        run(model, todo, videos_dir=args.videos_dir, out=out, shard=shard, video_kwargs=video_kwargs,
            options=options, progress=show_progress(args.no_progress), workers=args.workers,
            batch_videos=args.batch_videos)
    Path(str(shard.part(out)) + ".done").touch()
    if shard.rank != 0:
        return 0
    try:
        wait_for_ranks(out, shard, args.rank_timeout)
    except RankTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows, failed = merge(out)
    print(f"wrote {out}: {rows} of {total} answers", file=sys.stderr)
    if failed:
        print(f"{failed} video(s) missing or unreadable, skipped: see {errors_path(out)}", file=sys.stderr)
    if model is not None:
        meta = write_meta(out, model=model, args=args, video_kwargs=video_kwargs, options=options,
                          started=started, questions=total)
        if meta["answers"]["stopped_by_repetition"]:
            print(f"{meta['answers']['stopped_by_repetition']} answer(s) ended early by the repetition guard "
                  "(marked \"stopped\" in their rows)", file=sys.stderr)
        print(f"provenance: {meta_path(out)}", file=sys.stderr)
    if rows == 0:
        print(f"error: nothing could be predicted: {total} questions, 0 answers; see {errors_path(out)}", file=sys.stderr)
        return 1
    return 0
