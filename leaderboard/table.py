"""Leaderboard rows and tables: the paper's reported numbers beside verified submissions.

Pure data building (pandas, no Gradio, no SQL) so that every table the tab shows can be tested
directly. Two kinds of row never mix:

- *reported*: a system the paper reports, exactly the numbers it printed
  (`assets/paper_results.csv`), only under the paper protocol, with where in the paper;
- *verified*: a submission scored here, with its split fingerprint, protocol, scorer version,
  time and file hash, and 95% bootstrap intervals.

The main table's columns are derived from `crashchat.tasks.TASKS` (one or more headline metrics
per task, chosen by the task's answer kind).

>>> [c.key for c in main_columns()][:3]
['crash_recognition.f1_macro', 'crash_localization.miou', 'pre_crash_localization.miou']
>>> fmt_value(0.41234, (0.40, 0.42))
'0.4123 ± 0.0100'
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from crashchat.tasks import TASKS, get_task

REPORTED = "reported"
VERIFIED = "verified"
PROTOCOLS = ("paper", "strict")

PAPER_RESULTS = Path(__file__).resolve().parents[1] / "assets" / "paper_results.csv"

# The headline per task: macro-F1 for recognition (what the paper's table prints),
# mIoU for both localization tasks, BLEU + ROUGE-L F + BERTScore for the text tasks.
MAIN_METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "yes_no": ("f1_macro",),
    "time_range": ("miou",),
    "time": ("miou",),
    "text": ("bleu", "rouge_l_f", "bertscore_f1"),
}

# Every metric of a task, in display order (the scorer JSON's keys; issue 2, item 8).
METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "yes_no": ("n", "tp", "tn", "fp", "fn", "accuracy", "precision", "recall", "f1",
               "precision_macro", "recall_macro", "f1_macro"),
    "time_range": ("n", "miou", "ap30", "ap50", "ap70"),
    "time": ("n", "miou", "ap30", "ap50", "ap70", "mtta_gt", "mtta_pred", "tta_mae",
             "too_late", "too_early"),
    "text": ("n", "bleu", "rouge_1_p", "rouge_1_r", "rouge_1_f", "rouge_2_p", "rouge_2_r",
             "rouge_2_f", "rouge_l_p", "rouge_l_r", "rouge_l_f", "rouge", "sacrebleu",
             "bertscore_f1"),
}
COUNT_METRICS = frozenset({"n", "tp", "tn", "fp", "fn", "too_late", "too_early"})

METRIC_LABELS: dict[str, str] = {
    "n": "n", "tp": "TP", "tn": "TN", "fp": "FP", "fn": "FN", "accuracy": "Accuracy",
    "precision": "Precision (Yes)", "recall": "Recall (Yes)", "f1": "F1 (Yes)",
    "precision_macro": "Precision (macro)", "recall_macro": "Recall (macro)",
    "f1_macro": "F1 (macro)", "miou": "mIoU", "ap30": "AP@30", "ap50": "AP@50", "ap70": "AP@70",
    "mtta_gt": "mean TTA truth (s)", "mtta_pred": "mean TTA pred (s)", "tta_mae": "TTA MAE (s)",
    "too_late": "too late", "too_early": "too early", "bleu": "BLEU",
    "rouge_1_p": "ROUGE-1 P", "rouge_1_r": "ROUGE-1 R", "rouge_1_f": "ROUGE-1 F",
    "rouge_2_p": "ROUGE-2 P", "rouge_2_r": "ROUGE-2 R", "rouge_2_f": "ROUGE-2 F",
    "rouge_l_p": "ROUGE-L P", "rouge_l_r": "ROUGE-L R", "rouge_l_f": "ROUGE-L F",
    "rouge": "ROUGE (paper)", "sacrebleu": "sacreBLEU", "bertscore_f1": "BERTScore F1",
}

# protocol.md: the paper prints one "ROUGE" column without saying which; most likely ROUGE-L F.
# A reported row keeps the printed name; the main table shows it under ROUGE-L F with a mark.
PAPER_ALIASES = {"rouge": "rouge_l_f"}
ALIAS_MARK = " †"
FOOTNOTE = (
    "± is half the width of the 95% bootstrap interval over videos (verified rows only). "
    "† the paper prints one unspecified \"ROUGE\" column, most likely ROUGE-L F. "
    "Reported rows show only what the paper printed, and only under the paper protocol."
)


@dataclass(frozen=True)
class Column:
    """One metric column of a table: `task.metric`."""

    task: str
    metric: str

    @property
    def key(self) -> str:
        return f"{self.task}.{self.metric}"

    @property
    def label(self) -> str:
        return f"{get_task(self.task).title}: {METRIC_LABELS.get(self.metric, self.metric)}"


def main_columns() -> tuple[Column, ...]:
    """The main table's metric columns, derived from the task table."""
    return tuple(Column(t.id, m) for t in TASKS for m in MAIN_METRICS_BY_KIND[t.kind])


@dataclass(frozen=True)
class Row:
    """One leaderboard row under one protocol."""

    model: str
    kind: str
    """`reported` or `verified`."""
    protocol: str
    tasks: Mapping[str, Mapping[str, float | None]]
    """task -> metric -> value, exactly as printed (reported) or scored (verified)."""
    ci95: Mapping[str, Mapping[str, Sequence[float]]] = field(default_factory=dict)
    by_source: Mapping[str, Mapping[str, Mapping[str, float | None]]] = field(default_factory=dict)
    category: str = ""
    """Reported rows: the paper's grouping (e.g. `zero-shot general MLLM`)."""
    where: str = ""
    """Reported rows: where in the paper the numbers are printed."""
    id: int | None = None
    """Verified rows: the store's row id."""
    link: str = ""
    notes: str = ""
    split_sha256: str = ""
    scorer_version: str = ""
    submitted_at: str = ""
    files_sha256: str = ""

    @property
    def key(self) -> str:
        """A unique, stable handle for pickers (model names need not be unique)."""
        return f"paper:{self.model}" if self.kind == REPORTED else f"verified:{self.id}"

    @property
    def display_name(self) -> str:
        return f"{self.model} (paper)" if self.kind == REPORTED else f"{self.model} (#{self.id})"

    def value(self, task: str, metric: str) -> tuple[float | None, bool]:
        """(value, is_alias): the metric, or for reported rows its printed alias (paper ROUGE)."""
        metrics = self.tasks.get(task, {})
        if metrics.get(metric) is not None:
            return _number(metrics[metric]), False
        if self.kind == REPORTED:
            for printed, meaning in PAPER_ALIASES.items():
                if meaning == metric and metrics.get(printed) is not None:
                    return _number(metrics[printed]), True
        return None, False

    def interval(self, task: str, metric: str) -> tuple[float, float] | None:
        ci = self.ci95.get(task, {}).get(metric)
        if ci is None or len(ci) != 2 or any(_number(v) is None for v in ci):
            return None
        return float(ci[0]), float(ci[1])


def _number(value) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --- building rows ------------------------------------------------------------------------------


def reported_rows(path: Path | str | None = None) -> list[Row]:
    """The paper's systems from `paper_results.csv`, in the order the file first names them."""
    path = Path(path) if path is not None else PAPER_RESULTS
    by_model: dict[str, dict] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"model", "kind", "where_in_paper", "task", "metric", "value"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: line 1: missing column(s) {', '.join(sorted(missing))}")
        for line, rec in enumerate(reader, start=2):
            try:
                task = get_task(rec["task"]).id
            except KeyError as e:
                raise ValueError(f"{path}: line {line}: field task: {e.args[0]}") from None
            try:
                value = float(rec["value"])
            except ValueError:
                raise ValueError(f"{path}: line {line}: field value: not a number: {rec['value']!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"{path}: line {line}: field value: not finite")
            entry = by_model.setdefault(rec["model"], {"category": rec["kind"], "where": [], "tasks": {}})
            if rec["where_in_paper"] not in entry["where"]:
                entry["where"].append(rec["where_in_paper"])
            entry["tasks"].setdefault(task, {})[rec["metric"]] = value
    return [Row(model=m, kind=REPORTED, protocol="paper", tasks=e["tasks"], category=e["category"],
                where="; ".join(e["where"])) for m, e in by_model.items()]


def verified_row(record: Mapping, protocol: str) -> Row:
    """A stored submission (`store.StoredRow.as_dict()`) seen under one protocol."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    result = record["result"]
    scored = result["protocols"][protocol]
    return Row(
        model=record["model"], kind=VERIFIED, protocol=protocol,
        tasks=scored.get("tasks", {}), ci95=scored.get("ci95", {}) or {},
        by_source=scored.get("by_source", {}) or {}, id=record["id"],
        link=record.get("link") or "", notes=record.get("notes") or "",
        split_sha256=result.get("split", {}).get("sha256", ""),
        scorer_version=str(result.get("scorer_version", record.get("scorer_version", ""))),
        submitted_at=record.get("submitted_at", ""), files_sha256=record.get("files_sha256", ""),
    )


def rows_for(protocol: str, reported: Iterable[Row], records: Iterable[Mapping]) -> list[Row]:
    """What the board shows under a protocol: reported rows only under `paper`, then verified."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    rows = list(reported) if protocol == "paper" else []
    return rows + [verified_row(r, protocol) for r in records]


# --- formatting ---------------------------------------------------------------------------------


def fmt_value(value: float | None, interval: tuple[float, float] | None = None,
              metric: str = "", alias: bool = False) -> str:
    """A cell: 4 decimals (counts as integers), `± half-width` of the 95% interval, `†` for an alias."""
    if value is None:
        return "—"
    text = str(int(round(value))) if metric in COUNT_METRICS else f"{value:.4f}"
    if interval is not None:
        text += f" ± {(interval[1] - interval[0]) / 2:.4f}"
    return text + (ALIAS_MARK if alias else "")


def _matches(row: Row, search: str) -> bool:
    # Every whitespace-separated term must occur somewhere in the row's descriptive text.
    haystack = " ".join([row.model, row.kind, row.category, row.where, row.notes, row.link,
                         str(row.id or "")]).casefold()
    return all(term in haystack for term in search.casefold().split())


def filter_rows(rows: Iterable[Row], search: str = "") -> list[Row]:
    return [r for r in rows if _matches(r, search)]


def sort_rows(rows: Iterable[Row], column: Column | None, descending: bool = True) -> list[Row]:
    """Sorted by one metric column; rows without a value always go last."""
    rows = list(rows)
    if column is None:
        return rows
    known = [r for r in rows if r.value(column.task, column.metric)[0] is not None]
    unknown = [r for r in rows if r.value(column.task, column.metric)[0] is None]
    known.sort(key=lambda r: r.value(column.task, column.metric)[0], reverse=descending)
    return known + unknown


def column_by_label(label: str | None) -> Column | None:
    for c in main_columns():
        if label in (c.label, c.key):
            return c
    return None


MAIN_INFO = ("Protocol", "Where in paper / split", "Scorer", "Submitted (UTC)", "Files SHA-256", "Link", "Notes")


def _info(row: Row) -> list[str]:
    if row.kind == REPORTED:
        return [row.protocol, row.where, "", "", "", "", row.category]
    return [row.protocol, f"split {row.split_sha256[:12]}", row.scorer_version, row.submitted_at,
            row.files_sha256[:16], row.link, row.notes]


def shown_rows(rows: Iterable[Row], search: str = "", sort_by: str | None = None,
               descending: bool = True) -> list[Row]:
    """The rows a view shows: those matching `search`, sorted by the column labelled `sort_by`."""
    return sort_rows(filter_rows(rows, search), column_by_label(sort_by), descending)


def main_table(rows: Iterable[Row], *, search: str = "", sort_by: str | None = None,
               descending: bool = True) -> pd.DataFrame:
    """The main table as shown: strings only, so user text is never interpreted as numbers/HTML."""
    columns = main_columns()
    records = []
    for r in shown_rows(rows, search, sort_by, descending):
        cells = [r.model, r.kind]
        for c in columns:
            value, alias = r.value(c.task, c.metric)
            cells.append(fmt_value(value, r.interval(c.task, c.metric), c.metric, alias))
        records.append(cells + _info(r))
    return pd.DataFrame(records, columns=["Model", "Kind", *[c.label for c in columns], *MAIN_INFO])


def export_frame(rows: Iterable[Row], *, search: str = "", sort_by: str | None = None,
                 descending: bool = True) -> pd.DataFrame:
    """The shown rows for CSV: numbers as numbers, the ± half-width in its own column."""
    columns = main_columns()
    records = []
    for r in shown_rows(rows, search, sort_by, descending):
        rec: dict[str, object] = {"Model": r.model, "Kind": r.kind}
        aliased = []
        for c in columns:
            value, alias = r.value(c.task, c.metric)
            ci = r.interval(c.task, c.metric)
            rec[c.label] = value
            rec[f"{c.label} ±95%"] = None if ci is None else (ci[1] - ci[0]) / 2
            if alias:
                aliased.append(c.label)
        rec.update({"Protocol": r.protocol, "Where in paper": r.where, "Split SHA-256": r.split_sha256,
                    "Scorer": r.scorer_version, "Submitted (UTC)": r.submitted_at,
                    "Files SHA-256": r.files_sha256, "Link": r.link, "Notes": r.notes or r.category,
                    "Footnotes": "; ".join(f"{a}: the paper's unnamed ROUGE" for a in aliased)})
        records.append(rec)
    wanted = ["Model", "Kind"] + [x for c in columns for x in (c.label, f"{c.label} ±95%")]
    wanted += ["Protocol", "Where in paper", "Split SHA-256", "Scorer", "Submitted (UTC)",
               "Files SHA-256", "Link", "Notes", "Footnotes"]
    return pd.DataFrame.from_records(records, columns=wanted)


def write_csv(frame: pd.DataFrame, path: Path | str) -> Path:
    path = Path(path)
    frame.to_csv(path, index=False, encoding="utf-8")
    return path


# --- per-task view ------------------------------------------------------------------------------


def task_metrics(rows: Iterable[Row], task_id: str) -> tuple[str, ...]:
    """The task's metrics present in any row, in display order (unknown numeric keys last)."""
    rows = list(rows)
    order = METRICS_BY_KIND[get_task(task_id).kind]
    present = {m for r in rows for m, v in r.tasks.get(task_id, {}).items() if _number(v) is not None}
    extra = sorted(present - set(order))
    return tuple(m for m in order if m in present) + tuple(extra)


def task_table(rows: Iterable[Row], task_id: str) -> pd.DataFrame:
    """Every metric of one task for every row (± from the 95% intervals where known)."""
    rows = list(rows)
    metrics = task_metrics(rows, task_id)
    records = []
    for r in rows:
        values = r.tasks.get(task_id, {})
        cells = [r.model, r.kind]
        for m in metrics:
            cells.append(fmt_value(_number(values.get(m)), r.interval(task_id, m), m))
        records.append(cells)
    return pd.DataFrame(records, columns=["Model", "Kind", *[METRIC_LABELS.get(m, m) for m in metrics]])


def bar_frame(rows: Iterable[Row], task_id: str, keys: Sequence[str] | None = None,
              metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Long data for a bar chart like the paper's figure: one bar per (metric, picked row)."""
    rows = [r for r in rows if keys is None or r.key in keys]
    if metrics is None:
        # Rates only (0-1): counts and seconds would dwarf them on one axis.
        metrics = [m for m in task_metrics(rows, task_id)
                   if m not in COUNT_METRICS and m not in ("mtta_gt", "mtta_pred", "tta_mae")]
    # Short x labels ("mIoU · 2") keep groups readable; the legend maps numbers to rows.
    records = []
    for m in metrics:
        for i, r in enumerate(rows, start=1):
            value = _number(r.tasks.get(task_id, {}).get(m))
            if value is not None:
                label = METRIC_LABELS.get(m, m)
                records.append({"metric": label, "model": f"{i}. {r.display_name}", "bar": f"{label} · {i}",
                                "value": value})
    return pd.DataFrame.from_records(records, columns=["metric", "model", "bar", "value"])


def source_table(row: Row, task_id: str) -> pd.DataFrame:
    """A verified row's metrics of one task per source dataset."""
    by_source = row.by_source.get(task_id, {})
    order = METRICS_BY_KIND[get_task(task_id).kind]
    metrics = [m for m in order if any(_number(v.get(m)) is not None for v in by_source.values())]
    records = [[source] + [fmt_value(_number(vals.get(m)), None, m) for m in metrics]
               for source, vals in by_source.items()]
    return pd.DataFrame(records, columns=["Source", *[METRIC_LABELS.get(m, m) for m in metrics]])


# --- compare and failures -----------------------------------------------------------------------


def compare_table(result: Mapping[str, Mapping], name_a: str, name_b: str) -> pd.DataFrame:
    """`scoring.compare` output as a table: per task, which row is better and is it significant."""
    records = []
    for task in TASKS:
        c = result.get(task.id)
        if c is None:
            continue
        better = {"a": name_a, "b": name_b}.get(c.get("better"), "neither")
        lo, hi = (c.get("ci95") or [None, None])[:2]
        records.append([
            task.title, METRIC_LABELS.get(c["metric"], c["metric"]), fmt_value(_number(c.get("a"))),
            fmt_value(_number(c.get("b"))), fmt_value(_number(c.get("diff"))),
            "—" if lo is None else f"[{lo:.4f}, {hi:.4f}]",
            "—" if c.get("p_value") is None else f"{c['p_value']:.4f}",
            better, "yes" if c.get("significant") else "no",
        ])
    return pd.DataFrame(records, columns=["Task", "Metric", "A", "B", "B − A", "95% CI of B − A",
                                          "p", "Better", "Significant (95%)"])


def failures_table(items: Sequence[Mapping], limit: int = 20) -> pd.DataFrame:
    """The worst-scored items of one task (lowest per-item score first; ties by video id)."""
    ranked = sorted(items, key=lambda it: (_number(it.get("score")) if _number(it.get("score")) is not None
                                           else -math.inf, str(it.get("video"))))
    records = [[str(it.get("video", "")), str(it.get("source", "")), _text(it.get("truth")),
                _text(it.get("response")), _text(it.get("parsed")), fmt_value(_number(it.get("score")))]
               for it in ranked[:limit]]
    return pd.DataFrame(records, columns=["Video", "Source", "Truth", "Answer", "Parsed", "Score"])


def _text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str) and not value.strip():
        return "(empty)"
    if isinstance(value, (list, tuple)):
        return " - ".join(_text(v) for v in value)
    return str(value)


# --- API rows -----------------------------------------------------------------------------------


def api_rows(rows: Iterable[Row]) -> list[dict]:
    """Plain dicts for `/leaderboard`: model, kind, the headline metrics (flat `task.metric` keys)."""
    out = []
    for r in rows:
        rec: dict[str, object] = {"model": r.model, "kind": r.kind, "protocol": r.protocol}
        if r.kind == REPORTED:
            rec.update(category=r.category, where_in_paper=r.where)
        else:
            rec.update(id=r.id, link=r.link, notes=r.notes, split_sha256=r.split_sha256,
                       scorer_version=r.scorer_version, submitted_at=r.submitted_at,
                       files_sha256=r.files_sha256)
        footnotes = []
        for c in main_columns():
            value, alias = r.value(c.task, c.metric)
            rec[c.key] = value
            ci = r.interval(c.task, c.metric)
            if ci is not None:
                rec[f"{c.key}.ci95"] = list(ci)
            if alias:
                footnotes.append(f"{c.key} is the paper's unspecified 'rouge' (most likely ROUGE-L F)")
        if footnotes:
            rec["footnotes"] = footnotes
        rec["metrics"] = {t: {m: v for m, v in ms.items()} for t, ms in r.tasks.items()}
        out.append(rec)
    return out
