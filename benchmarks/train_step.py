"""python benchmarks/train_step.py [--batch-sizes 1,2,4] [--steps 5] [--frames noise|synthetic] [--tiny]

One CrashChat training step at VideoLLaMA3-7B shapes with random weights, on one CUDA GPU:
step time, samples/s, tokens/s and peak memory for a batch of 96-frame clips at the paper's
training settings (10 fps grid, 96 frames, 10240 merged visual tokens per clip, LoRA r=64 on the
LLM, projector trained, vision frozen, bf16 autocast with fp32 trainable weights, gradient
checkpointing, AdamW). The step is the one `crashchat.train` runs (`attach_lora`, `answer_loss`,
`data.Encoder`/`Collator`), minus data loading: decoding and the processor are timed separately.

`--frames noise` (default) gives frames the token compression cannot shrink, i.e. the full
budget; `--frames synthetic` renders dashcam-like clips (`crashchat.synthetic`), which compress.
Random weights give real timings (the arithmetic does not depend on the values).

`--tiny` runs the same script with the 2-layer tiny model on the CPU, to check it without a GPU.
Results go to `benchmarks/results/train_step_<device>.json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def config_7b(video_token_id: int, image_token_id: int):
    """Qwen2.5-7B + SigLIP-NaViT shapes of VideoLLaMA3-7B (`reference/model.md`)."""
    from transformers import Qwen2Config, VideoLlama3Config, VideoLlama3VisionConfig

    vision = VideoLlama3VisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                     num_attention_heads=16, patch_size=14)
    text = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                       rope_theta=1_000_000.0, tie_word_embeddings=False)
    return VideoLlama3Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                             video_token_id=video_token_id, image_token_id=image_token_id)


def make_clip(index: int, frames: int, size: tuple[int, int], kind: str):
    """A `crashchat.video.Clip` of `frames` frames on the 10 fps grid, as `load_video` returns."""
    import numpy as np

    from crashchat.synthetic import render_frame
    from crashchat.video import Clip

    width, height = size
    seconds = frames / 10
    if kind == "noise":
        pixels = np.random.default_rng(index).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    else:
        rng, cache = np.random.default_rng(index), {}
        pixels = np.stack([render_frame(i, i / 10, seconds, size, "crash", rng, cache) for i in range(frames)])
    return Clip(path=f"<{kind} {index}>", frames=pixels, timestamps=tuple(round(i / 10, 4) for i in range(frames)),
                duration_s=seconds, native_fps=10.0, width=width, height=height, backend=kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="1,2,4", help="clips per step, tried in order until one runs out of memory")
    parser.add_argument("--steps", type=int, default=5, help="measured steps per batch size (after 2 warm-up steps)")
    parser.add_argument("--frames", choices=("noise", "synthetic"), default="noise")
    parser.add_argument("--num-frames", type=int, default=96)
    parser.add_argument("--size", default="1280x720", help="frame width x height before the processor resizes")
    parser.add_argument("--token-budget", type=int, default=10240, help="merged visual tokens per clip (training)")
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="the tiny model on the CPU (checks the script)")
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/train_step_<device>.json)")
    args = parser.parse_args()

    import peft
    import torch
    import transformers
    from transformers import VideoLlama3ForConditionalGeneration

    from crashchat.data import Collator, Encoder, model_inputs
    from crashchat.prompt import build_processor
    from crashchat.tasks import get_task
    from crashchat.tiny import build_tiny_random, tiny_config
    from crashchat.train import answer_loss, attach_lora

    if not args.tiny and not torch.cuda.is_available():
        sys.exit("error: no CUDA device; run with --tiny to check the script on the CPU")
    device = "cpu" if args.tiny else "cuda"
    dtype = torch.float32 if args.tiny else torch.bfloat16
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.tiny:
        args.num_frames, width, height = min(args.num_frames, 8), min(width, 128), min(height, 72)

    tiny_model, tiny_processor = build_tiny_random()
    tokenizer = tiny_processor.tokenizer  # ids < 512 are valid in the 7B vocabulary; weights are random
    if args.tiny:
        processor, config = tiny_processor, tiny_config()
    else:
        processor = build_processor(tokenizer, token_budget=args.token_budget)
        config = config_7b(tokenizer.convert_tokens_to_ids("<|video_pad|>"), tokenizer.convert_tokens_to_ids("<|image_pad|>"))
    del tiny_model
    config._attn_implementation = "sdpa"

    start = time.perf_counter()
    with torch.device(device):
        base = VideoLlama3ForConditionalGeneration._from_config(config, dtype=dtype)
    build_s = time.perf_counter() - start
    peft_model = attach_lora(base, r=8 if args.tiny else 64, gradient_checkpointing=not args.no_gradient_checkpointing)
    net = answer_loss(peft_model).train()
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)

    encoder = Encoder(processor, token_budget=None)
    task = get_task("crash_description")
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    examples, processor_s = [], []
    for i in range(max(sizes)):
        clip = make_clip(i, args.num_frames, (width, height), args.frames)
        t0 = time.perf_counter()
        examples.append(encoder.encode(clip, task.prompt, "ego-car hits a car."))
        processor_s.append(time.perf_counter() - t0)
    video_tokens = [int(e["video_compression_mask"].sum()) for e in examples]
    seq_lens = [len(e["input_ids"]) for e in examples]
    print(f"model built in {build_s:.1f}s; {sum(p.numel() for p in net.parameters()) / 1e6:,.1f} M parameters, "
          f"{sum(p.numel() for p in trainable) / 1e6:.1f} M trainable; clips: {args.num_frames} frames, "
          f"{video_tokens[0]} video tokens, {seq_lens[0]} tokens in all; processor {statistics.median(processor_s):.2f}s/clip")

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    runs = []
    for batch_size in sizes:
        batch = model_inputs(Collator(encoder.pad_id)(examples[:batch_size]))
        batch = {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device)) for k, v in batch.items()}
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        times = []
        try:
            for step in range(2 + args.steps):
                sync()
                t0 = time.perf_counter()
                with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                    loss_sum, tokens = net(**batch)
                loss = loss_sum / tokens  # one step on one process: the mean over the answer tokens
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                sync()
                if step >= 2:
                    times.append(time.perf_counter() - t0)
        except torch.OutOfMemoryError:
            optimizer.zero_grad(set_to_none=True)
            print(f"batch {batch_size}: out of memory")
            runs.append({"batch_size": batch_size, "oom": True})
            break
        step_s = statistics.median(times)
        run = {
            "batch_size": batch_size, "oom": False, "step_s": round(step_s, 4),
            "step_s_all": [round(t, 4) for t in times],
            "samples_per_s": round(batch_size / step_s, 3),
            "tokens_per_s": round(sum(seq_lens[:batch_size]) / step_s, 1),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
            "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2) if device == "cuda" else None,
            "loss": round(loss.item(), 4),
        }
        runs.append(run)
        print(f"batch {batch_size}: {step_s:.3f} s/step, {run['samples_per_s']} samples/s, "
              f"{run['tokens_per_s']} tokens/s, peak {run['peak_memory_gib']} GiB")

    name = "cpu-tiny" if args.tiny else torch.cuda.get_device_name()
    result = {
        "benchmark": "train_step", "device": name, "model": "tiny-random" if args.tiny else "VideoLLaMA3-7B shapes, random",
        "dtype": str(dtype).removeprefix("torch."), "gradient_checkpointing": not args.no_gradient_checkpointing,
        "frames": args.frames, "num_frames": args.num_frames, "frame_size": [width, height],
        "token_budget": None if args.tiny else args.token_budget, "video_tokens_per_clip": video_tokens,
        "sequence_lengths": seq_lens, "processor_s_per_clip": round(statistics.median(processor_s), 3),
        "parameters": sum(p.numel() for p in net.parameters()), "trainable": sum(p.numel() for p in trainable),
        "runs": runs,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                     "python": platform.python_version()},
    }
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    out = args.out or ROOT / "benchmarks" / "results" / f"train_step_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
