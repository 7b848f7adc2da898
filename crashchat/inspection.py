"""`python -m crashchat inspect VIDEO [--task ...] [--model ...] [--json OUT]`

Exactly what the model would see for a video, without loading its weights: the decoder used, the
source frames picked and their labels, the resized frame size, the visual tokens before and after
token compression, and the full prompt text of each task. Use it to check a reproduction against
the authors' evaluation (`../shared/reference/authors_eval.md`) or to see how an `hf:` model's
processor lays out a clip.

The prompt text is exact. Runs of the video placeholder token are written `<|video_pad|>×N`
(run-length, lossless): a 96-frame clip has ~15k of them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from crashchat.tasks import TASK_IDS, get_task


def compact(text: str, token: str) -> str:
    """Runs of `token` written as `token×N` (N > 1).

    >>> compact("a<p><p><p>b<p>", "<p>")
    'a<p>×3b<p>'
    """
    pattern = re.compile(f"(?:{re.escape(token)})+")
    return pattern.sub(lambda m: token if len(m.group()) == len(token) else f"{token}×{len(m.group()) // len(token)}",
                       text)


def video_facts(clip) -> dict:
    """Where the frames came from: decoder, source frames, their presentation times and labels."""
    labels = clip.labels() if hasattr(clip, "labels") else list(clip.timestamps)
    return {
        "path": str(clip.path), "decoder": clip.backend, "notes": list(clip.notes),
        "duration_s": round(float(clip.duration_s), 6), "native_fps": round(float(clip.native_fps), 6),
        "width": int(clip.width), "height": int(clip.height),
        "start_time": float(getattr(clip, "start_time", 0.0)),
        "container_duration_s": getattr(clip, "container_duration_s", None),
        "sample_fps": float(clip.sample_fps), "filtered_frames": int(getattr(clip, "filtered_frames", 0)),
        "frames": [{"source_index": int(i), "source_time": float(t), "label": round(float(label), 6),
                    "shown_as": f"{float(label):.1f}"}
                   for i, t, label in zip(getattr(clip, "source_indices", ()) or range(len(clip.frames)),
                                          getattr(clip, "source_times", ()) or clip.timestamps, labels, strict=False)],
    }


def crashchat_view(processor, clip, tasks: Sequence[str]) -> dict:
    """VideoLLaMA3's view: resized size, visual tokens per frame before/after compression, prompts."""
    from crashchat.prompt import PIXELS_PER_MERGED_TOKEN, chat_text, prepare_clip

    prepared = prepare_clip(processor, clip)
    video = prepared.video_inputs
    merge = int(video["video_merge_sizes"][0])
    patch = processor.video_processor.patch_size
    grid = [int(x) for x in video["video_grid_thw"][0]]
    frames, rows, cols = grid
    per_frame_before = rows * cols // (merge * merge)
    kept = [len(re.findall(re.escape(processor.video_token), part))
            for part in prepared.placeholder.split(",Time ")]
    size = processor.video_processor.size
    return {
        "processor": {"patch_size": patch, "merge_size": merge,
                      "min_tokens_per_frame": size["shortest_edge"] // PIXELS_PER_MERGED_TOKEN,
                      "token_budget": size["longest_edge"] // PIXELS_PER_MERGED_TOKEN,
                      "token_compression": bool(processor.video_processor.use_token_compression)},
        "resized": {"width": cols * patch, "height": rows * patch},
        "visual_tokens": {"before_compression": per_frame_before * frames, "after_compression": sum(kept),
                          "per_frame_after": kept},
        "prompts": {t: compact(chat_text(processor, get_task(t).question, prepared=prepared), processor.video_token)
                    for t in tasks},
    }


def generic_view(model_or_processor, clip, tasks: Sequence[str], max_pixels: int | None = None) -> dict:
    """An `hf:` model's view: its own processor and chat template (video, then the untagged question)."""
    from crashchat.generic import GenericVideoLLM, chat_text, resize_frames

    processor = model_or_processor.processor if isinstance(model_or_processor, GenericVideoLLM) else model_or_processor
    frames = resize_frames(clip.frames, max_pixels)
    video_token = getattr(processor, "video_token", "<video>")
    prompts, counts = {}, {}
    for task_id in tasks:
        text = chat_text(processor, get_task(task_id).question)
        batch = processor(text=[text], videos=[frames], video_metadata=[clip.metadata()], do_sample_frames=False,
                          return_tensors="pt")
        shown = processor.tokenizer.decode(batch["input_ids"][0])
        prompts[task_id] = compact(shown, video_token)
        counts[task_id] = shown.count(video_token)
    return {"processor": type(processor).__name__, "resized": {"height": int(frames.shape[1]), "width": int(frames.shape[2])},
            "visual_tokens": {"video_tokens": max(counts.values()) if counts else 0}, "prompts": prompts}


def inspect(clip, tasks: Sequence[str], *, model: str = "crashchat", base: str | None = None,
            max_pixels: int | None = None, trust_remote_code: bool = False, frames: str = "benchmark",
            video_options: dict | None = None) -> dict:
    """The whole view as a JSON-ready dict (see the module docstring).

    `frames="model-card"` (hf: models, as `predict --frames model-card`): the clip is decoded again
    (`load_video(clip.path, **video_options)`) at the family's documented rate and frame count, as
    the model would see it in a run, and `frame_policy` says where each value came from.
    """
    if model.startswith("hf:"):
        from transformers import AutoConfig, AutoProcessor

        from crashchat.generic import GenericConfig, _fetch, check_video_support, model_card_frames

        cfg = GenericConfig(model[3:], trust_remote_code=trust_remote_code, max_pixels=max_pixels, frames=frames)
        folder, revision = _fetch(cfg)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=trust_remote_code)
        policy = {"name": "benchmark"}
        if frames == "model-card":
            from crashchat.video import load_video

            family = check_video_support(AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code),
                                         processor, cfg.source)
            card = model_card_frames(family, processor)
            clip = load_video(clip.path, **{**(video_options or {}), "fps": card.fps, "max_frames": card.max_frames})
            policy = {"name": card.name, "fps": card.fps, "max_frames": card.max_frames, "sources": card.sources}
        out = {"model": model, "video": video_facts(clip), "frame_policy": policy}
        out.update(prompt_format="chat-template", tokenizer=str(folder), revision=revision)
        out.update(generic_view(processor, clip, tasks, max_pixels))
        return out
    if frames != "benchmark":
        from crashchat.generic import MODEL_CARD_HF_ONLY

        raise ValueError(MODEL_CARD_HF_ONLY)
    out = {"model": model, "video": video_facts(clip)}
    processor, tokenizer_note, base_info, settings = _videollama3_processor(model, base)
    out.update(prompt_format="authors-eval", tokenizer=tokenizer_note, base=base_info, settings=settings.to_json())
    out.update(crashchat_view(processor, clip, tasks))
    return out


def _videollama3_processor(model: str, base: str | None):
    """The processor CrashChat would build: (processor, where its tokenizer came from, the base, settings).

    With `--base` (a short name, hub id or folder) the base's configs and tokenizer are read (from
    the Hub: its small files only, no weights), so the settings are the run's. Without it nothing is
    downloaded: the default base is named, its settings are the defaults (said so), and since the
    prompt text and the visual tokens do not depend on the tokenizer (the chat format and the
    placeholder are ours) the tiny tokenizer stands in; it is said so too.
    """
    from crashchat.bases import BaseInfo, ProcessorSettings, parse_base
    from crashchat.prompt import build_processor
    from crashchat.tiny import TINY_TOKEN_BUDGET, tiny_tokenizer

    if model == "tiny-random" and base is None:
        from crashchat.loading import TINY_BASE, tiny_settings

        settings = tiny_settings()
        return (build_processor(tiny_tokenizer(), token_budget=TINY_TOKEN_BUDGET, settings=settings),
                "tiny-random's own (budget and floor of the tiny model)",
                {**BaseInfo(TINY_BASE).to_json(), "read": True}, settings)
    if base is None:
        default = parse_base(None)
        why = f"default (the base's configs were not read: pass --base {default.name} to read them)"
        settings = ProcessorSettings(sources=dict.fromkeys(ProcessorSettings().sources, why))
        info = BaseInfo(default.id, default.name, default.repo, default.subfolder)
        return (build_processor(tiny_tokenizer(), settings=settings),
                "stand-in (no --base given): text and visual tokens exact, token ids not those of the real model",
                {**info.to_json(), "read": False}, settings)
    from crashchat.bases import HubBase, processor_settings
    from crashchat.convert import BASE_PATTERNS
    from crashchat.loading import base_files

    choice = parse_base(base)
    folder, info = base_files(choice, [p for p in BASE_PATTERNS if p != "*.safetensors"], base)
    settings = processor_settings(folder, info.id, choice.vision_encoder if isinstance(choice, HubBase) else None)
    return (build_processor(_tokenizer(folder), settings=settings), f"{info.id} (the base's own)",
            {**info.to_json(), "read": True}, settings)


def _tokenizer(folder: Path):
    """The base's tokenizer, native or in the authors' layout (read as the conversion copies it)."""
    import tempfile

    from transformers import AutoTokenizer

    from crashchat.convert import copy_tokenizer, is_native_base

    if is_native_base(folder):
        return AutoTokenizer.from_pretrained(folder)
    with tempfile.TemporaryDirectory() as tmp:  # without the remote-code hooks, as `convert` writes it
        copy_tokenizer(folder, Path(tmp))
        return AutoTokenizer.from_pretrained(tmp)


def render(view: dict) -> str:
    """The terminal summary (the JSON holds everything)."""
    video = view["video"]
    lines = [f"{video['path']}: {video['duration_s']:.2f} s, {video['width']}x{video['height']} @ {video['native_fps']:.2f} fps,"
             f" stream start {video['start_time']:g} s, decoded with {video['decoder']}",
             f"frames: {len(video['frames'])} of {video['filtered_frames']} from the fps={video['sample_fps']:g} filter"]
    for frame in video["frames"][:3] + (video["frames"][-2:] if len(video["frames"]) > 5 else video["frames"][3:]):
        lines.append(f"  source frame {frame['source_index']} at {frame['source_time']:.3f} s -> Time {frame['shown_as']}s")
    if len(video["frames"]) > 5:
        lines.insert(-2, f"  ... ({len(video['frames']) - 5} more)")
    lines += [f"  note: {n}" for n in video["notes"]]
    policy = view.get("frame_policy", {})
    if policy.get("name") == "model-card":
        lines.append(f"frame policy: model-card, {policy['fps']:g} fps, at most {policy['max_frames']} frames")
        lines += [f"  {key.replace('_', ' ')}: from {where}" for key, where in policy["sources"].items()]
    resized, tokens = view["resized"], view["visual_tokens"]
    lines.append(f"resized to {resized['width']}x{resized['height']} per frame; visual tokens: "
                 + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in tokens.items() if not isinstance(v, list)))
    lines.append(f"prompt format: {view['prompt_format']}; tokenizer: {view['tokenizer']}")
    if "base" in view:
        base = view["base"]
        revision = f" @ {base['revision'][:12]}" if base.get("revision") else ""
        lines.append(f"base: {base['id']}{revision}{'' if base.get('read', True) else ' (not read)'}")
        for key, setting in view["settings"].items():
            lines.append(f"  {key.replace('_', ' ')}: {setting['value']} (from {setting['from']})")
    for task_id, prompt in view["prompts"].items():
        lines += ["", f"== {task_id} ==", prompt]
    return "\n".join(lines)


def main(argv: Sequence[str], prog: str = "python -m crashchat inspect") -> int:
    from crashchat.cli import add_frames_arg, add_video_args, model_name, tasks_arg, video_options

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[1])
    parser.add_argument("video", type=Path, help="mp4/mov/avi/mkv/webm file")
    parser.add_argument("--task", "--tasks", dest="tasks", type=tasks_arg, default=list(TASK_IDS),
                        help="comma-separated task ids (default: all six)")
    parser.add_argument("--model", type=model_name, default="crashchat", metavar="MODEL",
                        help="crashchat or videollama3 (the authors' evaluation format), tiny-random, or hf:<id or dir>")
    parser.add_argument("--base", help="crashchat/videollama3: the base whose configs and tokenizer to read: "
                                       "authors-eval, videollama3-7b, a hub id or hub_id/subfolder (small files "
                                       "only, no weights) or a folder (default: none read, said so)")
    parser.add_argument("--max-pixels", type=int, help="hf: models: per-frame pixel cap before the processor")
    parser.add_argument("--trust-remote-code", action="store_true", help="hf: models: allow the checkpoint's code")
    parser.add_argument("--json", dest="json_out", type=Path, metavar="FILE", help="write the whole view here")
    add_video_args(parser)
    add_frames_arg(parser)
    args = parser.parse_args(list(argv))

    from crashchat.convert import ConvertError
    from crashchat.generic import MODEL_CARD_HF_ONLY, GenericConfig
    from crashchat.video import VideoError, load_video
    from crashchat.weights import ModelLoadError

    try:
        if args.model.startswith("hf:"):  # bad combinations (--frames model-card with --max-pixels) first
            GenericConfig(args.model[3:], max_pixels=args.max_pixels, frames=args.frames)
        elif args.frames != "benchmark":
            raise ValueError(MODEL_CARD_HF_ONLY)
        options = video_options(args)
        clip = load_video(args.video, **options)  # a bad video fails before anything is read
    except (ValueError, VideoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        view = inspect(clip, args.tasks, model=args.model, base=args.base, max_pixels=args.max_pixels,
                       trust_remote_code=args.trust_remote_code, frames=args.frames, video_options=options)
    except (ModelLoadError, ConvertError, OSError, ValueError, VideoError) as exc:
        print(f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", file=sys.stderr)
        return 1
    print(render(view))
    if args.json_out:
        try:
            args.json_out.write_text(json.dumps(view, indent=1, ensure_ascii=False))
        except OSError as exc:
            print(f"error: {args.json_out}: cannot write ({exc.strerror or exc})", file=sys.stderr)
            return 2
    return 0
