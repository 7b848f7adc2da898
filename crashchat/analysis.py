"""`python -m crashchat analyze VIDEO [--model crashchat|videollama3|tiny-random] [--json OUT]`

The six-task report for one video. Each task runs on its group's adapter (`crashchat.tasks`);
as in the paper's conditional refinement, crash recognition runs first and the two perception
(temporal localization) tasks run only when it answers Yes: otherwise they are reported as
skipped and the report says no crash was detected.

Free-form chat questions are routed by `route`: to the perception adapter when they ask *when*
something happens, else to the linguistic adapter.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from crashchat.tasks import TASK_IDS, get_task

if TYPE_CHECKING:
    from crashchat.model import CrashChat

RECOGNITION = "crash_recognition"

# --- routing --------------------------------------------------------------------------------------

# Phrases that ask for a time wherever they appear.
_TIME_PHRASES = re.compile(
    r"\b(timestamps?|time ?range|time span|what time|which time|at what (point|moment|second)"
    r"|(which|what) (second|moment|frame)s?|how many seconds|how long (before|after|into)"
    r"|start and end (time|times|timestamps?)|(tell|show) me when|say when"
    # `when` as a question word: followed by an auxiliary, with or without a question mark
    r"|when (exactly |precisely )?(did|does|do|is|was|were|are|will|would|can|could|has|have|had))\b"
)
_SENTENCE = re.compile(r"[^.?!]*[.?!]?")
_OTHER_WH = ("what", "why", "how", "who", "which", "where", "whose", "whom")


def route(question: str) -> str:
    """The task group for a free-form question: `perception` if it asks WHEN something happens.

    The rule (lower-cased text): a time phrase anywhere (`timestamp`, `time range`, `what time`,
    `at what point/moment/second`, `which second`, `how many seconds`, `how long before/after`,
    `start and end time`, `tell me when`, `when` + an auxiliary such as "when did"); or a question sentence (ending in `?`) that contains
    the word `when` and does not open with another wh-word, so "When does the car brake?" and
    "Can you see when it skids?" ask for a time while "What happens when the light turns red?"
    and "Why did it swerve when the truck stopped?" do not. Everything else is `linguistic`.
    A `when` outside a question ("When passing a crossing, slow down.") does not count.

    >>> route("When does the crash happen?")
    'perception'
    >>> route("when did the crash happen")
    'perception'
    >>> route("Can you see when the car starts to skid?")
    'perception'
    >>> route("Give the start and end timestamps of the collision.")
    'perception'
    >>> route("What happens when the light turns red?")
    'linguistic'
    >>> route("Who is at fault? When passing a crossing, slow down.")
    'linguistic'
    >>> route("Describe the crash.")
    'linguistic'
    """
    text = " ".join(question.lower().split())
    if _TIME_PHRASES.search(text):
        return "perception"
    for sentence in _SENTENCE.findall(text):
        sentence = sentence.strip()
        words = re.findall(r"[a-z']+", sentence)
        if sentence.endswith("?") and "when" in words and words[0] not in _OTHER_WH:
            return "perception"
    return "linguistic"


# --- the six-task pipeline ------------------------------------------------------------------------


def task_order(tasks: Sequence[str]) -> list[str]:
    """Recognition first (it gates the rest), then one group after the other (one adapter switch).

    Perception tasks always bring recognition with them: without it the gate cannot decide.

    >>> task_order(["crash_localization", "crash_description"])
    ['crash_recognition', 'crash_description', 'crash_localization']
    """
    wanted = [get_task(t).id for t in tasks]
    if any(get_task(t).group == "perception" for t in wanted) and RECOGNITION not in wanted:
        wanted.append(RECOGNITION)
    ordered = [RECOGNITION] if RECOGNITION in wanted else []
    for group in ("linguistic", "perception"):
        ordered += [t for t in TASK_IDS if t in wanted and t not in ordered and get_task(t).group == group]
    return ordered


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def analyze(model: "CrashChat", clip, tasks: Sequence[str] = TASK_IDS, *, max_new_tokens: int = 256,
            gate: bool = True, generate_options: Callable[[str], dict] | None = None) -> Iterator[tuple[str, dict]]:
    """Answer the tasks for one clip, yielding `(task_id, result)` as each finishes.

    `result` is `{"group", "response", "parsed", "skipped", "seconds"}`; a perception task is
    skipped (`skipped=True`, `response=None`) unless recognition parsed as `Yes` (`gate=False`
    runs them regardless: benchmarks). The clip is prepared once and each group's questions share
    one prefill of the video (`CrashChat.session`). `generate_options(task_id)` may add `generate`
    arguments per task (a timing streamer, fixed answer lengths).
    """
    prepared = model.prepare(clip)
    order = task_order(tasks)
    crash = None
    for group in ("linguistic", "perception"):
        ids = [t for t in order if get_task(t).group == group]
        if not ids:
            continue
        if group == "perception" and gate and crash != "Yes":
            for task_id in ids:
                yield task_id, {"group": group, "response": None, "parsed": None, "skipped": True, "seconds": 0.0}
            continue
        start = time.perf_counter()  # a group's first task also pays for the shared video prefill
        with model.session(prepared, group=group) as ask:
            for task_id in ids:
                task = get_task(task_id)
                options = {"max_new_tokens": max_new_tokens, **(generate_options(task_id) if generate_options else {})}
                response = ask(task.prompt, **options)
                parsed = task.parse(response)
                if task_id == RECOGNITION:
                    crash = parsed
                seconds = time.perf_counter() - start
                yield task_id, {"group": group, "response": response, "parsed": _jsonable(parsed),
                                "skipped": False, "seconds": round(seconds, 3)}
                start = time.perf_counter()


def build_report(clip, model: "CrashChat", results: dict) -> dict:
    """The report JSON: video, model, the gate's verdict and every task's answer."""
    recognition = results.get(RECOGNITION)
    crash = None if recognition is None or recognition["parsed"] is None else recognition["parsed"] == "Yes"
    report = {
        "video": {"path": str(clip.path), "duration_s": round(float(clip.duration_s), 3),
                  "frames": int(len(clip.frames)), "width": int(clip.width), "height": int(clip.height),
                  "timestamps": [round(float(t), 3) for t in clip.timestamps]},
        "model": {"name": model.name, "random_weights": bool(model.random_weights),
                  "groups": list(model.groups) or ["base"], "device": model.device},
        "crash_detected": crash,
        "tasks": {t: results[t] for t in TASK_IDS if t in results},
    }
    if model.random_weights:
        report["warning"] = "RANDOM WEIGHTS: the tiny random model's answers are meaningless"
    return report


def _verdict(crash) -> str:
    return {True: "crash detected", False: "no crash detected", None: "recognition answer unreadable"}[crash]


def report_markdown(report: dict) -> str:
    """A readable summary of a report (terminal output and the app's download)."""
    video, model = report["video"], report["model"]
    lines = [f"# CrashChat report: {Path(video['path']).name}", ""]
    if model["random_weights"]:
        lines += [f"> **{report.get('warning', 'RANDOM WEIGHTS')}**", ""]
    lines += [
        f"- Video: {video['duration_s']:.1f} s, {video['frames']} frames analysed",
        f"- Model: {model['name']}{' (random weights)' if model['random_weights'] else ''}",
        f"- Verdict: **{_verdict(report['crash_detected'])}**",
        "",
    ]
    for task_id, result in report["tasks"].items():
        task = get_task(task_id)
        lines.append(f"## {task.title} ({result['group']})")
        if result["skipped"]:
            lines.append("Skipped: crash recognition did not answer Yes, so there is no crash to localize.")
        else:
            lines.append(result["response"] or "(empty answer)")
            if task.kind != "text":
                lines.append(f"Parsed: {result['parsed'] if result['parsed'] is not None else 'unparseable'}"
                             f" ({result['seconds']:.2f} s)")
            else:
                lines.append(f"({result['seconds']:.2f} s)")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --- command line ---------------------------------------------------------------------------------


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The flags that pick the weights (shared by `analyze` and `predict`)."""
    from crashchat.model import MODEL_NAMES

    parser.add_argument("--model", choices=MODEL_NAMES, default="crashchat",
                        help="crashchat (base + both adapters, default), videollama3 (the base alone), "
                             "tiny-random (random 2-layer model, offline, for trying the pipeline)")
    parser.add_argument("--base", help=f"base weights: hub id or local dir, native or the authors' layout")
    parser.add_argument("--linguistic", help="linguistic adapter: local dir or HUB_ID/SUBFOLDER")
    parser.add_argument("--perception", help="perception adapter: local dir or HUB_ID/SUBFOLDER")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--cache-dir", help="where converted checkpoints go (default ~/.cache/crashchat)")


def add_video_args(parser: argparse.ArgumentParser) -> None:
    """Frame sampling and the video limits (shared by `analyze` and `predict`)."""
    from crashchat.video import VideoLimits

    d = VideoLimits()
    parser.add_argument("--fps", type=float, default=10.0, help="frames sampled per second (default 10, as the paper)")
    parser.add_argument("--max-frames", type=int, default=96, help="at most this many frames (default 96)")
    parser.add_argument("--max-bytes", type=int, default=d.max_bytes, help=f"file size limit (default {d.max_bytes})")
    parser.add_argument("--max-duration", type=float, default=d.max_duration_s, help=f"duration limit in seconds (default {d.max_duration_s})")
    parser.add_argument("--isolate", action="store_true", help="decode in a child process with a timeout")


def video_options(args) -> dict:
    import dataclasses

    from crashchat.video import VideoLimits

    if args.fps <= 0:
        raise ValueError(f"--fps must be positive, got {args.fps}")
    if args.max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1, got {args.max_frames}")
    limits = dataclasses.replace(VideoLimits(), max_bytes=args.max_bytes, max_duration_s=args.max_duration)
    return {"fps": args.fps, "max_frames": args.max_frames, "limits": limits, "isolate": args.isolate}


def model_config(args):
    from crashchat.model import ModelConfig

    return ModelConfig(name=args.model, base=args.base, linguistic=args.linguistic, perception=args.perception,
                       device=args.device, cache_dir=args.cache_dir)


def _tasks_arg(text: str) -> list[str]:
    try:
        return [get_task(t.strip()).id for t in text.split(",") if t.strip()]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(exc.args[0]) from None


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m crashchat analyze", description=__doc__.split("\n\n")[1])
    parser.add_argument("video", type=Path, help="mp4/mov/avi/mkv/webm file")
    parser.add_argument("--json", dest="json_out", type=Path, metavar="FILE", help="also write the report JSON here")
    parser.add_argument("--tasks", type=_tasks_arg, default=list(TASK_IDS),
                        help="comma-separated task ids (default: all six)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="answer length limit (default 256)")
    add_model_args(parser)
    add_video_args(parser)
    args = parser.parse_args(list(argv))

    from crashchat.convert import ConvertError
    from crashchat.model import ModelLoadError, load_model
    from crashchat.video import VideoError, load_video

    try:
        cfg = model_config(args)
        clip = load_video(args.video, **video_options(args))  # bad videos fail before the model loads
    except (ValueError, VideoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        model = load_model(cfg)
    except (ModelLoadError, ConvertError) as exc:  # one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if model.random_weights:
        print("warning: tiny-random model: RANDOM WEIGHTS, the answers are meaningless", file=sys.stderr)
    results = {}
    for task_id, result in analyze(model, clip, args.tasks, max_new_tokens=args.max_new_tokens):
        state = "skipped (no crash)" if result["skipped"] else f"{result['seconds']:.2f} s"
        print(f"  {task_id}: {state}", file=sys.stderr)
        results[task_id] = result
    report = build_report(clip, model, results)
    print(report_markdown(report))
    if args.json_out:
        try:
            args.json_out.write_text(json.dumps(report, indent=1))
        except OSError as exc:
            print(f"error: {args.json_out}: cannot write ({exc.strerror or exc})", file=sys.stderr)
            return 2
    return 0
