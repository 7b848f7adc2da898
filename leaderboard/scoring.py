"""Scoring a submission on both protocols, per source, with bootstrap intervals.

Protocols (rules: `../shared/reference/protocol.md`):
- `paper`: as published. Unparseable Yes/No, unparseable single times (pre-crash) and empty
  texts are dropped; an unparseable time range scores as (0.0, 0.0); missing answers are simply
  absent. (The authors' files: `crash_video_ar.py` and `crash_video_al.py` skip a None
  prediction in `evaluate`; `crash_video_tl.py`'s `_parse_time_range` falls back to (0.0, 0.0).)
- `strict`: every split record counts exactly once; a missing or unparseable answer is wrong
  (recognition: the label opposite to the truth; crash localization: IoU 0; pre-crash: IoU 0,
  TTA_pred 0, counted as too late; text: an empty hypothesis). Records the protocol itself leaves
  out (pre-crash videos without a usable crash start, TTA_gt <= 0) stay out.

Per-record statistics are computed once (`metrics.*_row`); every metric of a subset or a
bootstrap resample is arithmetic on their sums.

One overall score (`overall_score`): the mean of one headline metric per task (`OVERALL_METRIC`)
under the strict protocol, with a bootstrap interval that resamples videos jointly across tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import cast

import numpy as np

from crashchat.tasks import SOURCES, TASK_IDS, TASKS, Task, parse_time, parse_time_range, parse_yes_no
from leaderboard import SCORER_VERSION, metrics
from leaderboard.split import Split
from leaderboard.submission import Submission

PROTOCOLS = ("paper", "strict")
FAMILY = {
    "yes_no": (metrics.recognition_metrics, metrics.RECOGNITION_COLUMNS),
    "time_range": (metrics.localization_metrics, metrics.LOCALIZATION_COLUMNS),
    "time": (metrics.pre_crash_metrics, metrics.PRE_CRASH_COLUMNS),
    "text": (metrics.text_metrics, metrics.TEXT_COLUMNS),
}
# The one metric per task that `compare` tests, and the per-item score the failure browser shows.
COMPARE_METRIC = {"yes_no": "f1_macro", "time_range": "miou", "time": "miou", "text": "rouge_l_f"}
OVERALL_METRIC = COMPARE_METRIC
"""The headline each task brings to the overall score: what the paper's tables lead with
(recognition macro-F1, both localizations' mIoU) and, for the three text tasks, ROUGE-L F (every
answer scores on the same 0-1 scale, unlike corpus BLEU, and BERTScore needs a 1.4 GB model)."""


@dataclass
class RecordTable:
    """One task under one protocol: a row of statistics per counted record."""

    task: Task
    rows: np.ndarray
    sources: np.ndarray
    items: list[dict] = field(default_factory=list)
    """Per record: video, source, truth, response, parsed, score (the failure browser's view)."""
    pairs: list[tuple[str, str]] = field(default_factory=list)
    """Text tasks: (hypothesis, reference) per row, for BERTScore."""
    sacre: np.ndarray | None = None
    """Text tasks: sacreBLEU's segment statistics per row (summed per subset, like `rows`)."""

    @property
    def n(self) -> int:
        return len(self.rows)


class _TextCache:
    """Statistics of a (hypothesis, reference) pair, shared between the two protocols."""

    def __init__(self) -> None:
        self.tokens: dict[str, tuple[str, ...]] = {}
        self.rows: dict[tuple[str, str], tuple] = {}
        self.sacre: dict[tuple[str, str], list] = {}

    def sacre_rows(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """sacreBLEU segment statistics per pair (computed once per distinct pair)."""
        for pair in pairs:
            if pair not in self.sacre:
                self.sacre[pair] = sacrebleu_segment(*pair)
        width = 2 + 2 * _sacrebleu_metric().max_ngram_order  # lengths, then correct and total per order
        return np.asarray([self.sacre[p] for p in pairs], float).reshape(len(pairs), width)

    def row(self, hyp: str, ref: str) -> tuple:
        key = (hyp, ref)
        if key not in self.rows:
            self.rows[key] = metrics.bleu_row(hyp, ref) + metrics.rouge_row(self._tok(hyp), self._tok(ref))
        return self.rows[key]

    def _tok(self, text: str) -> tuple[str, ...]:
        if text not in self.tokens:
            self.tokens[text] = metrics.rouge_tokens(text)
        return self.tokens[text]


def crash_starts(split: Split) -> dict[str, float]:
    """Video -> crash start (t_acc) from the crash-localization split; unusable starts left out."""
    starts = {}
    for record in split.records["crash_localization"]:
        interval = parse_time_range(record.answer)
        if interval is not None and interval[0] > 0:
            starts[record.video] = interval[0]
    return starts


def record_table(task: Task, split: Split, submission: Submission, protocol: str,
               text_cache: _TextCache | None = None) -> RecordTable:
    """Per-record statistics of `task` under `protocol`."""
    strict = protocol == "strict"
    answers = submission.answers[task.id]
    rows: list[tuple[float, ...]] = []
    sources: list[str] = []
    items: list[dict] = []
    pairs: list[tuple[str, str]] = []
    t_acc = crash_starts(split) if task.kind == "time" else {}
    cache = text_cache or _TextCache()
    for record in split.records[task.id]:
        answer = answers.get(record.video)
        parsed = answer.parsed if answer is not None else None
        # `parsed` is what the task's parser returns (`crashchat.tasks`): a label, an interval, a
        # time or a text, by the task's kind; the casts below say which.
        row: tuple[float, ...]
        if task.kind == "yes_no":
            truth_yes = parse_yes_no(record.answer) == "Yes"
            if parsed is None and not strict:
                continue
            pred = (parsed == "Yes") if parsed is not None else not truth_yes
            row = metrics.recognition_row(truth_yes, pred)
            score = float(pred == truth_yes)
        elif task.kind == "time_range":
            interval = parse_time_range(record.answer)
            assert interval is not None, f"{record.video}: the split's crash window does not parse"
            if answer is None and not strict:
                continue
            if parsed is None:
                fallback = cast("tuple[float, float]", task.paper_default)
                iou = 0.0 if strict else metrics.interval_iou(fallback, interval)
            else:
                iou = metrics.interval_iou(cast("tuple[float, float]", parsed), interval)
            row, score = metrics.localization_row(iou), iou
        elif task.kind == "time":
            truth_time = parse_time(record.answer)
            start = t_acc.get(record.video)
            assert truth_time is not None, f"{record.video}: the split's pre-crash time does not parse"
            if start is None or start - truth_time <= 0 or (parsed is None and not strict):
                continue  # paper: the authors' `_parse_timestamp` gives None and `evaluate` skips it
            if parsed is None:
                stats = (0.0, start - truth_time, 0.0, True, False)
            else:
                stats = metrics.tta_iou(cast(float, parsed), truth_time, start)
            row, score = metrics.pre_crash_row(*stats), stats[0]
        else:
            reference = record.answer
            hyp = cast(str, parsed) if parsed is not None else ""
            if parsed is None and not strict:
                continue
            row = cache.row(hyp, reference)
            pairs.append((hyp, reference))
            score = row[-1]  # ROUGE-L F of this pair
        rows.append(row)
        sources.append(record.source)
        items.append({"video": record.video, "source": record.source, "truth": record.answer,
                      "response": answer.response if answer else None,
                      "parsed": list(parsed) if isinstance(parsed, tuple) else parsed,
                      "score": float(score)})
    width = len(FAMILY[task.kind][1])
    table = np.asarray(rows, float).reshape(len(rows), width)
    sacre = cache.sacre_rows(pairs) if task.kind == "text" else None
    return RecordTable(task, table, np.asarray(sources, dtype=object), items, pairs, sacre)


def table_metrics(table: RecordTable, mask: np.ndarray | None = None) -> dict:
    """Every metric of the table's rows (or the masked subset); rates are None when n is 0."""
    fn, columns = FAMILY[table.task.kind]
    rows = table.rows if mask is None else table.rows[mask]
    out = fn(rows.sum(axis=0) if len(rows) else np.zeros(len(columns)), len(rows))
    if not len(rows):
        out = {k: (v if isinstance(v, int) else None) for k, v in out.items()}
    if table.task.kind == "text":
        assert table.sacre is not None, "a text task's table carries sacreBLEU statistics"
        sacre = table.sacre if mask is None else table.sacre[mask]
        out["sacrebleu"] = _sacrebleu(sacre.sum(axis=0)) if len(sacre) else None
        out["bertscore_f1"] = None
    return out


@lru_cache(maxsize=1)
def _sacrebleu_metric():
    from sacrebleu.metrics import BLEU

    return BLEU()  # sacreBLEU's defaults: 13a tokenizer, exp smoothing, one reference


def sacrebleu_segment(hypothesis: str, reference: str) -> list[int]:
    """sacreBLEU's sufficient statistics of one segment: [sys_len, ref_len, correct..., total...].

    Read from the public `BLEUScore` of a one-segment `corpus_score` (its counts are the
    segment's, before smoothing). Corpus statistics are their sums, so every subset and bootstrap
    resample is scored by summing (see `_sacrebleu`); tests check the sum against `corpus_score`.
    """
    result = _sacrebleu_metric().corpus_score([hypothesis], [[reference]])
    return [result.sys_len, result.ref_len, *result.counts, *result.totals]


def _sacrebleu(stats: np.ndarray) -> float:
    """sacreBLEU's corpus BLEU (0-1) from summed segment statistics, as corpus_score computes it."""
    metric = _sacrebleu_metric()
    order = metric.max_ngram_order
    return metric.compute_bleu(
        correct=[int(x) for x in stats[2:2 + order]], total=[int(x) for x in stats[2 + order:]],
        sys_len=int(stats[0]), ref_len=int(stats[1]), smooth_method=metric.smooth_method,
        smooth_value=metric.smooth_value, effective_order=metric.effective_order,
        max_ngram_order=order).score / 100


def sacrebleu_signature() -> str:
    metric = _sacrebleu_metric()
    metric.corpus_score(["a"], [["a"]])  # the signature is only known once it has scored
    return str(metric.get_signature())


@lru_cache(maxsize=8)
def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) counts of how often each record is drawn; the same for a given n and seed.

    Resample b draws the records `numpy.random.default_rng(seed).integers(0, n, (resamples, n),
    dtype=int32)[b]` (the contract `tests/test_bootstrap.py` checks against a plain loop).
    Cached (read-only): tables of equal size share their draws, which also makes `compare` paired.
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n), dtype=np.int32)  # int32: half the time of int64
    draws += (np.arange(resamples, dtype=np.int32) * n)[:, None]  # row b counts into [b*n, (b+1)*n)
    weights = np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(float)
    weights.flags.writeable = False
    return weights


def bootstrap_values(table: RecordTable, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Headline metrics of each resample (rows of `weights`)."""
    fn, _ = FAMILY[table.task.kind]
    values = fn(weights @ table.rows, table.n)
    return {k: np.asarray(values[k]) for k in table.task.headline}


def bootstrap_ci(table: RecordTable, resamples: int, seed: int) -> dict[str, list[float]]:
    if resamples <= 0 or table.n == 0:
        return {}
    values = bootstrap_values(table, resample_weights(table.n, resamples, seed))
    return {k: [float(x) for x in np.percentile(v, [2.5, 97.5])] for k, v in values.items()}


BERTSCORE_MODEL = "roberta-large"  # what bert_score picks for lang="en"


def _bertscore(pairs: list[tuple[str, str]]) -> tuple[float | None, str | None]:
    """Mean BERTScore F1 (roberta-large, no idf, no rescaling: the paper's call), or None and why."""
    if not pairs:
        return None, None
    try:
        import bert_score
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:
        return None, "bert-score is not installed (pip install bert-score)"
    if not isinstance(try_to_load_from_cache(BERTSCORE_MODEL, "config.json"), str) and not _reachable(constants.ENDPOINT):
        # Fail in seconds rather than after the hub client's minute of retries.
        return None, f"{BERTSCORE_MODEL} is not cached and {constants.ENDPOINT} cannot be reached"
    hyps, refs = zip(*pairs, strict=True)
    try:
        _, _, f1 = bert_score.score(list(hyps), list(refs), lang="en", verbose=False)
    except Exception as exc:  # noqa: BLE001 - any load failure means "unavailable", and says why
        return None, f"BERTScore model could not be loaded ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return float(f1.mean()), None


def _reachable(url: str, timeout: float = 5.0) -> bool:
    import socket
    from urllib.parse import urlparse

    parts = urlparse(url)
    try:
        socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def overall_point(tasks: dict) -> float | None:
    """The overall score of a protocol's per-task metrics (`{task: {metric: value}}`): the mean of
    `OVERALL_METRIC` over the six tasks, None when any of them has no value."""
    values = [tasks.get(t.id, {}).get(OVERALL_METRIC[t.kind]) for t in TASKS]
    if any(v is None for v in values):
        return None
    return float(sum(values) / len(values))


def overall_score(tables: dict[str, RecordTable], resamples: int, seed: int) -> dict:
    """The overall score of strict tables (`task id -> RecordTable`) and its 95% interval.

    The value is `overall_point` of the tables' metrics. The interval is a percentile bootstrap
    over videos: each resample draws the split's videos with replacement, the same draw for all
    six tasks (videos are `resample_weights(len(videos), resamples, seed)`, videos in sorted
    order), and every task is scored on the records of the drawn videos, each counted as often as
    its video was drawn. Resampling videos rather than each task's records apart keeps what one
    video's answers share across tasks, so the interval is that of the mean, not of independent
    tasks. Records that a task leaves out (pre-crash videos without a crash start) stay out.
    """
    value = overall_point({t: table_metrics(tables[t]) for t in tables}) if set(tables) == set(TASK_IDS) else None
    out: dict[str, object] = {"protocol": "strict", "metrics": {t.id: OVERALL_METRIC[t.kind] for t in TASKS},
                              "value": value, "ci95": None}
    if value is None or resamples <= 0 or any(table.n == 0 for table in tables.values()):
        return out
    videos = sorted({item["video"] for table in tables.values() for item in table.items})
    index = {v: i for i, v in enumerate(videos)}
    weights = resample_weights(len(videos), resamples, seed)
    total = np.zeros(resamples)
    for task in TASKS:
        table = tables[task.id]
        w = weights[:, [index[item["video"]] for item in table.items]]
        fn, _ = FAMILY[task.kind]
        total += np.asarray(fn(w @ table.rows, w.sum(axis=1))[OVERALL_METRIC[task.kind]], float)
    out["ci95"] = [float(x) for x in np.percentile(total / len(TASKS), [2.5, 97.5])]
    return out


def score(submission: Submission, split: Split, *, bootstrap: int = 1000, bertscore: bool = False,
          seed: int = 0) -> dict:
    """The scorer's JSON (the shape `python -m leaderboard score --json` writes)."""
    cache = _TextCache()
    protocols = {}
    strict_tables: dict[str, RecordTable] = {}
    bert_note = "not requested (--bertscore)"
    for protocol in PROTOCOLS:
        tasks, by_source, ci95 = {}, {}, {}
        for task in TASKS:
            table = record_table(task, split, submission, protocol, cache)
            if protocol == "strict":
                strict_tables[task.id] = table
            tasks[task.id] = table_metrics(table)
            by_source[task.id] = {
                source: table_metrics(table, table.sources == source)
                for source in SOURCES if (table.sources == source).any()
            }
            ci95[task.id] = bootstrap_ci(table, bootstrap, seed)
            if task.kind == "text" and bertscore:
                tasks[task.id]["bertscore_f1"], reason = _bertscore(table.pairs)
                bert_note = reason or "computed"
        protocols[protocol] = {"tasks": tasks, "by_source": by_source, "ci95": ci95}
    return {
        "scorer_version": SCORER_VERSION,
        "split": split.info(),
        "files": [{"name": n, "sha256": h} for n, h in submission.files],
        "validation": submission.validation,
        "protocols": protocols,
        "overall": overall_score(strict_tables, bootstrap, seed),
        "bootstrap": {"resamples": bootstrap, "seed": seed, "level": 0.95},
        "sacrebleu_signature": sacrebleu_signature(),
        "bertscore": bert_note,
    }


def item_scores(submission: Submission, split: Split, protocol: str = "strict") -> dict[str, list[dict]]:
    """Per task, every counted record with its truth, answer, parsed value and score, worst first."""
    cache = _TextCache()
    out = {}
    for task in TASKS:
        items = record_table(task, split, submission, protocol, cache).items
        out[task.id] = sorted(items, key=lambda item: item["score"])
    return out


def compare(sub_a: Submission, sub_b: Submission, split: Split, *, n: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap over videos, strict protocol, one headline metric per task.

    Both submissions are resampled with the same draws (strict tables list the same records in
    the same order), so the spread is that of the difference, not of each score.
    """
    cache = _TextCache()
    out = {}
    for task in TASKS:
        metric = COMPARE_METRIC[task.kind]
        a = record_table(task, split, sub_a, "strict", cache)
        b = record_table(task, split, sub_b, "strict", cache)
        if a.n == 0:
            continue
        point_a, point_b = table_metrics(a)[metric], table_metrics(b)[metric]
        weights = resample_weights(a.n, n, seed)
        fn, _ = FAMILY[task.kind]
        diffs = np.asarray(fn(weights @ b.rows, b.n)[metric]) - np.asarray(fn(weights @ a.rows, a.n)[metric])
        low, high = (float(x) for x in np.percentile(diffs, [2.5, 97.5]))
        p_value = min(1.0, 2 * min(float((diffs <= 0).mean()), float((diffs >= 0).mean())))
        diff = point_b - point_a
        out[task.id] = {
            "metric": metric, "a": point_a, "b": point_b, "diff": diff, "ci95": [low, high],
            "p_value": p_value, "better": None if diff == 0 else ("b" if diff > 0 else "a"),
            "significant": bool(low > 0 or high < 0),
        }
    return out


def render_text(result: dict, protocol: str) -> str:
    """A readable six-task table of one protocol, with the validation report above it."""
    lines = [f"split {result['split']['sha256'][:12]}"
             f"{'' if result['split']['official'] else ' (NOT the published split)'}"
             f"  scorer {result['scorer_version']}  protocol {protocol}", "",
             f"{'task':<24}{'expected':>9}{'matched':>9}{'missing':>9}{'unknown':>9}{'unparsed':>9}"]
    for task in TASKS:
        v = result["validation"][task.id]
        lines.append(f"{task.id:<24}{v['expected']:>9}{v['matched']:>9}{v['missing']:>9}"
                     f"{v['unknown']:>9}{v['unparseable']:>9}")
    lines.append("")
    proto = result["protocols"][protocol]
    for task in TASKS:
        values = proto["tasks"][task.id]
        ci = proto["ci95"].get(task.id, {})
        cells = []
        for key in task.headline + (("sacrebleu",) if task.kind == "text" else ()):
            value = values.get(key)
            text = "n/a" if value is None else f"{value:.4f}"
            if key in ci:
                text += f" [{ci[key][0]:.4f}, {ci[key][1]:.4f}]"
            cells.append(f"{key} {text}")
        lines.append(f"{task.title} (n={values['n']})")
        lines.extend(f"    {cell}" for cell in cells)
    overall = result.get("overall") or {}
    if overall.get("value") is not None:
        ci = overall.get("ci95")
        lines.append(f"Overall (strict protocol, mean of {', '.join(overall['metrics'].values())}): "
                     f"{overall['value']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""))
    return "\n".join(lines)

