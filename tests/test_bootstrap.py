"""Bootstrap intervals and `compare()` against an independent plain per-resample loop.

The scorer resamples by summing per-record statistics with weight matrices; here each resample
is drawn the documented way (`numpy.random.default_rng(seed).integers(0, n, (resamples, n),
int32)`, row b = resample b), its records are listed out one by one, and the metrics are
computed from scratch by `tests/reference_scorer.py` (NLTK, rouge_score, sacreBLEU, plain
loops). Intervals and p-values must come out equal. A mini split (40 records per task) keeps
the hundreds of reference calls fast.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference_scorer
from submissions import random_responses, write_jsonl, write_mini_split

from crashchat.tasks import TASKS
from leaderboard import scoring
from leaderboard.split import load_split
from leaderboard.submission import read_submission

RESAMPLES, SEED, SIZE = 25, 7, 40


@pytest.fixture(scope="module")
def mini_dir(split_dir, tmp_path_factory):
    return write_mini_split(split_dir, tmp_path_factory.mktemp("mini_split"), SIZE)


@pytest.fixture(scope="module")
def mini(mini_dir):
    return load_split(mini_dir)


@pytest.fixture(scope="module")
def reference(mini_dir):
    return reference_scorer.load(mini_dir)


def _responses(mini_dir, seed):
    return random_responses(mini_dir, seed=seed, missing=0.15)


def counted(reference: dict, responses: dict, task: str, protocol: str) -> list[dict]:
    """The records a protocol scores for `task`, in split order (protocol.md's rules, plainly)."""
    strict = protocol == "strict"
    out = []
    t_acc = {r["video"]: reference_scorer.time_range(r["answer"])[0] for r in reference["crash_localization"]}
    for r in reference[task]:
        text = responses.get((task, r["video"]))
        if task == "pre_crash_localization":
            acc = t_acc.get(r["video"], 0.0)
            if acc <= 0 or acc - reference_scorer.single_time(r["answer"]) <= 0:
                continue
        if strict:
            out.append(r)
        elif task == "crash_recognition":
            if text is not None and reference_scorer.yes_no(text) is not None:
                out.append(r)
        elif task in reference_scorer.TEXT:
            if text is not None and text.strip():
                out.append(r)
        elif task == "pre_crash_localization":
            if text is not None and reference_scorer.single_time(text) is not None:
                out.append(r)
        elif text is not None:
            out.append(r)
    return out


def plain_metrics(reference: dict, responses: dict, task: str, records: list[dict], protocol: str) -> dict:
    """The reference scorer's metrics of `task` on exactly these records (repeats included)."""
    split = {t: [] for t in reference}
    split[task] = records
    if task == "pre_crash_localization":
        split["crash_localization"] = reference["crash_localization"]  # crash starts, not resampled
    metrics = reference_scorer.score(split, responses, protocol)[task]
    assert metrics["n"] == len(records)  # every listed record was counted
    return metrics


def draws(n: int) -> np.ndarray:
    """The documented draws: row b lists the record indices of resample b."""
    return np.random.default_rng(SEED).integers(0, n, size=(RESAMPLES, n), dtype=np.int32)


def plain_intervals(reference, responses, task, protocol) -> dict:
    """One task's intervals under one protocol: {headline metric: [low, high]} ({} if nothing counts)."""
    records = counted(reference, responses, task.id, protocol)
    if not records:
        return {}
    values: dict[str, list[float]] = {k: [] for k in task.headline}
    for row in draws(len(records)):
        metrics = plain_metrics(reference, responses, task.id, [records[i] for i in row], protocol)
        for key in task.headline:
            values[key].append(metrics[key])
    return {k: [float(x) for x in np.percentile(v, [2.5, 97.5])] for k, v in values.items()}


def check_intervals(mini, reference, responses, tmp_path):
    """Task by task, so a wrong scorer fails at its first wrong task without the plain loop for the rest."""
    result = scoring.score(read_submission([write_jsonl(tmp_path / "p.jsonl", responses)], mini), mini,
                           bootstrap=RESAMPLES, seed=SEED)
    for protocol in ("paper", "strict"):
        ours = result["protocols"][protocol]["ci95"]
        for task in TASKS:
            expected = plain_intervals(reference, responses, task, protocol)
            assert set(ours[task.id]) == set(expected), (protocol, task.id)
            for key, (low, high) in expected.items():
                assert ours[task.id][key] == pytest.approx([low, high], abs=1e-9), (protocol, task.id, key)


def plain_compare(reference, responses_a, responses_b, task) -> dict | None:
    """One task's paired difference (b - a): its interval and p-value (None if nothing counts)."""
    metric = scoring.COMPARE_METRIC[task.kind]
    records = counted(reference, responses_a, task.id, "strict")
    if not records:
        return None
    diffs = []
    for row in draws(len(records)):
        sample = [records[i] for i in row]
        a = plain_metrics(reference, responses_a, task.id, sample, "strict")[metric]
        b = plain_metrics(reference, responses_b, task.id, sample, "strict")[metric]
        diffs.append(b - a)
    diffs = np.asarray(diffs)
    return {"ci95": [float(x) for x in np.percentile(diffs, [2.5, 97.5])],
            "p_value": min(1.0, 2 * min(float((diffs <= 0).mean()), float((diffs >= 0).mean())))}


def check_compare(mini, reference, a, b, tmp_path):
    """Task by task, as `check_intervals`."""
    sub_a = read_submission([write_jsonl(tmp_path / "a.jsonl", a)], mini)
    sub_b = read_submission([write_jsonl(tmp_path / "b.jsonl", b)], mini)
    ours = scoring.compare(sub_a, sub_b, mini, n=RESAMPLES, seed=SEED)
    for task in TASKS:
        values = plain_compare(reference, a, b, task)
        assert (task.id in ours) == (values is not None), task.id
        if values is None:
            continue
        assert ours[task.id]["ci95"] == pytest.approx(values["ci95"], abs=1e-9), task.id
        assert ours[task.id]["p_value"] == pytest.approx(values["p_value"], abs=1e-12), task.id
        assert ours[task.id]["significant"] == (values["ci95"][0] > 0 or values["ci95"][1] < 0)
    assert set(ours) <= {t.id for t in TASKS}


def test_intervals_equal_a_plain_per_resample_loop(mini, mini_dir, reference, tmp_path):
    check_intervals(mini, reference, _responses(mini_dir, seed=1), tmp_path)


def test_compare_equals_a_plain_paired_loop(mini, mini_dir, reference, tmp_path):
    check_compare(mini, reference, _responses(mini_dir, seed=2), _responses(mini_dir, seed=3), tmp_path)


def test_disabled_resampling_is_caught(mini, mini_dir, reference, tmp_path, monkeypatch):
    """The mutation of issue 14: `resample_weights` returning all ones (no resampling at all)."""
    monkeypatch.setattr(scoring, "resample_weights",
                        lambda n, resamples, seed: np.ones((resamples, n)))
    with pytest.raises(AssertionError):
        check_intervals(mini, reference, _responses(mini_dir, seed=1), tmp_path)
    with pytest.raises(AssertionError):
        check_compare(mini, reference, _responses(mini_dir, seed=2), _responses(mini_dir, seed=3), tmp_path)


def test_resample_weights_follow_the_documented_draws():
    weights = scoring.resample_weights(25, 30, SEED)
    expected = np.zeros((30, 25))
    for b, row in enumerate(np.random.default_rng(SEED).integers(0, 25, size=(30, 25), dtype=np.int32)):
        for i in row:
            expected[b, i] += 1
    assert np.array_equal(weights, expected) and (weights.sum(axis=1) == 25).all()


def plain_overall(reference, responses) -> list[float]:
    """The overall score's interval the documented way: resample b draws the videos (sorted) with
    `default_rng(seed).integers(0, V, (resamples, V))[b]`; each task is scored on the records of the
    drawn videos, each as often as its video was drawn; the six headlines are averaged."""
    per_task = {t.id: counted(reference, responses, t.id, "strict") for t in TASKS}
    videos = sorted({r["video"] for records in per_task.values() for r in records})
    draws_ = np.random.default_rng(SEED).integers(0, len(videos), size=(RESAMPLES, len(videos)), dtype=np.int32)
    values = []
    for row in draws_:
        drawn = [videos[i] for i in row]
        total = 0.0
        for task in TASKS:
            by_video = {r["video"]: r for r in per_task[task.id]}
            sample = [by_video[v] for v in drawn if v in by_video]
            total += plain_metrics(reference, responses, task.id, sample, "strict")[scoring.OVERALL_METRIC[task.kind]]
        values.append(total / len(TASKS))
    return [float(x) for x in np.percentile(values, [2.5, 97.5])]


def test_overall_interval_equals_a_plain_joint_loop(mini, mini_dir, reference, tmp_path):
    responses = _responses(mini_dir, seed=4)
    result = scoring.score(read_submission([write_jsonl(tmp_path / "p.jsonl", responses)], mini), mini,
                           bootstrap=RESAMPLES, seed=SEED)
    strict = result["protocols"]["strict"]["tasks"]
    assert result["overall"]["value"] == pytest.approx(
        sum(strict[t.id][scoring.OVERALL_METRIC[t.kind]] for t in TASKS) / len(TASKS), abs=1e-12)
    assert result["overall"]["ci95"] == pytest.approx(plain_overall(reference, responses), abs=1e-9)
    low, high = result["overall"]["ci95"]
    assert low <= result["overall"]["value"] <= high
