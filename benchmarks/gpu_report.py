"""python benchmarks/gpu_report.py [--tiny] [--out benchmarks/results/NAME.json]

The six-task report for one 96-frame 720p synthetic clip, CrashChat at 7B shapes (Qwen2.5-7B +
SigLIP-NaViT, two r=64 adapters with their projectors) with RANDOM weights, bf16 + sdpa on CUDA,
two ways in the same run:

- plain: six `CrashChat.generate` calls: the processor, the vision encoder, a full prefill of the
  ~15k video tokens and the decode, six times, with a dynamic cache;
- pipeline: `pipeline.analyze` with the gate open: the processor once (on the GPU), the vision
  encoder once, one video prefill per task group, each group's questions decoded together from
  its shared prefix, with a static cache that `generate` compiles (off on CPU).

Random weights do not change the cost of a forward pass. Each answer is forced to a typical length
(`ANSWER_TOKENS`, per row even inside a batch), so both decode exactly the same tokens. Then the
decode step alone, at batch 1 and 4 from the shared prefix, static (compiled) vs dynamic cache:
ms per step and tokens/s. Finally both paths answer greedily without forced lengths and every
token that differs is counted (bf16 on a GPU may differ now and then; float32 on CPU must not).

Targets on one H200 (issue 11): report <= 1.5 s; decode >= 150 tokens/s at batch 1 and <= 5 ms
per step at batch 4. `--tiny` runs the same script with the tiny random model on CPU: its timings
mean nothing, but it checks that the answers are byte-identical with and without the fast paths.
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
TARGETS = {"report_s": 1.5, "batch1_tokens_per_s": 150.0, "batch4_ms_per_step": 5.0}


class Clock:
    """A `generate` streamer that only records when each decode step's tokens arrive."""

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

    def summary(self) -> dict:
        n = len(self.times)
        span = self.times[-1] - self.times[0] if n > 1 else 0.0
        return {"steps": n, "ttft_s": round(self.times[0] - self.start, 4) if n else None,
                "ms_per_step": round(1000 * span / (n - 1), 3) if n > 1 and span > 0 else None}


class ForcedLength:
    """Per row: no end token before `n` new tokens, only the end token at `n` (lengths fixed in a batch)."""

    def __init__(self, lengths: list[int], end_ids: list[int]):
        self.lengths, self.end_ids, self.start = lengths, end_ids, None

    def __call__(self, input_ids, scores):
        if self.start is None:
            self.start = input_ids.shape[1]
        made = input_ids.shape[1] - self.start
        for row, n in enumerate(self.lengths):
            if made < n:
                scores[row, self.end_ids] = float("-inf")
            else:
                keep = scores[row, self.end_ids[0]].clone()
                scores[row] = float("-inf")
                scores[row, self.end_ids[0]] = keep if keep.isfinite() else 0.0
        return scores


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
    processor = build_processor(tiny_tokenizer())  # the evaluation budget: 16384 merged tokens, floor 16
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


def plain_report(chat, clip, cuda: bool) -> dict:
    """Six full `generate` calls, the dynamic cache, forced lengths."""
    import torch

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tasks, start = {}, time.perf_counter()
    for task in TASKS:
        n = ANSWER_TOKENS[task.id]
        clock = Clock()
        chat.generate(clip, task.question, group=task.group, max_new_tokens=n, min_new_tokens=n, streamer=clock)
        sync(cuda)
        tasks[task.id] = {**clock.summary(), "seconds": round(time.perf_counter() - clock.start, 4)}
    return {"total_s": round(time.perf_counter() - start, 3), **peak_memory(cuda), "tasks": tasks}


def pipeline_report(chat, clip, cuda: bool) -> dict:
    """`analyze`'s pipeline from the raw clip: processor, vision once, two prefills, two batches."""
    import torch
    from transformers import LogitsProcessorList

    from crashchat.pipeline import analyze

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clocks: dict[str, Clock] = {}
    order = {"linguistic": [t.id for t in TASKS if t.group == "linguistic"],
             "perception": [t.id for t in TASKS if t.group == "perception"]}

    def options(task_id: str) -> dict:
        group = next(g for g, ids in order.items() if task_id in ids)
        if group not in clocks:
            clocks[group] = Clock()
        lengths = [ANSWER_TOKENS[t] for t in order[group]]
        return {"max_new_tokens": max(lengths), "streamer": clocks[group],
                "logits_processor": LogitsProcessorList([ForcedLength(lengths, chat.stop_ids)])}

    start = time.perf_counter()
    results = {}
    for task_id, result in analyze(chat, clip, gate=False, repetition_stop=False, generate_options=options):
        sync(cuda)
        results[task_id] = {"seconds": result["seconds"], "answer_chars": len(result["response"])}
    total = time.perf_counter() - start
    groups = {g: c.summary() for g, c in clocks.items()}
    return {"total_s": round(total, 3), **peak_memory(cuda), "groups": groups, "tasks": results,
            "first_token_s": round(clocks["linguistic"].times[0] - start, 4)}


def decode_steps(chat, clip, cuda: bool, static: bool, batch: int, tokens: int = 64) -> dict:
    """ms per decode step at `batch` from the shared prefix (a warm-up run first: it compiles)."""
    from transformers import LogitsProcessorList

    chat.static_cache = static
    questions = [t.question for t in TASKS if t.group == "linguistic"][:batch]
    questions += questions[:batch - len(questions)]
    runs = []
    with chat.session(chat.prepare(clip), group="linguistic") as ask:
        for _ in range(2):
            clock = Clock()
            ask.batch(questions, max_new_tokens=tokens, streamer=clock,
                      logits_processor=LogitsProcessorList([ForcedLength([tokens] * batch, chat.stop_ids)]))
            sync(cuda)
            runs.append(clock.summary())
    chat.static_cache = None
    ms = runs[-1]["ms_per_step"]
    return {"batch": batch, "cache": "static" if static else "dynamic", "warmup": runs[0], "ms_per_step": ms,
            "tokens_per_s": round(1000 * batch / ms, 1) if ms else None}


def greedy_agreement(chat, clip, max_new_tokens: int) -> dict:
    """Natural greedy answers, plain vs pipeline: how many answers and tokens differ."""
    from crashchat.pipeline import analyze

    fast = {t: r["response"] for t, r in analyze(chat, clip, gate=False, max_new_tokens=max_new_tokens,
                                                 repetition_stop=False)}
    chat.static_cache = False
    plain = {task.id: chat.generate(clip, task.question, group=task.group, max_new_tokens=max_new_tokens)
             for task in TASKS}
    chat.static_cache = None
    tok = chat.tokenizer
    differing = {}
    for task in TASKS:
        a, b = tok(plain[task.id])["input_ids"], tok(fast[task.id])["input_ids"]
        diff = sum(x != y for x, y in zip(a, b, strict=False)) + abs(len(a) - len(b))
        if diff:
            differing[task.id] = diff
    return {"max_new_tokens": max_new_tokens, "identical": not differing, "differing_tokens": differing}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random model on CPU (checks the script and equality)")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/gpu_report[_tiny].json)")
    args = parser.parse_args(argv)

    import torch
    import transformers

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
    sync(cuda)
    processor_s = time.perf_counter() - t0
    mask = prepared.video_inputs["video_compression_mask"]
    video_tokens = {"before_compression": int(mask.numel()), "kept": int(mask.sum())}
    chat.generate(prepared, "warm up", group="linguistic", max_new_tokens=2)  # kernels, allocator
    pipeline_report(chat, clip, cuda)  # warm-up: compiles the static decode graphs of both groups

    plain = plain_report(chat, clip, cuda)
    pipeline = pipeline_report(chat, clip, cuda)
    # the static cache runs eagerly on a CPU (no compile there): the tiny run still exercises its code
    steps = [decode_steps(chat, clip, cuda, static, batch) for batch in (1, 4) for static in (False, True)]
    agreement = greedy_agreement(chat, clip, max_new_tokens=24 if args.tiny else 64)

    step = {(s["batch"], s["cache"]): s for s in steps}
    fast1, fast4 = step[(1, "static")], step[(4, "static")]
    report = {
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({platform.processor() or platform.machine()})",
        "shapes": "tiny" if args.tiny else "VideoLLaMA3-7B (random weights, bf16, sdpa, two r=64 adapters)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "clip": {"frames": len(clip.frames), "size": list(size), "duration_s": clip.duration_s,
                 "decode_s": round(decode_s, 3), "backend": clip.backend},
        "build_s": round(build_s, 2), "processor_s": round(processor_s, 3), "video_tokens": video_tokens,
        "answer_tokens": ANSWER_TOKENS, "plain": plain, "pipeline": pipeline,
        "speedup": round(plain["total_s"] / pipeline["total_s"], 2), "decode_steps": steps,
        "greedy_agreement": agreement, "targets": TARGETS,
        "meets": {"report_s": pipeline["total_s"] <= TARGETS["report_s"],
                  "batch1_tokens_per_s": (fast1["tokens_per_s"] or 0) >= TARGETS["batch1_tokens_per_s"],
                  "batch4_ms_per_step": (fast4["ms_per_step"] or 1e9) <= TARGETS["batch4_ms_per_step"]},
    }
    if args.tiny:
        report["note"] = "tiny random model on CPU: checks the script and the answers' equality; timings mean nothing"

    print(f"{report['device']} | {report['shapes']}")
    print(f"clip: 96 frames {size[0]}x{size[1]}, decode {decode_s:.2f} s; processor {processor_s:.3f} s; "
          f"video tokens {video_tokens['kept']} kept of {video_tokens['before_compression']}")
    print(f"{'':<26}{'plain':>10}{'pipeline':>10}")
    print(f"{'six-task report (s)':<26}{plain['total_s']:>10.3f}{pipeline['total_s']:>10.3f}   x{report['speedup']} "
          f"(target <= {TARGETS['report_s']} s)")
    print(f"{'first answer token (s)':<26}{plain['tasks']['crash_recognition']['ttft_s'] or 0:>10.3f}"
          f"{pipeline['first_token_s']:>10.3f}")
    mem_key = "peak_gpu_gib" if cuda else "peak_rss_gib_process"
    print(f"{'peak memory (' + mem_key + ')':<26}{plain[mem_key]:>10}{pipeline[mem_key]:>10}")
    for s in steps:
        print(f"decode batch {s['batch']} {s['cache']:<8}: {s['ms_per_step']} ms/step, {s['tokens_per_s']} tokens/s")
    print(f"greedy answers plain vs pipeline: {'identical' if agreement['identical'] else agreement['differing_tokens']}")
    print("targets met: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in report["meets"].items())
          + (" (tiny model on CPU: not meaningful)" if args.tiny else ""))

    out = args.out or REPO / "benchmarks" / "results" / ("gpu_report_tiny.json" if args.tiny else "gpu_report.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0 if (cuda or agreement["identical"]) else 1


if __name__ == "__main__":
    sys.exit(main())
