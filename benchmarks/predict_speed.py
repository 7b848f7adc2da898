"""python benchmarks/predict_speed.py [--tiny] [--clips N] [--workers N] [--batch-videos N]

`predict` over N synthetic clips with the test split's mix (crash / normal videos in the split's
proportion, 6 / 4 questions each; crash clips as long as their crash ends in the split + 2 s,
normal clips 20 s: an assumption, the split does not record durations), run twice in the same
process: one video at a time with one decoding thread (the plain path), then with `--workers`
decoding processes and `--batch-videos` videos per batch. Prints clips per minute for both, checks
that the two output files are identical, and projects the time for the whole split (1,839 videos,
9,679 answers). CrashChat at 7B shapes with random weights on CUDA; every answer is forced to
`ANSWER_TOKENS` tokens (random weights would otherwise stop at random). `--tiny`: the tiny model on
CPU, small clips: checks the script and the equality; the timings mean nothing.

Target on one H200 (issue 11): the whole split in <= 30 min.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

SPLIT_VIDEOS, SPLIT_ANSWERS, SPLIT_CRASHES = 1839, 9679, 1162
ANSWER_TOKENS = 20  # about the mean answer length of the split's ground truth over the six tasks
NORMAL_SECONDS = 20.0
TARGET_MIN = 30.0


def crash_lengths(split_dir: Path | None) -> list[float]:
    """Crash clips' lengths: each crash's end in the split + 2 s (else a spread of 5-12 s)."""
    path = split_dir / "crashchat_dada_video_total_crash_localization_test.json" if split_dir else None
    if path and path.is_file():
        ends = [float(re.findall(r"[\d.]+", r["conversations"][1]["value"])[1]) for r in json.loads(path.read_text())]
        return [e + 2.0 for e in ends]
    return [5.0 + 7.0 * i / 99 for i in range(100)]


def write_split(root: Path, clips: int, tiny: bool, split_dir: Path | None) -> tuple[Path, Path]:
    from crashchat.synthetic import write_clip
    from crashchat.tasks import TASKS

    rng = random.Random(0)
    lengths = crash_lengths(split_dir)
    crashes = round(clips * SPLIT_CRASHES / SPLIT_VIDEOS)
    names = []
    for i in range(clips):
        crash = i < crashes
        seconds = (rng.choice(lengths) if crash else NORMAL_SECONDS)
        seconds = min(seconds, 4.0) if tiny else seconds
        name = f"videos/{'crash' if crash else 'normal'}_{i}.mp4"
        write_clip(root / name, seconds=seconds, fps=30, size=(160, 90) if tiny else (1280, 720),
                   scene="crash" if crash else "normal", seed=i)
        names.append((name, crash))
    split = root / "split"
    split.mkdir()
    for task in TASKS:
        rows = [{"video": [n], "conversations": [{"from": "human", "value": task.question}], "source": "synthetic"}
                for n, crash in names if crash or task.group == "linguistic"]
        (split / task.split_file()).write_text(json.dumps(rows))
    return split, root


class FixedLength:
    """Every row ends after exactly `n` new tokens (random weights would stop at random)."""

    def __init__(self, n: int, end_ids: list[int]):
        self.n, self.end_ids, self.start = n, end_ids, None

    def __call__(self, input_ids, scores):
        if self.start is None:
            self.start = input_ids.shape[1]
        if input_ids.shape[1] - self.start < self.n:
            scores[:, self.end_ids] = float("-inf")
        else:
            scores[:] = float("-inf")
            scores[:, self.end_ids[0]] = 0.0
        return scores


def timed_run(chat, jobs, videos_dir: Path, out: Path, *, workers: int, batch_videos: int, cuda: bool) -> float:
    import torch
    from transformers import LogitsProcessorList

    from crashchat import predict

    options = {"max_new_tokens": ANSWER_TOKENS, "repetition_stop": False,
               "generate_options": lambda task: {"logits_processor": LogitsProcessorList([FixedLength(ANSWER_TOKENS, chat.stop_ids)])}}
    start = time.perf_counter()
    predict.run(chat, jobs, videos_dir=videos_dir, out=out, shard=predict.Shard(), progress=False,
                video_kwargs={}, options=options, workers=workers, batch_videos=batch_videos)
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random model on CPU (checks the script)")
    parser.add_argument("--clips", type=int, help="synthetic clips (default 32 on CUDA, 6 with --tiny)")
    parser.add_argument("--workers", type=int, default=4, help="decoding processes of the fast run (default 4)")
    parser.add_argument("--batch-videos", type=int, default=4, help="videos per batch of the fast run (default 4)")
    parser.add_argument("--split-dir", type=Path, default=REPO.parent / "shared" / "data" / "crashchat",
                        help="the test split, for the crash clips' lengths (optional)")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/predict_speed[_tiny].json)")
    args = parser.parse_args(argv)

    import torch
    from gpu_report import build

    from crashchat import predict

    cuda = not args.tiny
    if cuda and not torch.cuda.is_available():
        print("error: no CUDA device; run with --tiny to check the script on CPU", file=sys.stderr)
        return 2
    clips = args.clips or (6 if args.tiny else 32)
    chat = build(args.tiny)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        split, videos = write_split(tmp / "data", clips, args.tiny, args.split_dir if args.split_dir.is_dir() else None)
        jobs = predict.read_jobs(split, [t for t in predict.TASK_IDS])
        answers = sum(len(j.questions) for j in jobs)
        timed_run(chat, jobs[:2], videos, tmp / "warmup.jsonl", workers=1, batch_videos=2, cuda=cuda)  # compile, kernels
        plain_s = timed_run(chat, jobs, videos, tmp / "plain.jsonl", workers=1, batch_videos=1, cuda=cuda)
        fast_s = timed_run(chat, jobs, videos, tmp / "fast.jsonl", workers=args.workers,
                           batch_videos=args.batch_videos, cuda=cuda)
        identical = (tmp / "plain.jsonl.part0").read_bytes() == (tmp / "fast.jsonl.part0").read_bytes()

    def per(seconds: float) -> dict:
        return {"seconds": round(seconds, 2), "clips_per_min": round(60 * clips / seconds, 1),
                "projected_split_min": round(seconds / answers * SPLIT_ANSWERS / 60, 1)}

    report = {
        "device": torch.cuda.get_device_name() if cuda else "CPU",
        "shapes": "tiny" if args.tiny else "VideoLLaMA3-7B (random weights, bf16, sdpa, two r=64 adapters)",
        "clips": clips, "answers": answers, "answer_tokens": ANSWER_TOKENS,
        "plain": per(plain_s), "fast": {**per(fast_s), "workers": args.workers, "batch_videos": args.batch_videos},
        "speedup": round(plain_s / fast_s, 2), "identical_output": identical, "target_split_min": TARGET_MIN,
    }
    if args.tiny:
        report["note"] = "tiny random model on CPU: checks the script and the output's equality; timings mean nothing"
    print(f"{report['device']} | {report['shapes']} | {clips} clips, {answers} answers of {ANSWER_TOKENS} tokens")
    for name in ("plain", "fast"):
        r = report[name]
        print(f"{name:<6} {r['seconds']:>8.2f} s  {r['clips_per_min']:>7.1f} clips/min  "
              f"whole split ~{r['projected_split_min']} min")
    print(f"speedup x{report['speedup']}; outputs identical: {identical}; target <= {TARGET_MIN:g} min for the split")
    out = args.out or REPO / "benchmarks" / "results" / ("predict_speed_tiny.json" if args.tiny else "predict_speed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
