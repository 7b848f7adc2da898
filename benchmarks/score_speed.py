"""python benchmarks/score_speed.py [--split-dir DIR] [--repeat 3]

Times `python -m leaderboard score` (the whole command, imports included, both protocols,
per-source breakdowns, 1000 bootstrap resamples) on a full random 9,679-answer submission,
beside a plain per-record baseline in the same run: the independent implementation in
`tests/reference_scorer.py` (NLTK corpus_bleu, rouge_score, sacreBLEU called per protocol on
the records), which does no breakdowns and no bootstrap. A plain bootstrap would re-score
every resample; its cost is estimated from two resamples and printed too.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import reference_scorer  # noqa: E402
from submissions import random_responses, write_jsonl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split-dir", default=str(ROOT.parent / "shared/data/crashchat"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    responses = random_responses(Path(args.split_dir), seed=0, missing=0.0)
    assert len(responses) == 9679, len(responses)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_jsonl(Path(tmp) / "random.jsonl", responses)
        command = [sys.executable, "-m", "leaderboard", "score", str(path), "--split-dir", args.split_dir,
                   "--bootstrap", "1000", "--json", str(Path(tmp) / "out.json")]
        ours = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            ours.append(time.perf_counter() - start)
        result = json.loads((Path(tmp) / "out.json").read_text())

    split = reference_scorer.load(Path(args.split_dir))
    start = time.perf_counter()
    plain = {p: reference_scorer.score(split, responses, p) for p in ("paper", "strict")}
    baseline = time.perf_counter() - start
    # A plain bootstrap re-scores each resample: time two resamples of the text tasks' records.
    rng = random.Random(0)
    start = time.perf_counter()
    for _ in range(2):
        sample = {k: responses[k] for k in rng.choices(list(responses), k=len(responses))}
        reference_scorer.score(split, sample, "strict")
    per_resample = (time.perf_counter() - start) / 2

    for task, metrics in plain["strict"].items():  # same numbers, or the comparison is void
        for key, value in metrics.items():
            assert abs(result["protocols"]["strict"]["tasks"][task][key] - value) < 1e-9, (task, key)
    best = min(ours)
    print(f"{'':<52}{'seconds':>10}")
    print(f"{'leaderboard score (whole command, 1000 resamples)':<52}{best:>10.2f}   (best of {args.repeat})")
    print(f"{'plain per-record baseline (both protocols only)':<52}{baseline:>10.2f}   ratio {baseline / best:.1f}x")
    print(f"{'plain baseline + 1000 re-scored resamples (est.)':<52}{baseline + 2000 * per_resample:>10.0f}"
          f"   ratio {(baseline + 2000 * per_resample) / best:.0f}x")


if __name__ == "__main__":
    main()
