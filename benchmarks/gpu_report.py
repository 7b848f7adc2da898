"""python benchmarks/gpu_report.py [--tiny] [--out benchmarks/results/NAME.json]

Six plain `generate` calls vs `analyze`'s pipeline for one 96-frame 720p synthetic clip, with
CrashChat at 7B shapes (Qwen2.5-7B + SigLIP-NaViT, two r=64 adapters with their projectors) and
RANDOM weights, bf16 + sdpa on CUDA. Random weights do not change the cost of a forward pass, and
each answer is forced to a typical length (`ANSWER_TOKENS`, min = max new tokens), so both
methods decode exactly the same number of tokens.

- plain: per task, `CrashChat.generate(clip, prompt)`: the processor, a full prefill of the
  ~15k video tokens and the decode, six times;
- pipeline: `pipeline.analyze` with the gate open (all six tasks): the processor once, one video
  prefill per task group (two), then only each question's tokens and the decode.

Reported per task and in total: time to first token (TTFT), decode tokens/s, seconds, and the
peak GPU memory of each method. `--tiny` runs the same script with the tiny random model on CPU
(a small clip), only to check that the script works; its numbers mean nothing.
The tokenizer is the tiny test tokenizer in both cases (random weights need no real vocabulary),
so question lengths differ a little from Qwen's; the video tokens dominate the prompt anyway.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crashchat.tasks import TASKS  # noqa: E402

ANSWER_TOKENS = {  # typical answer lengths of the test split's ground truth, in tokens
    "crash_recognition": 2, "crash_localization": 12, "pre_crash_localization": 6,
    "crash_description": 10, "causal_reasoning": 25, "prevention_reasoning": 60,
}


class Clock:
    """A `generate` streamer that only records when each new token arrives (after the prompt)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value):
        if not self._prompt_seen:  # generate first hands the streamer the prompt ids
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self):
        pass

    def summary(self, started: float | None = None) -> dict:
        start = self.start if started is None else started
        n = len(self.times)
        decode = (n - 1) / (self.times[-1] - self.times[0]) if n > 1 and self.times[-1] > self.times[0] else None
        return {"tokens": n, "ttft_s": round(self.times[0] - start, 4) if n else None,
                "decode_tokens_per_s": round(decode, 2) if decode else None}


def seven_b_config():
    """VideoLLaMA3-7B's shapes (model.md): Qwen2.5-7B text, 27-layer SigLIP-NaViT vision."""
    from transformers import Qwen2Config, VideoLlama3Config, VideoLlama3VisionConfig

    vision = VideoLlama3VisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                     num_attention_heads=16, patch_size=14)
    text = Qwen2Config(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                       rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)
    return VideoLlama3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), image_token_id=3, video_token_id=4)


def build(tiny: bool):
    """A CrashChat with random weights: the tiny one, or 7B shapes with two r=64 adapters on CUDA."""
    import torch
    from peft import get_peft_model

    from crashchat.loading import ModelConfig, load_model
    from crashchat.model import CrashChat
    from crashchat.prompt import build_processor
    from crashchat.tasks import GROUPS
    from crashchat.tiny import tiny_tokenizer
    from crashchat.weights import lora_config

    if tiny:
        return load_model(ModelConfig(name="tiny-random", device="cpu"))
    from transformers import VideoLlama3ForConditionalGeneration

    config = seven_b_config()
    config._attn_implementation = "sdpa"
    with torch.device("cuda"):
        base = VideoLlama3ForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    processor = build_processor(tiny_tokenizer())  # the evaluation budget: 16384 merged tokens
    lora = lora_config(init_lora_weights=False)  # r 64, alpha 16: the authors' settings
    model = get_peft_model(base, lora, adapter_name="linguistic", autocast_adapter_dtype=False)
    model.add_adapter("perception", lora)
    model.eval()
    return CrashChat(model=model, processor=processor, name="random-7b-shapes", random_weights=True,
                        device="cuda", groups=GROUPS)


def peak_memory(cuda: bool) -> dict:
    import torch

    if cuda:
        return {"peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 1024**3, 2)}
    return {"peak_rss_gib_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)}


def sync(cuda: bool) -> None:
    import torch

    if cuda:
        torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random model on CPU (checks the script only)")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/gpu_report[_tiny].json)")
    args = parser.parse_args(argv)

    import torch
    import transformers

    from crashchat.pipeline import analyze
    from crashchat.synthetic import write_clip
    from crashchat.video import load_video

    cuda = not args.tiny
    if cuda and not torch.cuda.is_available():
        print("error: no CUDA device; run with --tiny to check the script on CPU", file=sys.stderr)
        return 2
    size = (320, 180) if args.tiny else (1280, 720)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_clip(Path(tmp) / "bench.mp4", seconds=9.6, fps=10, size=size, scene="crash")
        t0 = time.perf_counter()
        clip = load_video(path)
        decode_s = time.perf_counter() - t0
    assert len(clip.frames) == 96, len(clip.frames)

    t0 = time.perf_counter()
    chat = build(args.tiny)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    prepared = chat.prepare(clip)
    processor_s = time.perf_counter() - t0
    mask = prepared.video_inputs["video_compression_mask"]
    video_tokens = {"before_compression": int(mask.numel()), "kept": int(mask.sum())}
    chat.generate(prepared, "warm up", group="linguistic", max_new_tokens=2)  # kernels, allocator

    # --- six plain calls -------------------------------------------------------------------------
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    plain, t_plain = {}, time.perf_counter()
    for task in TASKS:
        n = ANSWER_TOKENS[task.id]
        clock = Clock()
        chat.generate(clip, task.prompt, group=task.group, max_new_tokens=n, min_new_tokens=n, streamer=clock)
        sync(cuda)
        plain[task.id] = {**clock.summary(), "seconds": round(time.perf_counter() - clock.start, 4)}
    plain_total = time.perf_counter() - t_plain
    plain_mem = peak_memory(cuda)

    # --- analyze's pipeline --------------------------------------------------------------------
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clocks: dict[str, Clock] = {}

    def options(task_id: str) -> dict:
        n = ANSWER_TOKENS[task_id]
        clocks[task_id] = Clock()
        return {"max_new_tokens": n, "min_new_tokens": n, "streamer": clocks[task_id]}

    pipeline, t_pipe = {}, time.perf_counter()
    for task_id, result in analyze(chat, clip, gate=False, generate_options=options):
        sync(cuda)
        pipeline[task_id] = {**clocks[task_id].summary(), "seconds": result["seconds"]}
    pipe_total = time.perf_counter() - t_pipe
    pipe_mem = peak_memory(cuda)

    def total_decode(rows):
        toks = sum(r["tokens"] for r in rows.values())
        return toks

    report = {
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({platform.processor() or platform.machine()})",
        "shapes": "tiny" if args.tiny else "VideoLLaMA3-7B (random weights, bf16, sdpa, two r=64 adapters)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "clip": {"frames": len(clip.frames), "size": list(size), "duration_s": clip.duration_s,
                 "decode_s": round(decode_s, 3), "backend": clip.backend},
        "build_s": round(build_s, 2), "processor_s": round(processor_s, 3), "video_tokens": video_tokens,
        "answer_tokens": ANSWER_TOKENS,
        "plain": {"total_s": round(plain_total, 3), "tokens": total_decode(plain), **plain_mem, "tasks": plain},
        "pipeline": {"total_s": round(pipe_total, 3), "tokens": total_decode(pipeline), **pipe_mem, "tasks": pipeline},
        "speedup": round(plain_total / pipe_total, 2),
        # from the start of the report to its first answer token (plain: processor + full prefill;
        # pipeline: processor + the linguistic group's video prefill + the question)
        "report_first_token_s": {"plain": plain["crash_recognition"]["ttft_s"],
                                 "pipeline": round(clocks["crash_recognition"].times[0] - t_pipe, 4)},
    }
    if args.tiny:
        report["note"] = "tiny random model on CPU: checks that the script runs; the timings mean nothing"

    print(f"{report['device']} | {report['shapes']}")
    print(f"clip: 96 frames {size[0]}x{size[1]}, decode {decode_s:.2f} s; processor {processor_s:.2f} s; "
          f"video tokens {video_tokens['kept']} kept of {video_tokens['before_compression']}")
    print(f"{'task':<24}{'plain TTFT':>11}{'tok/s':>8}{'s':>8}   {'pipe TTFT':>10}{'tok/s':>8}{'s':>8}")
    for task in TASKS:
        p, q = plain[task.id], pipeline[task.id]
        print(f"{task.id:<24}{p['ttft_s'] or 0:>11.3f}{p['decode_tokens_per_s'] or 0:>8.1f}{p['seconds']:>8.2f}"
              f"   {q['ttft_s'] or 0:>10.3f}{q['decode_tokens_per_s'] or 0:>8.1f}{q['seconds']:>8.2f}")
    mem_key = "peak_gpu_gib" if cuda else "peak_rss_gib_process"
    print(f"{'total':<24}{'':>19}{plain_total:>8.2f}   {'':>18}{pipe_total:>8.2f}   speedup x{report['speedup']}")
    print(f"report's first token: plain {report['report_first_token_s']['plain']} s, "
          f"pipeline {report['report_first_token_s']['pipeline']} s (pipeline per-task TTFT excludes the group's shared prefill; its seconds include it)")
    print(f"peak memory ({mem_key}): plain {plain_mem[mem_key]}, pipeline {pipe_mem[mem_key]}")

    out = args.out or REPO / "benchmarks" / "results" / ("gpu_report_tiny.json" if args.tiny else "gpu_report.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
