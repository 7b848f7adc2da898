"""The benchmark's metrics as pure functions (rules: `../shared/reference/protocol.md`).

Every metric is a function of column sums of per-record statistics. Each task family has
`<family>_row(...)`, the statistics of one record, and `<family>_metrics(sums, n)`, the metrics
from their sums over any subset. Scoring a subset (a source, a bootstrap resample) is then
arithmetic on the same rows, never re-scoring. `*_metrics` accept a 1-D `sums` (one subset) or a
2-D array (one row per resample) and return floats or arrays accordingly.

>>> interval_iou((1.0, 3.0), (2.0, 4.0))
0.3333333333333333
>>> tta_iou(pred=1.6, gt=2.0, t_acc=4.0)
(1.0, 2.0, 2.4, False, False)
"""

from __future__ import annotations

import math
from collections import Counter
from functools import cache, lru_cache

import numpy as np

# ---------------------------------------------------------------- crash recognition
RECOGNITION_COLUMNS = ("tp", "tn", "fp", "fn")


def recognition_row(truth_yes: bool, pred_yes: bool) -> tuple[int, int, int, int]:
    """One-hot confusion cell, Yes being the positive class."""
    return (int(truth_yes and pred_yes), int(not truth_yes and not pred_yes),
            int(not truth_yes and pred_yes), int(truth_yes and not pred_yes))


def _ratio(num, den):
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    out = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)
    return out if out.ndim else float(out)


def _f1(p, r):
    return _ratio(2 * np.asarray(p) * r, np.asarray(p) + r)


def recognition_metrics(sums, n: int) -> dict:
    """Accuracy, positive-class P/R/F1 (the released script) and macro P/R/F1 (the paper's table)."""
    tp, tn, fp, fn = (np.asarray(sums, float)[..., i] for i in range(4))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    neg_precision, neg_recall = _ratio(tn, tn + fn), _ratio(tn, tn + fp)
    f1, neg_f1 = _f1(precision, recall), _f1(neg_precision, neg_recall)
    out = {
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "precision": precision, "recall": recall, "f1": f1,
        "precision_macro": (precision + neg_precision) / 2,
        "recall_macro": (recall + neg_recall) / 2,
        "f1_macro": (f1 + neg_f1) / 2,
    }
    if np.ndim(tp) == 0:
        out = {"n": n, "tp": int(tp), "tn": int(tn), "fp": int(fp), "fn": int(fn),
               **{k: float(v) for k, v in out.items()}}
    return out


# ---------------------------------------------------------------- crash localization
THRESHOLDS = (0.3, 0.5, 0.7)
LOCALIZATION_COLUMNS = ("iou", "ap30", "ap50", "ap70")


def interval_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """IoU of two time intervals, each reordered if written end-first; 0 when the union is 0."""
    s1, e1 = sorted(a)
    s2, e2 = sorted(b)
    union = max(e1, e2) - min(s1, s2)
    if union == 0:
        return 0.0
    return max(0.0, min(e1, e2) - max(s1, s2)) / union


def localization_row(iou: float) -> tuple[float, ...]:
    return (iou, *(float(iou >= t) for t in THRESHOLDS))


def localization_metrics(sums, n: int) -> dict:
    """mIoU and the share of records with IoU >= 0.3/0.5/0.7 (the paper's "AP@30/50/70")."""
    sums = np.asarray(sums, float)
    out = {k: _ratio(sums[..., i], n) for i, k in enumerate(("miou", "ap30", "ap50", "ap70"))}
    return {"n": n, **out} if sums.ndim == 1 else out


# ---------------------------------------------------------------- pre-crash localization
PRE_CRASH_COLUMNS = LOCALIZATION_COLUMNS + ("tta_gt", "tta_pred", "tta_abs_err", "too_late", "too_early")
TOLERANCE_S = 0.5


def tta_iou(pred: float, gt: float, t_acc: float) -> tuple[float, float, float, bool, bool]:
    """TTA-IoU of one answer: (iou, TTA_gt, TTA_pred, too_late, too_early).

    Answering at or after the crash start is too late; more than 0.5 s before the true first
    sign is too early; within the 0.5 s before it is a full hit.
    """
    tta_gt, tta_pred = t_acc - gt, max(t_acc - pred, 0.0)
    if pred >= t_acc:
        return 0.0, tta_gt, tta_pred, True, False
    if pred < gt - TOLERANCE_S:
        return 0.0, tta_gt, tta_pred, False, True
    if pred < gt:
        return 1.0, tta_gt, tta_pred, False, False
    return min(tta_gt, tta_pred) / max(tta_gt, tta_pred), tta_gt, tta_pred, False, False


def pre_crash_row(iou: float, tta_gt: float, tta_pred: float, too_late: bool, too_early: bool):
    return (*localization_row(iou), tta_gt, tta_pred, abs(tta_pred - tta_gt),
            float(too_late), float(too_early))


def pre_crash_metrics(sums, n: int) -> dict:
    sums = np.asarray(sums, float)
    out = localization_metrics(sums[..., :4], n)
    out.update({
        "mtta_gt": _ratio(sums[..., 4], n), "mtta_pred": _ratio(sums[..., 5], n),
        "tta_mae": _ratio(sums[..., 6], n),
    })
    if sums.ndim == 1:
        out.update({"too_late": int(sums[7]), "too_early": int(sums[8])})
    return out


# ---------------------------------------------------------------- text tasks
BLEU_ORDER = 4
BLEU_EPSILON = 0.1  # NLTK SmoothingFunction().method1 default
BLEU_COLUMNS = tuple(f"match{i}" for i in range(1, 5)) + tuple(f"total{i}" for i in range(1, 5)) + (
    "hyp_len", "ref_len")
ROUGE_COLUMNS = tuple(f"rouge_{k}_{m}" for k in ("1", "2", "l") for m in ("p", "r", "f"))
TEXT_COLUMNS = BLEU_COLUMNS + ROUGE_COLUMNS


def bleu_row(hypothesis: str, reference: str) -> tuple[int, ...]:
    """NLTK's per-sentence BLEU statistics on whitespace tokens (case kept).

    A hypothesis with no n-grams of an order counts a denominator of 1 for it, as NLTK's
    `modified_precision` does; this is why sacreBLEU's numbers differ.
    """
    hyp = hypothesis.split()
    ref_counts = _reference_ngrams(reference)
    matches = []
    for n in range(1, BLEU_ORDER + 1):
        hyp_counts = _ngrams(hyp, n)
        matches.append(sum((hyp_counts & ref_counts[n - 1]).values()) if hyp_counts else 0)
    totals = [max(1, len(hyp) - n + 1) for n in range(1, BLEU_ORDER + 1)]
    return (*matches, *totals, len(hyp), sum(ref_counts[0].values()))


@lru_cache(maxsize=65536)
def _reference_ngrams(reference: str) -> tuple[Counter, ...]:
    tokens = reference.split()  # references repeat (every negative has the same answer)
    return tuple(_ngrams(tokens, n) for n in range(1, BLEU_ORDER + 1))


def _ngrams(tokens, n: int) -> Counter:
    return Counter(zip(*(tokens[i:] for i in range(n)), strict=False))


def corpus_bleu(sums) -> float:
    """Corpus BLEU-4 from summed `bleu_row`s, identical to NLTK's `corpus_bleu` with method1."""
    matches, totals = sums[:BLEU_ORDER], sums[BLEU_ORDER:2 * BLEU_ORDER]
    hyp_len, ref_len = sums[2 * BLEU_ORDER], sums[2 * BLEU_ORDER + 1]
    if matches[0] == 0:
        return 0.0
    # method1 adds epsilon to zero numerators over the summed (unreduced) denominator.
    precisions = [(m if m else BLEU_EPSILON) / t for m, t in zip(matches, totals, strict=True)]
    log_sum = math.fsum(0.25 * math.log(p) for p in precisions if p > 0)
    return _brevity_penalty(ref_len, hyp_len) * math.exp(log_sum)


def _brevity_penalty(ref_len: float, hyp_len: float) -> float:
    if hyp_len > ref_len:
        return 1.0
    if hyp_len == 0:
        return 0.0
    return math.exp(1 - ref_len / hyp_len)


def corpus_bleu_batch(sums: np.ndarray) -> np.ndarray:
    """`corpus_bleu` for many subsets at once (rows of `sums`), for bootstrap resamples."""
    matches, totals = sums[:, :BLEU_ORDER], sums[:, BLEU_ORDER:2 * BLEU_ORDER]
    hyp_len, ref_len = sums[:, 2 * BLEU_ORDER], sums[:, 2 * BLEU_ORDER + 1]
    precisions = np.where(matches > 0, matches, BLEU_EPSILON) / np.maximum(totals, 1)
    score = np.exp(0.25 * np.log(precisions).sum(axis=1))
    ratio = np.divide(ref_len, hyp_len, out=np.zeros_like(ref_len), where=hyp_len > 0)
    bp = np.where(hyp_len > ref_len, 1.0, np.where(hyp_len == 0, 0.0, np.exp(1 - ratio)))
    return np.where(matches[:, 0] == 0, 0.0, bp * score)


@cache
def _stem(token: str) -> str:
    return _porter().stem(token)


@lru_cache(maxsize=1)
def _porter():
    """NLTK's Porter stemmer, the one rouge_score uses (memoised per word by `_stem`)."""
    import sys

    # `import nltk` imports scipy (about 1.5 s with scipy.stats) only for optional collocation
    # tests and a parser we never use, and carries on without it; so when scipy is not loaded
    # yet, hide it during this import. Nothing of scipy is cached in a half-imported state.
    hidden = "scipy" not in sys.modules
    if hidden:
        sys.modules["scipy"] = None  # type: ignore[assignment]
    try:
        from nltk.stem import porter
    finally:
        if hidden:
            del sys.modules["scipy"]
    return porter.PorterStemmer()


class _CachedStemmer:
    stem = staticmethod(_stem)


def rouge_tokens(text: str) -> tuple[str, ...]:
    """rouge_score's default tokenization with the Porter stemmer (its own function, cached stems)."""
    from rouge_score import tokenize

    return tuple(tokenize.tokenize(text, _CachedStemmer))


def lcs_length(a, b) -> int:
    """Length of the longest common subsequence, bit-parallel (Hyyrö 2004), exact."""
    if not a or not b:
        return 0
    masks: dict = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    v = (1 << len(a)) - 1
    for token in b:
        u = v & masks.get(token, 0)
        v = (v + u) | (v - u)
    return len(a) - bin(v & ((1 << len(a)) - 1)).count("1")


def _prf(overlap: int, pred_count: int, ref_count: int) -> tuple[float, float, float]:
    precision = overlap / max(pred_count, 1)
    recall = overlap / max(ref_count, 1)
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f


def rouge_row(hyp_tokens: tuple[str, ...], ref_tokens: tuple[str, ...]) -> tuple[float, ...]:
    """ROUGE-1/2/L precision, recall, F of one pair, as `rouge_score.RougeScorer.score` gives them."""
    out: list[float] = []
    for n in (1, 2):
        hyp, ref = _ngrams(hyp_tokens, n), _ngrams(ref_tokens, n)
        overlap = sum(min(c, hyp[g]) for g, c in ref.items())
        out += _prf(overlap, sum(hyp.values()), sum(ref.values()))
    if hyp_tokens and ref_tokens:
        out += _prf(lcs_length(ref_tokens, hyp_tokens), len(hyp_tokens), len(ref_tokens))
    else:
        out += (0.0, 0.0, 0.0)
    return tuple(out)


def text_metrics(sums, n: int) -> dict:
    """Corpus BLEU-4 (NLTK) and mean ROUGE P/R/F from summed `bleu_row + rouge_row` columns."""
    sums = np.asarray(sums, float)
    nb = len(BLEU_COLUMNS)
    rouge = {k: _ratio(sums[..., nb + i], n) for i, k in enumerate(ROUGE_COLUMNS)}
    if sums.ndim == 1:
        return {"n": n, "bleu": corpus_bleu(sums[:nb].tolist()) if n else 0.0, **rouge}
    return {"bleu": corpus_bleu_batch(sums[:, :nb]), **rouge}
