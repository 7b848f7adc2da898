"""`python -m crashchat predict --split-dir DIR --videos-dir DIR --out FILE.jsonl [--tasks ...] [--model ...] [--resume]`

Answer the test split's prompts for every video and write a leaderboard submission: one JSON row
`{"video": <basename>, "task": <task id>, "response": <raw text>}` per question. Every prompt of
the split is asked (no recognition gate: the benchmark scores each task on its own records).

- Resumable: with `--resume`, rows already in the output (or in parts left by a stopped run) are
  kept and not asked again.
- A missing or unreadable video is recorded in `<out>.errors.jsonl` (one row per video with the
  reason), counted at the end and skipped; nothing is dropped silently.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from crashchat.pipeline import answer
from crashchat.records import RecordError, find_video, read_records
from crashchat.tasks import TASK_IDS, get_task


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
    def from_env(cls) -> "Shard":
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


def run(model, jobs: list[VideoJob], *, videos_dir: Path, out: Path, shard: Shard, video_kwargs: dict,
        options: dict, progress: bool = True) -> tuple[int, int]:
    """Answer this shard's pending questions; returns (rows written, videos failed).

    `options` go to `crashchat.pipeline.answer` (max_new_tokens, guided, repetition_stop).
    """
    from tqdm import tqdm

    from crashchat.video import VideoError, load_video

    part = shard.part(out)
    part_errors = Path(str(part) + ".errors.jsonl")
    mine = jobs[shard.rank::shard.world]

    def load(job: VideoJob):
        """Decode and patch one video (runs in the background thread); errors become values."""
        path = find_video(videos_dir, job.relative)
        if path is None:
            return job, None, f"missing: not found in {videos_dir} as {job.relative} or {job.name}"
        try:
            return job, model.prepare(load_video(path, **video_kwargs)), None
        except VideoError as exc:
            return job, None, f"unreadable: {exc}"

    written = failed = 0
    heartbeat(out, shard)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool, \
            part.open("a", encoding="utf-8") as fh, part_errors.open("w", encoding="utf-8") as err_fh:
        pending = pool.submit(load, mine[0]) if mine else None
        bar = tqdm(total=len(mine), desc=f"predict[{shard.rank}]" if shard.world > 1 else "predict",
                   unit="video", position=shard.rank, disable=not progress, file=sys.stderr)
        for i in range(len(mine)):
            job, prepared, error = pending.result()
            pending = pool.submit(load, mine[i + 1]) if i + 1 < len(mine) else None  # overlap decode
            if error is not None:
                failed += 1
                err_fh.write(json.dumps({"video": job.name, "tasks": [t for t, _ in job.questions],
                                         "error": error}, ensure_ascii=False) + "\n")
                err_fh.flush()
                bar.set_postfix(failed=failed)
            else:
                for task_id, result in answer(model, prepared, job.questions, gate=False, **options):
                    row = {"video": job.name, "task": task_id, "response": result["response"]}
                    if result["stopped"]:
                        row["stopped"] = result["stopped"]
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    written += 1
                fh.flush()  # one video's rows reach the disk together: a resume loses at most one
            heartbeat(out, shard)
            bar.update(1)
        bar.close()
    return written, failed


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
            last = alive.stat().st_mtime if alive.exists() else began
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
    meta = {
        "format": provenance.FORMAT,
        "model": model_block,
        "frames": {"sampler": SAMPLER, "fps": float(video_kwargs["fps"]),
                   "max_frames": int(video_kwargs["max_frames"]), "max_pixels": getattr(model, "max_pixels", None),
                   "token_budget": getattr(model, "token_budget", None)},
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


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: Sequence[str]) -> int:
    from crashchat.cli import (
        add_generation_args,
        add_model_args,
        add_video_args,
        generation_options,
        load,
        model_config,
        tasks_arg,
        video_options,
    )

    parser = argparse.ArgumentParser(prog="python -m crashchat predict", description=__doc__.split("\n\n")[1])
    parser.add_argument("--split-dir", type=Path, required=True, help="folder with crashchat_dada_video_total_<task>_test.json")
    parser.add_argument("--videos-dir", type=Path, required=True, help="folder the split's video paths are relative to (or the videos folder itself)")
    parser.add_argument("--out", type=Path, required=True, help="submission file to write (JSONL); OUT.meta.json records how")
    parser.add_argument("--tasks", type=tasks_arg, default=list(TASK_IDS), help="comma-separated task ids (default: all six)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N videos of the split (to try a setup)")
    parser.add_argument("--resume", action="store_true", help="keep the rows already written and answer the rest")
    parser.add_argument("--rank-timeout", type=float, default=1800.0, metavar="S",
                        help="under accelerate launch: rank 0 gives up on a rank silent this long (default 1800 s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(parser)
    add_generation_args(parser)
    add_video_args(parser)
    args = parser.parse_args(list(argv))

    from crashchat.convert import ConvertError
    from crashchat.weights import ModelLoadError

    started = _now()
    shard = Shard.from_env()
    out: Path = args.out
    try:
        if not args.split_dir.is_dir():
            raise SplitFileError(f"--split-dir {args.split_dir}: no such folder")
        if not args.videos_dir.is_dir():
            raise SplitFileError(f"--videos-dir {args.videos_dir}: no such folder")
        if not out.parent.is_dir():
            raise SplitFileError(f"--out {out}: folder {out.parent} does not exist")
        if args.limit is not None and args.limit < 1:
            raise SplitFileError(f"--limit must be at least 1, got {args.limit}")
        if shard.rank == 0 and not args.resume and out.exists():
            raise SplitFileError(f"--out {out} already exists; pass --resume to continue it, or remove it")
        jobs = read_jobs(args.split_dir, args.tasks)[:args.limit]
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
            print("warning: tiny-random model: RANDOM WEIGHTS, the answers are meaningless", file=sys.stderr)
        run(model, todo, videos_dir=args.videos_dir, out=out, shard=shard, video_kwargs=video_kwargs,
            options=options, progress=not args.no_progress)
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
