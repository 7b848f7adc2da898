"""The files in `assets/` read as they claim: the example submission against the real test split."""

from __future__ import annotations

import json
from pathlib import Path

from leaderboard.submission import read_submission

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def test_example_submission_reads_against_the_real_split(split):
    path = ASSETS / "example_submission.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert "not a model's answers" in rows[0]["note"]  # it says what it is
    submission = read_submission([path], split)
    matched = {task: counts["matched"] for task, counts in submission.validation.items() if counts["matched"]}
    assert matched == {"crash_recognition": 3, "crash_localization": 2, "pre_crash_localization": 1,
                       "crash_description": 2, "causal_reasoning": 1, "prevention_reasoning": 1}
    assert all(counts["unknown"] == 0 for counts in submission.validation.values())  # every video is in the split
    assert submission.answers["crash_localization"]["cap_21_008073.mp4"].parsed == (2.0, 3.5)
