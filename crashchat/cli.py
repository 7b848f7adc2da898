"""Command-line flags shared by `analyze`, `predict` and `inspect`, and what they turn into."""

from __future__ import annotations

import argparse
import sys

from crashchat.tasks import get_task

AUTHORS_MAX_NEW_TOKENS = 2048
"""The authors' evaluation allows 2048 new tokens, and lets a looping answer run to them."""


def model_name(text: str) -> str:
    """`--model`: one of our names, or `hf:<hub id or folder>` for any transformers video-LLM."""
    from crashchat.loading import MODEL_NAMES

    if text in MODEL_NAMES or (text.startswith("hf:") and text[3:].strip()):
        return text
    raise argparse.ArgumentTypeError(
        f"unknown model {text!r}; choose from {', '.join(MODEL_NAMES)} or hf:<hub id or folder>")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The flags that pick the weights (shared by `analyze`, `predict` and `inspect`)."""
    parser.add_argument("--model", type=model_name, default="crashchat", metavar="MODEL",
                        help="crashchat (base + both adapters, default), videollama3 (the base alone), "
                             "tiny-random (random 2-layer model, offline, for trying the pipeline), or "
                             "hf:<hub id or folder> (any transformers video-LLM, zero-shot, e.g. "
                             "hf:Qwen/Qwen3-VL-8B-Instruct)")
    parser.add_argument("--base", help="base weights: authors-eval (default: KDliang/crashchat/"
                                       "videollama3_original_model, the base the authors' evaluation merged each "
                                       "LoRA into), videollama3-7b (DAMO-NLP-SG/VideoLLaMA3-7B), a hub id, "
                                       "hub_id/subfolder or a local dir; native or the authors' layout")
    parser.add_argument("--linguistic", help="linguistic adapter: local dir or HUB_ID/SUBFOLDER")
    parser.add_argument("--perception", help="perception adapter: local dir or HUB_ID/SUBFOLDER")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--cache-dir", help="where converted checkpoints go (default $CRASHCHAT_CACHE, else $XDG_CACHE_HOME/crashchat, else ~/.cache/crashchat)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="hf: models only: allow the checkpoint's own Python code (off by default)")
    parser.add_argument("--max-pixels", type=int,
                        help="hf: models only: scale frames down to at most this many pixels each before the "
                             "model's processor (default: as decoded)")


def add_generation_args(parser: argparse.ArgumentParser, *, repetition_stop: bool,
                        max_new_tokens: int = AUTHORS_MAX_NEW_TOKENS) -> None:
    """Answer length, format guidance and the repetition guard.

    `--max-new-tokens` and `--guided` default to None, "not given": `generation_options` then uses
    the model's own defaults (`crashchat.tiny.generation_defaults`), else `max_new_tokens` and off.
    `repetition_stop` is the command's default for the guard: off for `predict` (a benchmark run
    decodes as the authors did: a loop runs to the length limit and is scored as it is), on for
    `analyze` (a report for a person, like the app's). Both commands take both flags.
    """
    from crashchat.tiny import DEMO_MAX_NEW_TOKENS

    parser.set_defaults(command_max_new_tokens=max_new_tokens)
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help=f"answer length limit (default {max_new_tokens}, as the authors' evaluation; "
                             f"{DEMO_MAX_NEW_TOKENS} for tiny-random)")
    parser.add_argument("--guided", action=argparse.BooleanOptionalAction, default=None,
                        help="format-guided decoding for recognition and the two localizations (answers always "
                             "parse; changes what is measured, so it is off by default and recorded; on by "
                             "default for tiny-random)")
    why = ("on: a report for a person; the benchmark's predict runs without it, as the authors" if repetition_stop
           else "off: as the authors' evaluation, a loop runs to --max-new-tokens and is scored as it is")
    parser.add_argument("--repetition-stop", action=argparse.BooleanOptionalAction, default=repetition_stop,
                        help=f"end an answer stuck in an exact loop early and mark it \"stopped\" "
                             f"(crashchat/stopping.py; changes BLEU/ROUGE of such answers; default {why})")


def generation_options(args) -> dict:
    """What `crashchat.pipeline` is given: the flags as typed, and for a flag not given the model's
    default (`crashchat.tiny.generation_defaults`) or the command's."""
    given = {"max_new_tokens": args.max_new_tokens, "guided": args.guided}
    options = {"max_new_tokens": args.command_max_new_tokens, "guided": False,
               **model_defaults_applied(args), **{k: v for k, v in given.items() if v is not None}}
    if options["max_new_tokens"] < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {options['max_new_tokens']}")
    return {**options, "repetition_stop": args.repetition_stop}


def model_defaults_applied(args) -> dict:
    """The model's own generation defaults that apply because their flag was not given."""
    from crashchat.tiny import generation_defaults

    return {k: v for k, v in generation_defaults(args.model).items() if getattr(args, k) is None}


def add_video_args(parser: argparse.ArgumentParser) -> None:
    """Frame sampling and the video limits (shared by `analyze` and `predict`)."""
    from crashchat.video import VideoLimits

    d = VideoLimits()
    parser.add_argument("--fps", type=float, default=10.0, help="frames sampled per second (default 10, as the paper)")
    parser.add_argument("--max-frames", type=int, default=96, help="at most this many frames (default 96)")
    parser.add_argument("--max-bytes", type=int, default=d.max_bytes, help=f"file size limit (default {d.max_bytes})")
    parser.add_argument("--max-duration", type=float, default=d.max_duration_s, help=f"duration limit in seconds (default {d.max_duration_s})")
    parser.add_argument("--isolate", action="store_true", help="decode in a child process with a timeout")


def add_frames_arg(parser: argparse.ArgumentParser) -> None:
    """`--frames`: which frame policy an `hf:` baseline gets (`predict`, `analyze`, `inspect`)."""
    from crashchat.generic import FRAME_POLICIES

    parser.add_argument("--frames", choices=FRAME_POLICIES, default="benchmark",
                        help="hf: models: benchmark (default: --fps/--max-frames, 10 fps and at most 96 frames, for "
                             "every model alike) or model-card (each family's documented video defaults, read from "
                             "its processor config: Qwen2/2.5/3-VL 2 fps up to 768 frames, LLaVA-OneVision 32 "
                             "frames; its own pixel limits); the provenance records which")


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
    """A `GenericConfig` for `hf:` models, else a CrashChat `ModelConfig`; `ValueError` for bad combinations."""
    from crashchat.generic import MODEL_CARD_HF_ONLY, PREFIX, GenericConfig
    from crashchat.loading import ModelConfig

    if args.model.startswith(PREFIX):
        given = [f"--{n.replace('_', '-')}" for n in ("base", "linguistic", "perception", "cache_dir")
                 if getattr(args, n, None)]
        if given:
            raise ValueError(f"{', '.join(given)}: CrashChat options; an hf: model is loaded as it is")
        return GenericConfig(source=args.model[len(PREFIX):], device=args.device,
                             trust_remote_code=args.trust_remote_code, max_pixels=args.max_pixels,
                             frames=getattr(args, "frames", "benchmark"))
    if args.trust_remote_code or args.max_pixels:
        raise ValueError("--trust-remote-code and --max-pixels apply to hf: models only")
    if getattr(args, "frames", "benchmark") != "benchmark":
        raise ValueError(MODEL_CARD_HF_ONLY)
    return ModelConfig(name=args.model, base=args.base, linguistic=args.linguistic, perception=args.perception,
                       device=args.device, cache_dir=args.cache_dir)


def load(cfg):
    """The model a `model_config` describes (CrashChat or a generic video-LLM)."""
    from crashchat.generic import GenericConfig, load_generic
    from crashchat.loading import load_model

    return load_generic(cfg) if isinstance(cfg, GenericConfig) else load_model(cfg)


def show_progress(no_progress: bool = False, stream=None) -> bool:
    """Whether `analyze`/`predict` draw a progress bar: only for a person watching, that is when
    `stream` (default stderr, where the bar goes) is a terminal; never when it is piped or
    redirected to a file (logs, CI), nor with `--no-progress`."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not no_progress and callable(isatty) and bool(isatty())


def tasks_arg(text: str) -> list[str]:
    try:
        return [get_task(t.strip()).id for t in text.split(",") if t.strip()]
    except KeyError as exc:
        raise argparse.ArgumentTypeError(exc.args[0]) from None
