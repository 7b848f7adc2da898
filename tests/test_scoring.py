"""The scorer against an independent implementation of protocol.md, on the real split."""

import math

import numpy as np
import pytest
import reference_scorer
from submissions import random_responses, write_authors, write_csv, write_jsonl

from crashchat.tasks import TASKS
from leaderboard.scoring import compare, item_scores, render_text, score
from leaderboard.split import load_split
from leaderboard.submission import read_submission


@pytest.fixture(scope="module")
def responses(split_dir):
    return random_responses(split_dir, seed=11, missing=0.05)


@pytest.fixture(scope="module")
def result(split, responses, tmp_path_factory):
    path = write_jsonl(tmp_path_factory.mktemp("sub") / "p.jsonl", responses)
    return score(read_submission([path], split), split, bootstrap=200)


@pytest.fixture(scope="module")
def reference(split_dir):
    return reference_scorer.load(split_dir)


def _assert_close(ours: dict, theirs: dict):
    for key, value in theirs.items():
        if value is None:
            assert ours[key] is None, key
        else:
            assert ours[key] == pytest.approx(value, abs=1e-9, rel=0), key


@pytest.mark.parametrize("protocol", ["paper", "strict"])
def test_matches_independent_implementation(result, reference, responses, protocol):
    expected = reference_scorer.score(reference, responses, protocol)
    for task in TASKS:
        _assert_close(result["protocols"][protocol]["tasks"][task.id], expected[task.id])


@pytest.mark.parametrize("protocol", ["paper", "strict"])
@pytest.mark.parametrize("source", ["MM-AU-DADA", "Nexar"])
def test_per_source_matches(result, reference, responses, protocol, source):
    expected = reference_scorer.score(reference, responses, protocol, sources={source})
    by_source = result["protocols"][protocol]["by_source"]
    for task in TASKS:
        if expected[task.id]["n"]:
            _assert_close(by_source[task.id][source], expected[task.id])
        else:
            assert source not in by_source[task.id]


def test_json_shape(result):
    assert set(result) >= {"split", "validation", "protocols", "scorer_version"}
    assert result["split"]["official"] and len(result["split"]["sha256"]) == 64
    for protocol in ("paper", "strict"):
        proto = result["protocols"][protocol]
        assert set(proto) == {"tasks", "by_source", "ci95"}
        tasks = proto["tasks"]
        assert set(tasks["crash_recognition"]) >= {"n", "tp", "tn", "fp", "fn", "accuracy", "precision", "recall",
                                                   "f1", "precision_macro", "recall_macro", "f1_macro"}
        assert set(tasks["pre_crash_localization"]) >= {"n", "miou", "ap30", "ap50", "ap70", "mtta_gt", "mtta_pred",
                                                        "tta_mae", "too_late", "too_early"}
        for text_task in ("crash_description", "causal_reasoning", "prevention_reasoning"):
            assert set(tasks[text_task]) >= {"n", "bleu", "sacrebleu", "bertscore_f1", *(
                f"rouge_{k}_{m}" for k in "12l" for m in "prf")}
            assert tasks[text_task]["bertscore_f1"] is None  # not requested: unavailable, never 0
        for task in TASKS:
            for metric, (low, high) in proto["ci95"][task.id].items():
                assert low <= tasks[task.id][metric] + 1e-9 and tasks[task.id][metric] <= high + 1e-9, (task.id, metric)


def test_strict_counts_every_record(result):
    strict = result["protocols"]["strict"]["tasks"]
    assert strict["crash_recognition"]["n"] == 1839 and strict["crash_localization"]["n"] == 1162
    assert strict["prevention_reasoning"]["n"] == 1838
    paper = result["protocols"]["paper"]["tasks"]
    assert paper["crash_recognition"]["n"] < 1839
    assert strict["crash_recognition"]["accuracy"] < paper["crash_recognition"]["accuracy"]


def test_three_layouts_score_identically(split, responses, result, tmp_path):
    for paths in ([write_csv(tmp_path / "p.csv", responses)], write_authors(tmp_path / "a", responses)):
        other = score(read_submission(paths, split), split, bootstrap=200)
        assert other["protocols"] == result["protocols"]
        assert other["validation"] == result["validation"]


def test_perfect_and_empty_submissions(split, split_dir, tmp_path):
    truth = {(t.id, r.video): r.answer for t in TASKS for r in split.records[t.id]}
    perfect = score(read_submission([write_jsonl(tmp_path / "p.jsonl", truth)], split), split, bootstrap=0)
    for protocol in ("paper", "strict"):
        tasks = perfect["protocols"][protocol]["tasks"]
        assert tasks["crash_recognition"]["f1_macro"] == 1.0
        # Four truth intervals have zero length (start == end): IoU 0 even for an exact copy.
        assert tasks["crash_localization"]["miou"] == pytest.approx(1 - 4 / 1162)
        assert tasks["pre_crash_localization"]["miou"] == 1.0  # on time: the ratio of equal TTAs
        assert tasks["crash_description"]["rouge_l_f"] == 1.0
        # Exact copies still lose BLEU: captions under four words have no 4-grams (NLTK smoothing).
        assert 0.7 < tasks["crash_description"]["bleu"] < 1.0
        assert perfect["protocols"][protocol]["ci95"] == {t.id: {} for t in TASKS}
    # One answer only: the paper protocol leaves the other tasks empty, strict scores them as wrong.
    first = split.records["crash_recognition"][0]
    sparse = score(read_submission([write_jsonl(tmp_path / "s.jsonl", {("crash_recognition", first.video): "Yes"})],
                                   split), split, bootstrap=0)
    assert sparse["protocols"]["paper"]["tasks"]["crash_localization"] == {"n": 0, "miou": None, "ap30": None,
                                                                           "ap50": None, "ap70": None}
    assert sparse["protocols"]["strict"]["tasks"]["crash_localization"]["miou"] == 0.0
    assert sparse["protocols"]["strict"]["tasks"]["crash_description"]["bleu"] == 0.0


def test_pre_crash_drop_rules(split, tmp_path):
    # Every real pre-crash record is usable; a mini split shows the two drop rules.
    import json

    truth = {("pre_crash_localization", r.video): r.answer for r in split.records["pre_crash_localization"]}
    full = score(read_submission([write_jsonl(tmp_path / "t.jsonl", truth)], split), split, bootstrap=0)
    assert full["protocols"]["strict"]["tasks"]["pre_crash_localization"]["n"] == 1162

    def record(video, answer):
        return {"video": [f"videos/{video}"], "source": "MM-AU-CAP",
                "conversations": [{"from": "human", "value": "<video>\nq"}, {"from": "gpt", "value": answer}]}

    loc = [record("a.mp4", "0.0 - 2.0 seconds"), record("b.mp4", "2.0 - 3.0 seconds"),
           record("c.mp4", "4.0 - 5.0 seconds")]
    pre = [record("a.mp4", "0.0 seconds"),   # crash start 0: no t_acc
           record("b.mp4", "2.5 seconds"),   # TTA_gt = 2.0 - 2.5 <= 0
           record("c.mp4", "1.0 seconds"),   # kept
           record("d.mp4", "1.0 seconds")]   # not in the localization split
    folder = tmp_path / "mini"
    folder.mkdir()
    for task, records in (("crash_localization", loc), ("pre_crash_localization", pre)):
        (folder / f"crashchat_dada_video_total_{task}_test.json").write_text(json.dumps(records))
    mini = load_split(folder)
    rows = {("pre_crash_localization", v): "0.9 seconds" for v in ("a.mp4", "b.mp4", "c.mp4", "d.mp4")}
    result = score(read_submission([write_jsonl(tmp_path / "m.jsonl", rows)], mini), mini, bootstrap=0)
    for protocol in ("paper", "strict"):
        metrics = result["protocols"][protocol]["tasks"]["pre_crash_localization"]
        assert metrics["n"] == 1 and metrics["miou"] == 1.0  # 0.9 is within 0.5 s before 1.0
    assert not mini.official


def test_item_scores_and_compare(split, split_dir, responses):
    a = read_submission([("a.jsonl", _jsonl(responses))], split)
    better = dict(responses)
    for record in split.records["crash_localization"]:
        better[("crash_localization", record.video)] = record.answer
    b = read_submission([("b.jsonl", _jsonl(better))], split)
    items = item_scores(a, split)
    worst = items["crash_localization"]
    assert len(worst) == 1162 and worst[0]["score"] <= worst[-1]["score"]
    assert set(worst[0]) == {"video", "source", "truth", "response", "parsed", "score"}
    result = compare(a, b, split, n=300)
    loc = result["crash_localization"]
    assert loc["better"] == "b" and loc["significant"] and loc["ci95"][0] > 0 and loc["p_value"] < 0.01
    same = compare(a, a, split, n=100)["crash_recognition"]
    assert same["diff"] == 0 and same["better"] is None and not same["significant"]


def test_render_text(result):
    text = render_text(result, "strict")
    assert "protocol strict" in text and "Crash recognition (n=1839)" in text and "f1_macro" in text


def _jsonl(responses) -> bytes:
    import json

    return "\n".join(json.dumps({"video": v, "task": t, "response": x}) for (t, v), x in responses.items()).encode()


def test_values_are_finite(result):
    for proto in result["protocols"].values():
        for metrics in proto["tasks"].values():
            for value in metrics.values():
                assert value is None or math.isfinite(value)


def test_bertscore_unavailable_is_null_not_zero(split, monkeypatch):
    from leaderboard import scoring

    monkeypatch.setattr(scoring, "_reachable", lambda url, timeout=5.0: False)
    first = split.records["crash_description"][0]
    sub = read_submission([("d.jsonl", _jsonl({("crash_description", first.video): "a car hits"}))], split)
    result = score(sub, split, bootstrap=0, bertscore=True)
    assert result["protocols"]["paper"]["tasks"]["crash_description"]["bertscore_f1"] is None
    assert "cannot be reached" in result["bertscore"] or "not installed" in result["bertscore"]


def test_sacrebleu_segment_sums_equal_corpus_score(split):
    """The wrapper over sacreBLEU's public API: summed segment statistics give `corpus_score`'s BLEU
    for any subset (how every source breakdown and bootstrap resample is scored)."""
    import random

    from sacrebleu.metrics import BLEU

    from leaderboard.scoring import _sacrebleu, sacrebleu_segment

    rng = random.Random(0)
    refs = [r.answer for r in split.records["prevention_reasoning"][:200]]
    hyps = [" ".join(rng.choices(refs[0].split() + ["the", "car", "."], k=rng.randint(0, 30))) for _ in refs]
    stats = np.asarray([sacrebleu_segment(h, r) for h, r in zip(hyps, refs, strict=True)], float)
    for _ in range(5):
        pick = sorted(rng.sample(range(len(refs)), rng.randint(1, len(refs))))
        expected = BLEU().corpus_score([hyps[i] for i in pick], [[refs[i] for i in pick]]).score / 100
        assert _sacrebleu(stats[pick].sum(axis=0)) == pytest.approx(expected, abs=1e-12)
