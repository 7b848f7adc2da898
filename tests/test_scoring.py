"""The scorer against an independent implementation of protocol.md (`tests/reference_scorer.py`).

The comparison runs on a 300-record-per-task slice of the real split (`write_mini_split`: the
first records of each file, all four sources present), not on all 9,679 records: the reference
is plain Python, record by record, and on the whole split it took ~7 s per protocol. The slice
keeps the test's power: every answer form is drawn (right, wrong, garbled, empty, missing), and
`test_comparison_has_power` checks that each rule the paper protocol applies to garbled answers
(dropped Yes/No, dropped pre-crash times, (0.0, 0.0) ranges, dropped empty texts) is exercised by
dozens of records, in both layouts (ours JSONL and the authors' per-task files) and both protocols.
"""

import math

import numpy as np
import pytest
import reference_scorer
from submissions import random_responses, write_authors, write_csv, write_jsonl, write_mini_split

from crashchat.tasks import TASKS, parse_time, parse_time_range, parse_yes_no
from leaderboard.scoring import compare, item_scores, render_text, score
from leaderboard.split import load_split
from leaderboard.submission import read_submission

MINI = 300


@pytest.fixture(scope="module")
def responses(split_dir):
    return random_responses(split_dir, seed=11, missing=0.05)


@pytest.fixture(scope="module")
def result(split, responses, tmp_path_factory):
    path = write_jsonl(tmp_path_factory.mktemp("sub") / "p.jsonl", responses)
    return score(read_submission([path], split), split, bootstrap=100)


@pytest.fixture(scope="module")
def mini_dir(split_dir, tmp_path_factory):
    return write_mini_split(split_dir, tmp_path_factory.mktemp("mini"), MINI)


@pytest.fixture(scope="module")
def mini_responses(mini_dir):
    return random_responses(mini_dir, seed=11, missing=0.05)


@pytest.fixture(scope="module")
def mini_scores(mini_dir, mini_responses, tmp_path_factory):
    """Layout -> the scorer's result on the slice (no bootstrap: `test_bootstrap.py` covers it)."""
    mini = load_split(mini_dir)
    folder = tmp_path_factory.mktemp("mini_sub")
    layouts = {"jsonl": [write_jsonl(folder / "p.jsonl", mini_responses)],
               "csv": [write_csv(folder / "p.csv", mini_responses)],
               "authors": write_authors(folder / "authors", mini_responses)}
    return {name: score(read_submission(paths, mini), mini, bootstrap=0) for name, paths in layouts.items()}


@pytest.fixture(scope="module")
def reference(mini_dir):
    return reference_scorer.load(mini_dir)


def _assert_close(ours: dict, theirs: dict):
    for key, value in theirs.items():
        if value is None:
            assert ours[key] is None, key
        else:
            assert ours[key] == pytest.approx(value, abs=1e-9, rel=0), key


@pytest.fixture(scope="module")
def expected(reference, mini_responses):
    """Protocol -> the independent implementation's metrics on the slice (computed once)."""
    return {p: reference_scorer.score(reference, mini_responses, p) for p in ("paper", "strict")}


@pytest.mark.parametrize("protocol", ["paper", "strict"])
@pytest.mark.parametrize("layout", ["jsonl", "authors"])
def test_matches_independent_implementation(mini_scores, expected, layout, protocol):
    for task in TASKS:
        _assert_close(mini_scores[layout]["protocols"][protocol]["tasks"][task.id], expected[protocol][task.id])


@pytest.mark.parametrize("protocol", ["paper", "strict"])
@pytest.mark.parametrize("source", ["MM-AU-DADA", "Nexar"])
def test_per_source_matches(mini_scores, reference, mini_responses, protocol, source):
    expected = reference_scorer.score(reference, mini_responses, protocol, sources={source})
    by_source = mini_scores["jsonl"]["protocols"][protocol]["by_source"]
    for task in TASKS:
        if expected[task.id]["n"]:
            _assert_close(by_source[task.id][source], expected[task.id])
        else:
            assert source not in by_source[task.id]


def test_comparison_has_power(mini_scores, reference, mini_responses):
    """The slice exercises every garbled-answer rule with dozens of records (else the match above
    would prove little), and the validation counts the dropped pre-crash answers as unparseable."""
    def answers(task):
        return [mini_responses[(task, r["video"])] for r in reference[task] if (task, r["video"]) in mini_responses]

    assert sum(parse_yes_no(a) is None for a in answers("crash_recognition")) >= 30
    assert sum(parse_time_range(a) is None for a in answers("crash_localization")) >= 10
    unparsed_times = sum(parse_time(a) is None for a in answers("pre_crash_localization"))
    assert unparsed_times >= 10
    assert sum(not a.strip() for a in answers("crash_description")) >= 5
    for layout in ("jsonl", "authors"):
        result = mini_scores[layout]
        pre = {p: result["protocols"][p]["tasks"]["pre_crash_localization"]["n"] for p in ("paper", "strict")}
        given = len(answers("pre_crash_localization"))  # every pre-crash record of the slice is usable
        assert pre["strict"] == len(reference["pre_crash_localization"])
        assert pre["paper"] == given - unparsed_times  # dropped, not scored as 0.0 s
        assert result["validation"]["pre_crash_localization"]["unparseable"] == unparsed_times
        loc = result["protocols"]["paper"]["tasks"]["crash_localization"]["n"]
        assert loc == len(answers("crash_localization"))  # an unparseable range still counts


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


def test_three_layouts_score_identically(mini_scores):
    for layout in ("csv", "authors"):
        assert mini_scores[layout]["protocols"] == mini_scores["jsonl"]["protocols"]
        assert mini_scores[layout]["validation"] == mini_scores["jsonl"]["validation"]


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
    loc.append(record("e.mp4", "4.0 - 5.0 seconds"))
    pre = [record("a.mp4", "0.0 seconds"),   # crash start 0: no t_acc
           record("b.mp4", "2.5 seconds"),   # TTA_gt = 2.0 - 2.5 <= 0
           record("c.mp4", "1.0 seconds"),   # kept
           record("d.mp4", "1.0 seconds"),   # not in the localization split
           record("e.mp4", "1.0 seconds")]   # kept, but answered without a number
    folder = tmp_path / "mini"
    folder.mkdir()
    for task, records in (("crash_localization", loc), ("pre_crash_localization", pre)):
        (folder / f"crashchat_dada_video_total_{task}_test.json").write_text(json.dumps(records))
    mini = load_split(folder)
    rows = {("pre_crash_localization", v): "0.9 seconds" for v in ("a.mp4", "b.mp4", "c.mp4", "d.mp4")}
    rows[("pre_crash_localization", "e.mp4")] = "just before the crash"
    result = score(read_submission([write_jsonl(tmp_path / "m.jsonl", rows)], mini), mini, bootstrap=0)
    paper = result["protocols"]["paper"]["tasks"]["pre_crash_localization"]
    assert paper["n"] == 1 and paper["miou"] == 1.0  # 0.9 is within 0.5 s before 1.0; e.mp4 dropped
    strict = result["protocols"]["strict"]["tasks"]["pre_crash_localization"]
    assert strict["n"] == 2 and strict["miou"] == 0.5 and strict["too_late"] == 1  # e.mp4 counted as too late
    assert result["validation"]["pre_crash_localization"]["unparseable"] == 1
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
