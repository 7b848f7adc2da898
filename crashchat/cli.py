"""Command-line flags shared by `analyze`, `predict` and `inspect`, and what they turn into."""

from __future__ import annotations

import argparse

from crashchat.tasks import get_task


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The flags that pick the weights (shared by `analyze` and `predict`)."""
    from crashchat.loading import MODEL_NAMES

    parser.add_argument("--model", choices=MODEL_NAMES, default="crashchat",
                        help="crashchat (base + both adapters, default), videollama3 (the base alone), "
                             "tiny-random (random 2-layer model, offline, for trying the pipeline)")
    parser.add_argument("--base", help="base weights: hub id or local dir, native or the authors' layout")
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
    from crashchat.loading import ModelConfig

    return ModelConfig(name=args.model, base=args.base, linguistic=args.linguistic, perception=args.perception,
                       device=args.device, cache_dir=args.cache_dir)


def tasks_arg(text: str) -> list[str]:
    try:
        return [get_task(t.strip()).id for t in text.split(",") if t.strip()]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(exc.args[0]) from None
