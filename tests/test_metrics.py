import random

import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu
from rouge_score import rouge_scorer

from leaderboard import metrics as m


@pytest.mark.parametrize("a, b, expected", [
    ((1.0, 3.0), (2.0, 4.0), 1 / 3),
    ((3.0, 1.0), (2.0, 4.0), 1 / 3),        # a reversed interval is swapped first
    ((0.0, 1.0), (2.0, 4.0), 0.0),          # disjoint: union is the hull (4.0), overlap 0
    ((2.0, 2.0), (2.0, 2.0), 0.0),          # zero union
    ((0.0, 0.0), (1.9, 4.0), 0.0),          # the paper's default for unparseable answers
    ((1.9, 4.0), (1.9, 4.0), 1.0),
])
def test_interval_iou(a, b, expected):
    assert m.interval_iou(a, b) == pytest.approx(expected)


@pytest.mark.parametrize("pred, expected", [
    (4.0, (0.0, 2.0, 0.0, True, False)),     # at the crash start: too late
    (5.0, (0.0, 2.0, 0.0, True, False)),     # after it: too late, TTA_pred clipped at 0
    (1.4, (0.0, 2.0, 2.6, False, True)),     # more than 0.5 s before the first sign: too early
    (1.5, (1.0, 2.0, 2.5, False, False)),    # window [gt-0.5, gt) scores 1
    (1.99, (1.0, 2.0, 2.01, False, False)),
    (2.0, (1.0, 2.0, 2.0, False, False)),    # exactly on time: TTA ratio 1
    (3.0, (0.5, 2.0, 1.0, False, False)),    # late but before the crash: ratio of TTAs
])
def test_tta_iou_windows(pred, expected):
    got = m.tta_iou(pred=pred, gt=2.0, t_acc=4.0)
    assert got[0] == pytest.approx(expected[0]) and got[1:3] == pytest.approx(expected[1:3])
    assert got[3:] == expected[3:]


def test_recognition_macro_matches_paper_rows():
    # WSAL answers Yes for everything: the paper prints macro R 0.50, P 0.32, F1 0.39.
    wsal = m.recognition_metrics(np.array([1162, 0, 677, 0]), 1839)
    assert (wsal["recall_macro"], round(wsal["precision_macro"], 2), round(wsal["f1_macro"], 2)) == (0.5, 0.32, 0.39)
    assert wsal["precision"] == pytest.approx(1162 / 1839) and wsal["recall"] == 1.0
    # CrashChat: TP 1161, FP 34 reproduces 0.9745 / 0.9850 / 0.9793 with macro averaging.
    cc = m.recognition_metrics(np.array([1161, 677 - 34, 34, 1]), 1839)
    assert [round(cc[k], 4) for k in ("recall_macro", "precision_macro", "f1_macro")] == [0.9745, 0.9850, 0.9793]
    assert cc["f1"] != pytest.approx(cc["f1_macro"])


def test_recognition_zero_division_is_zero():
    only_negatives = m.recognition_metrics(np.array([0, 10, 0, 0]), 10)
    assert only_negatives["precision"] == 0.0 and only_negatives["f1"] == 0.0
    assert only_negatives["f1_macro"] == 0.5 and only_negatives["accuracy"] == 1.0


def _random_corpus(rng, n):
    vocab = "a b c d e the car hits ego-car truck . no collision".split()
    hyps = [" ".join(rng.choices(vocab, k=rng.randint(0, 12))) for _ in range(n)]
    refs = [" ".join(rng.choices(vocab, k=rng.randint(1, 12))) for _ in range(n)]
    return hyps, refs


@pytest.mark.parametrize("seed", range(6))
def test_corpus_bleu_is_nltks(seed):
    rng = random.Random(seed)
    hyps, refs = _random_corpus(rng, rng.randint(1, 40))
    if seed == 0:
        hyps = ["", "a"] + hyps  # empty and one-word hypotheses: NLTK's denominator-of-1 rule
        refs = ["a b c", "a b c d"] + refs
    sums = np.sum([m.bleu_row(h, r) for h, r in zip(hyps, refs, strict=True)], axis=0)
    expected = corpus_bleu([[r.split()] for r in refs], [h.split() for h in hyps],
                           smoothing_function=SmoothingFunction().method1)
    assert m.corpus_bleu(sums.tolist()) == pytest.approx(expected, abs=1e-12)
    assert m.corpus_bleu_batch(sums[None, :].astype(float))[0] == pytest.approx(expected, abs=1e-12)


def test_corpus_bleu_all_empty_is_zero():
    assert m.corpus_bleu(np.sum([m.bleu_row("", "a b")] * 3, axis=0).tolist()) == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_rouge_rows_are_rouge_scores(seed):
    rng = random.Random(seed)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    hyps, refs = _random_corpus(rng, 30)
    hyps += ["Drivers SHOULD be slowing, carefully!", ""]
    refs += ["the driver should slow down carefully", "no collision."]
    for hyp, ref in zip(hyps, refs, strict=True):
        got = m.rouge_row(m.rouge_tokens(hyp), m.rouge_tokens(ref))
        want = scorer.score(ref, hyp)
        expected = [getattr(want[k], f) for k in ("rouge1", "rouge2", "rougeL")
                    for f in ("precision", "recall", "fmeasure")]
        assert got == pytest.approx(expected, abs=1e-15)


def test_lcs_length_matches_dynamic_programming():
    rng = random.Random(0)
    for _ in range(200):
        a = rng.choices("abcd", k=rng.randint(0, 70))
        b = rng.choices("abcd", k=rng.randint(0, 70))
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a)):
            for j in range(len(b)):
                table[i + 1][j + 1] = table[i][j] + 1 if a[i] == b[j] else max(table[i][j + 1], table[i + 1][j])
        assert m.lcs_length(a, b) == table[-1][-1]


def test_metrics_of_a_batch_equal_metrics_of_each_subset():
    rows = np.array([m.pre_crash_row(*m.tta_iou(p, 2.0, 4.0)) for p in (0.0, 1.6, 2.5, 3.9, 4.5)])
    single = m.pre_crash_metrics(rows.sum(0), 5)
    batch = m.pre_crash_metrics(np.stack([rows.sum(0), rows[:2].sum(0)]), 5)
    assert batch["miou"][0] == pytest.approx(single["miou"])
    assert single["too_late"] == 1 and single["too_early"] == 1


# --- the per-task rows and metrics on hand-worked examples ------------------------------------------


@pytest.mark.parametrize("truth, pred, cell", [
    (True, True, (1, 0, 0, 0)),    # tp
    (False, False, (0, 1, 0, 0)),  # tn
    (False, True, (0, 0, 1, 0)),   # fp: answered Yes, no crash
    (True, False, (0, 0, 0, 1)),   # fn: missed a crash
])
def test_recognition_row_is_one_confusion_cell(truth, pred, cell):
    assert m.recognition_row(truth, pred) == cell


def test_recognition_metrics_by_hand():
    # 8 answers: 3 crashes found, 2 missed, 2 normal clips right, 1 false alarm.
    answers = [(True, True)] * 3 + [(True, False)] * 2 + [(False, False)] * 2 + [(False, True)]
    sums = np.sum([m.recognition_row(t, p) for t, p in answers], axis=0)
    assert sums.tolist() == [3, 2, 1, 2]
    got = m.recognition_metrics(sums, 8)
    assert (got["n"], got["tp"], got["tn"], got["fp"], got["fn"]) == (8, 3, 2, 1, 2)
    # Yes: P 3/4, R 3/5, F1 2/3. No: P 2/4, R 2/3, F1 4/7. Macro: the mean of the two.
    expected = {"accuracy": 5 / 8, "precision": 3 / 4, "recall": 3 / 5, "f1": 2 / 3,
                "precision_macro": (3 / 4 + 2 / 4) / 2, "recall_macro": (3 / 5 + 2 / 3) / 2,
                "f1_macro": (2 / 3 + 4 / 7) / 2}
    assert {k: got[k] for k in expected} == pytest.approx(expected, abs=1e-15)
    # many subsets at once (bootstrap): one value per row, the same numbers
    batch = m.recognition_metrics(np.stack([sums, [0, 10, 0, 0]]), 8)
    assert batch["f1_macro"][0] == pytest.approx(expected["f1_macro"]) and batch["f1_macro"][1] == 0.5
    assert "n" not in batch and batch["accuracy"].shape == (2,)


@pytest.mark.parametrize("iou, row", [
    (0.0, (0.0, 0.0, 0.0, 0.0)),
    (0.29, (0.29, 0.0, 0.0, 0.0)),
    (0.3, (0.3, 1.0, 0.0, 0.0)),   # each threshold counts as a hit (IoU >= t)
    (0.5, (0.5, 1.0, 1.0, 0.0)),
    (0.69, (0.69, 1.0, 1.0, 0.0)),
    (0.7, (0.7, 1.0, 1.0, 1.0)),
    (1.0, (1.0, 1.0, 1.0, 1.0)),
])
def test_localization_row_counts_each_threshold_it_reaches(iou, row):
    assert m.localization_row(iou) == row


def test_localization_metrics_by_hand():
    # four answers for a crash at 2-4 s: IoU 0 (disjoint), 1/3, 0.5 (2-3 s) and 1 (exact)
    answers = [(0.0, 1.0), (1.0, 3.0), (2.0, 3.0), (2.0, 4.0)]
    ious = [m.interval_iou(a, (2.0, 4.0)) for a in answers]
    assert ious == pytest.approx([0.0, 1 / 3, 0.5, 1.0])
    sums = np.sum([m.localization_row(i) for i in ious], axis=0)
    got = m.localization_metrics(sums, 4)
    assert got == pytest.approx({"n": 4, "miou": (1 / 3 + 0.5 + 1.0) / 4, "ap30": 3 / 4, "ap50": 2 / 4, "ap70": 1 / 4})
    batch = m.localization_metrics(np.stack([sums, sums * 0]), 4)
    assert batch["ap50"].tolist() == [0.5, 0.0] and "n" not in batch


def test_pre_crash_row_and_metrics_by_hand():
    # first sign of the crash at 2.0 s, crash at 4.0 s (TTA_gt 2 s); five answers:
    answers = {1.5: (1.0, 1.0, 1.0, 1.0, 2.0, 2.5, 0.5, 0.0, 0.0),   # within 0.5 s before: a full hit
               3.0: (0.5, 1.0, 1.0, 0.0, 2.0, 1.0, 1.0, 0.0, 0.0),   # late: TTA ratio 1/2
               4.5: (0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 2.0, 1.0, 0.0),   # after the crash: too late, TTA_pred 0
               4.0: (0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 2.0, 1.0, 0.0),   # at the crash: too late as well
               1.0: (0.0, 0.0, 0.0, 0.0, 2.0, 3.0, 1.0, 0.0, 1.0)}   # 1 s early: too early
    rows = []
    for pred, expected in answers.items():
        row = m.pre_crash_row(*m.tta_iou(pred=pred, gt=2.0, t_acc=4.0))
        assert row == pytest.approx(expected), pred
        assert len(row) == len(m.PRE_CRASH_COLUMNS)
        rows.append(row)
    got = m.pre_crash_metrics(np.sum(rows, axis=0), 5)
    assert got == pytest.approx({"n": 5, "miou": 1.5 / 5, "ap30": 2 / 5, "ap50": 2 / 5, "ap70": 1 / 5,
                                 "mtta_gt": 2.0, "mtta_pred": 6.5 / 5, "tta_mae": 6.5 / 5,
                                 "too_late": 2, "too_early": 1})
    assert isinstance(got["too_late"], int) and isinstance(got["too_early"], int)
