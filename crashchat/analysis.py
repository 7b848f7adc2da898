"""`python -m crashchat analyze VIDEO [--model crashchat|videollama3|tiny-random] [--json OUT]`

The six-task report for one video. Each task runs on its group's adapter; as in the paper's
conditional refinement, crash recognition runs first and the two perception (temporal
localization) tasks run only when it answers Yes: otherwise they are reported as skipped and the
report says no crash was detected (`crashchat.pipeline`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

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
from crashchat.pipeline import analyze, task_order
from crashchat.report import build_report, report_markdown
from crashchat.tasks import TASK_IDS


def main(argv: Sequence[str], prog: str = "python -m crashchat analyze") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    parser.add_argument("video", type=Path, help="mp4/mov/avi/mkv/webm file")
    parser.add_argument("--json", dest="json_out", type=Path, metavar="FILE", help="also write the report JSON here")
    parser.add_argument("--tasks", type=tasks_arg, default=list(TASK_IDS),
                        help="comma-separated task ids (default: all six)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (there is none anyway when stderr is not a terminal)")
    add_model_args(parser)
    add_generation_args(parser, repetition_stop=True)  # a report for a person, as the app's
    add_video_args(parser)
    add_frames_arg(parser)
    args = parser.parse_args(list(argv))

    from crashchat.convert import ConvertError
    from crashchat.video import VideoError, load_video
    from crashchat.weights import ModelLoadError

    try:
        cfg = model_config(args)
        generation = generation_options(args)
        options = video_options(args)
        clip = load_video(args.video, **options)  # bad videos fail before the model loads
    except (ValueError, VideoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        model = load(cfg)
    except (ModelLoadError, ConvertError) as exc:  # one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    policy = getattr(model, "frames", None)  # --frames model-card: decoded again at the family's own rate and count
    if policy is not None:
        try:
            clip = load_video(args.video, **{**options, "fps": policy.fps, "max_frames": policy.max_frames})
        except VideoError as exc:  # read once already; a second decode can still meet a changed file
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if model.random_weights:
        from crashchat.tiny import random_weights_note

        print(random_weights_note(list(model_defaults_applied(args))), file=sys.stderr)
    from tqdm import tqdm

    results = {}
    shown = show_progress(args.no_progress)
    with tqdm(total=len(task_order(args.tasks)), desc="analyze", unit="task", file=sys.stderr,
              disable=not shown) as bar:
        for task_id, result in analyze(model, clip, args.tasks, **generation):
            if shown:  # each finished task on its own line above the bar
                state = "skipped (no crash)" if result["skipped"] else f"ready after {result['elapsed_s']:.2f} s"
                bar.write(f"  {task_id}: {state}", file=sys.stderr)
            bar.update()
            results[task_id] = result
    report = build_report(clip, model, results, generation)
    print(report_markdown(report))
    if args.json_out:
        try:
            args.json_out.write_text(json.dumps(report, indent=1))
        except OSError as exc:
            print(f"error: {args.json_out}: cannot write ({exc.strerror or exc})", file=sys.stderr)
            return 2
    return 0
