"""An independent, plain implementation of protocol.md, to check the scorer against.

Written straight from the protocol text, record by record, with the reference libraries
(NLTK's corpus_bleu, Google's rouge_score, sacreBLEU's corpus_bleu) and none of the scorer's
code except the split reader. Slow on purpose: it is also the baseline that
`benchmarks/score_speed.py` times.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

NAMES = {
    "crash_recognition": "crash_recognition", "crash_localization": "crash_localization",
    "pre_crash_localization": "pre_crash_localization", "crash_description": "crash_description",
    "causal_reasoning": "cause_reasoning", "prevention_reasoning": "prevention_reasoning",
}
TEXT = ("crash_description", "causal_reasoning", "prevention_reasoning")


def load(split_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for task, name in NAMES.items():
        path = Path(split_dir) / f"crashchat_dada_video_total_{name}_test.json"
        out[task] = [{"video": r["video"][0].split("/")[-1], "answer": r["conversations"][1]["value"],
                      "source": r["source"]} for r in json.loads(path.read_text())]
    return out


def yes_no(text):
    t = text.strip().lower()
    if t == "yes":
        return "Yes"
    if t == "no":
        return "No"
    if "yes" in t and "no" not in t:
        return "Yes"
    if "no" in t and "yes" not in t:
        return "No"
    return None


def time_range(text):
    m = re.search(r"([\d\.]+)\s*-\s*([\d\.]+)", text)
    if m:
        try:
            return float(m.group(1)), float(m.group(2))
        except ValueError:
            pass
    runs = re.findall(r"[\d\.]+", text)
    if len(runs) >= 2:
        try:
            return float(runs[0]), float(runs[1])
        except ValueError:
            pass
    return None


def single_time(text):
    runs = re.findall(r"[\d\.]+", text)
    if runs:
        try:
            return float(runs[0])
        except ValueError:
            pass
    return None


def iou(a, b):
    a, b = (min(a), max(a)), (min(b), max(b))
    union = max(a[1], b[1]) - min(a[0], b[0])
    if union == 0:
        return 0.0
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0])) / union


def score(split: dict[str, list[dict]], responses: dict[tuple[str, str], str | None], protocol: str,
          sources=None) -> dict:
    """responses: (task, video) -> raw text (None: no answer). Returns {task: metrics}."""
    import sacrebleu
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu
    from rouge_score import rouge_scorer

    strict = protocol == "strict"
    keep = (lambda r: True) if sources is None else (lambda r: r["source"] in sources)
    out = {}

    # recognition
    tp = tn = fp = fn = 0
    for r in split["crash_recognition"]:
        if not keep(r):
            continue
        truth = r["answer"] == "Yes"
        text = responses.get(("crash_recognition", r["video"]))
        pred = yes_no(text) if text is not None else None
        if pred is None:
            if not strict:
                continue
            pred_yes = not truth
        else:
            pred_yes = pred == "Yes"
        tp += truth and pred_yes
        tn += (not truth) and (not pred_yes)
        fp += (not truth) and pred_yes
        fn += truth and not pred_yes
    div = lambda a, b: a / b if b else 0.0
    p, r_ = div(tp, tp + fp), div(tp, tp + fn)
    np_, nr = div(tn, tn + fn), div(tn, tn + fp)
    f = div(2 * p * r_, p + r_)
    nf = div(2 * np_ * nr, np_ + nr)
    n = tp + tn + fp + fn
    out["crash_recognition"] = {"n": n, "tp": tp, "tn": tn, "fp": fp, "fn": fn, "accuracy": div(tp + tn, n),
                                "precision": p, "recall": r_, "f1": f, "precision_macro": (p + np_) / 2,
                                "recall_macro": (r_ + nr) / 2, "f1_macro": (f + nf) / 2}

    # crash localization
    ious = []
    for r in split["crash_localization"]:
        if not keep(r):
            continue
        text = responses.get(("crash_localization", r["video"]))
        if text is None and not strict:
            continue
        pred = time_range(text) if text is not None else None
        if pred is None:
            ious.append(0.0 if strict else iou((0.0, 0.0), time_range(r["answer"])))
        else:
            ious.append(iou(pred, time_range(r["answer"])))
    out["crash_localization"] = _loc(ious)

    # pre-crash
    t_acc = {}
    for r in split["crash_localization"]:
        start = time_range(r["answer"])[0]
        if start > 0:
            t_acc[r["video"]] = start
    ious, gts, preds, errs, late, early = [], [], [], [], 0, 0
    for r in split["pre_crash_localization"]:
        if not keep(r) or r["video"] not in t_acc:
            continue
        acc, gt = t_acc[r["video"]], single_time(r["answer"])
        if acc - gt <= 0:
            continue
        text = responses.get(("pre_crash_localization", r["video"]))
        pred = single_time(text) if text is not None else None
        if pred is None and not strict:
            continue  # no number (or none that is a float): dropped, missing or not
        if pred is None:
            value, tta_pred = 0.0, 0.0
            late += 1
        else:
            tta_gt, tta_pred = acc - gt, max(acc - pred, 0)
            if pred >= acc:
                value = 0.0
                late += 1
            elif pred < gt - 0.5:
                value = 0.0
                early += 1
            elif pred < gt:
                value = 1.0
            else:
                value = min(tta_gt, tta_pred) / max(tta_gt, tta_pred)
        ious.append(value)
        gts.append(acc - gt)
        preds.append(tta_pred)
        errs.append(abs(tta_pred - (acc - gt)))
    m = _loc(ious)
    k = len(ious)
    m.update({"mtta_gt": sum(gts) / k if k else None, "mtta_pred": sum(preds) / k if k else None,
              "tta_mae": sum(errs) / k if k else None, "too_late": late, "too_early": early})
    out["pre_crash_localization"] = m

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for task in TEXT:
        hyps, refs = [], []
        for r in split[task]:
            if not keep(r):
                continue
            text = responses.get((task, r["video"]))
            text = text.strip() if text is not None else ""
            if not text and not strict:
                continue
            hyps.append(text)
            refs.append(r["answer"])
        metrics = {"n": len(hyps)}
        if hyps:
            metrics["bleu"] = corpus_bleu([[x.split()] for x in refs], [h.split() for h in hyps],
                                          weights=(0.25, 0.25, 0.25, 0.25),
                                          smoothing_function=SmoothingFunction().method1)
            metrics["sacrebleu"] = sacrebleu.corpus_bleu(hyps, [refs]).score / 100
            scores = [scorer.score(ref, hyp) for hyp, ref in zip(hyps, refs, strict=True)]
            for key, name in (("rouge1", "rouge_1"), ("rouge2", "rouge_2"), ("rougeL", "rouge_l")):
                metrics[f"{name}_p"] = sum(s[key].precision for s in scores) / len(scores)
                metrics[f"{name}_r"] = sum(s[key].recall for s in scores) / len(scores)
                metrics[f"{name}_f"] = sum(s[key].fmeasure for s in scores) / len(scores)
        out[task] = metrics
    return out


def _loc(ious):
    n = len(ious)
    if not n:
        return {"n": 0}
    return {"n": n, "miou": sum(ious) / n, "ap30": sum(i >= 0.3 for i in ious) / n,
            "ap50": sum(i >= 0.5 for i in ious) / n, "ap70": sum(i >= 0.7 for i in ious) / n}
