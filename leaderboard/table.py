"""Leaderboard rows and tables: the paper's reported numbers beside verified submissions.

Pure data building (pandas, no Gradio, no SQL) so that every table the tab shows can be tested
directly. Two kinds of row never mix:

- *reported*: a system the paper reports, exactly the numbers it printed
  (`assets/paper_results.csv`), only under the paper protocol, with where in the paper;
- *verified*: a submission scored here, with its split fingerprint, protocol, scorer version,
  time and file hash, and 95% bootstrap intervals.

The main table's columns are derived from `crashchat.tasks.TASKS` (one or more headline metrics
per task, chosen by the task's answer kind).

Coverage decides rank before any number does: a verified row that did not answer every question
of a task (*partial* on it) is never ranked above a row that did (reported rows answered the
whole split), on that task's columns, in every view and export.

>>> [c.key for c in main_columns()][:3]
['crash_recognition.f1_macro', 'crash_localization.miou', 'pre_crash_localization.miou']
>>> fmt_value(0.41234, (0.40, 0.42))
'0.4123 ± 0.0100'
>>> safe_cell("=HYPERLINK(1)"), safe_cell(-0.5)
("'=HYPERLINK(1)", -0.5)
"""

from __future__ import annotations

import csv
import hashlib
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
    "Reported rows show only what the paper printed, and only under the paper protocol. "
    "*partial*: the row did not answer every question of that task; it ranks below every row that "
    "did, whatever its numbers (a score from a few answers is no score of the task)."
)

# Short task names for column headers (the full titles live in crashchat.tasks).
SHORT_TITLES = {
    "crash_recognition": "Recognition", "crash_localization": "Crash window",
    "pre_crash_localization": "Pre-crash", "crash_description": "Description",
    "causal_reasoning": "Cause", "prevention_reasoning": "Prevention",
}
SHORT_METRICS = {"f1_macro": "F1 macro", "rouge_l_f": "ROUGE-L F", "bertscore_f1": "BERTScore"}
PARTIAL = "partial"
EMPTY_NOTE = {"paper": "no rows match the search", "strict": "no verified rows yet"}


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
        """Unambiguous name (CSV header, sort menu): `Crash recognition: F1 (macro)`."""
        return f"{get_task(self.task).title}: {METRIC_LABELS.get(self.metric, self.metric)}"

    @property
    def header(self) -> str:
        """Short two-line table header: the task, then the metric."""
        return f"{SHORT_TITLES[self.task]}\n{SHORT_METRICS.get(self.metric, METRIC_LABELS.get(self.metric, self.metric))}"


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
    answers_sha256: str = ""
    coverage: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Verified rows: task -> (answered, expected); an unparseable answer counts as answered."""
    provenance: Mapping | None = None
    """Verified rows: how the predictions were produced (`crashchat.provenance`), when sent."""
    how_produced: str = ""
    """`crashchat.provenance.describe` of the provenance, or empty."""

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

    def complete(self, task: str) -> bool:
        """Every question of `task` answered (reported rows: the paper scored the whole split)."""
        if self.kind == REPORTED:
            return True
        answered, expected = self.coverage.get(task, (0, 0))
        return answered >= expected

    @property
    def complete_all(self) -> bool:
        return all(self.complete(t.id) for t in TASKS)

    def fraction(self, task: str) -> float:
        """Share of `task`'s questions answered (1.0 for reported rows and for a task with none)."""
        if self.kind == REPORTED:
            return 1.0
        answered, expected = self.coverage.get(task, (0, 0))
        return answered / expected if expected else 1.0

    def answered_text(self) -> str:
        """`9,679/9,679`, or `6/9,679 partial`; empty for reported rows."""
        if self.kind == REPORTED:
            return ""
        answered = sum(a for a, _ in self.coverage.values())
        expected = sum(e for _, e in self.coverage.values())
        return f"{answered:,}/{expected:,}" + ("" if self.complete_all else f" {PARTIAL}")

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


def coverage(validation: Mapping[str, Mapping[str, int]]) -> dict[str, tuple[int, int]]:
    """Task -> (answered, expected) from the scorer's validation report (matched = answered)."""
    return {t.id: (int(validation.get(t.id, {}).get("matched", 0)), int(validation.get(t.id, {}).get("expected", 0)))
            for t in TASKS}


def verified_row(record: Mapping, protocol: str) -> Row:
    """A stored submission (`store.StoredRow.as_dict()`) seen under one protocol."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    result = record["result"]
    scored = result["protocols"][protocol]
    meta = record.get("provenance")
    return Row(
        model=record["model"], kind=VERIFIED, protocol=protocol,
        tasks=scored.get("tasks", {}), ci95=scored.get("ci95", {}) or {},
        by_source=scored.get("by_source", {}) or {}, id=record["id"],
        link=record.get("link") or "", notes=record.get("notes") or "",
        split_sha256=result.get("split", {}).get("sha256", ""),
        scorer_version=str(result.get("scorer_version", record.get("scorer_version", ""))),
        submitted_at=record.get("submitted_at", ""), files_sha256=record.get("files_sha256", ""),
        answers_sha256=record.get("answers_sha256", ""), coverage=coverage(result.get("validation", {})),
        provenance=meta, how_produced=_describe(meta),
    )


def _describe(meta: Mapping | None) -> str:
    if not meta:
        return ""
    from crashchat.provenance import describe  # imported here: the table module stays light

    return describe(meta)


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
    """Sorted by one metric column: rows complete on its task first, then partial ones, then
    rows without a value (the last two in either direction)."""
    rows = list(rows)
    if column is None:
        return rows

    def rank(r: Row) -> tuple:
        value = r.value(column.task, column.metric)[0]
        group = 2 if value is None else (0 if r.complete(column.task) else 1)
        return group, 0.0 if value is None else (-value if descending else value)

    return sorted(rows, key=rank)  # stable: equal rows keep the board's order


def column_by_label(label: str | None) -> Column | None:
    for c in main_columns():
        if label in (c.label, c.key, c.header):
            return c
    return None


DEFAULT_SORT = main_columns()[0]
"""The table's default order (and `/leaderboard`'s): the first headline column, descending."""

MAIN_INFO = ("Answered", "How produced", "Protocol", "Where in paper / split", "Scorer", "Submitted (UTC)",
             "Answers SHA-256", "Link", "Notes")


def _info(row: Row) -> list[str]:
    if row.kind == REPORTED:
        return ["whole split", "", row.protocol, row.where, "", "", "", "", row.category]
    return [row.answered_text(), row.how_produced, row.protocol, f"split {row.split_sha256[:12]}",
            row.scorer_version, row.submitted_at, row.answers_sha256[:16], row.link, row.notes]


def shown_rows(rows: Iterable[Row], search: str = "", sort_by: str | None = None,
               descending: bool = True) -> list[Row]:
    """The rows a view shows: those matching `search`, sorted by the column labelled `sort_by`
    (default `DEFAULT_SORT`)."""
    column = column_by_label(sort_by) if sort_by else DEFAULT_SORT
    return sort_rows(filter_rows(rows, search), column or DEFAULT_SORT, descending)


def main_table(rows: Iterable[Row], *, search: str = "", sort_by: str | None = None,
               descending: bool = True) -> pd.DataFrame:
    """The main table as shown: strings only, so user text is never interpreted as numbers/HTML.

    Headers are `Column.header` (short, task then metric); a cell of a task the row answered
    only in part says so.
    """
    columns = main_columns()
    records = []
    for r in shown_rows(rows, search, sort_by, descending):
        cells = [r.model, r.kind]
        for c in columns:
            value, alias = r.value(c.task, c.metric)
            text = fmt_value(value, r.interval(c.task, c.metric), c.metric, alias)
            cells.append(text if value is None or r.complete(c.task) else f"{text} {PARTIAL}")
        records.append(cells + _info(r))
    return pd.DataFrame(records, columns=["Model", "Kind", *[c.header for c in columns], *MAIN_INFO])


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
        rec.update({f"{t.title}: answered": r.fraction(t.id) for t in TASKS})
        rec.update({"Complete": r.complete_all, "How produced": r.how_produced, "Protocol": r.protocol,
                    "Where in paper": r.where, "Split SHA-256": r.split_sha256,
                    "Scorer": r.scorer_version, "Submitted (UTC)": r.submitted_at,
                    "Answers SHA-256": r.answers_sha256, "Files SHA-256": r.files_sha256, "Link": r.link,
                    "Notes": r.notes or r.category,
                    "Footnotes": "; ".join(f"{a}: the paper's unnamed ROUGE" for a in aliased)})
        records.append(rec)
    wanted = ["Model", "Kind"] + [x for c in columns for x in (c.label, f"{c.label} ±95%")]
    wanted += [f"{t.title}: answered" for t in TASKS]
    wanted += ["Complete", "How produced", "Protocol", "Where in paper", "Split SHA-256", "Scorer",
               "Submitted (UTC)", "Answers SHA-256", "Files SHA-256", "Link", "Notes", "Footnotes"]
    return pd.DataFrame.from_records(records, columns=wanted)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """A CSV cell a spreadsheet will not run: text starting like a formula gets a leading `'`.

    Numbers stay numbers (a negative number is data, not a formula).
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_text(frame: pd.DataFrame) -> str:
    """The frame as CSV with every text cell (and header) passed through `safe_cell`."""
    safe = frame.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):  # object or string dtype: text cells
            safe[column] = safe[column].map(safe_cell)
    safe.columns = [safe_cell(str(c)) for c in safe.columns]
    # CRLF rows (RFC 4180): a cell holding a bare CR is then quoted, not read as a line break.
    return safe.to_csv(index=False, lineterminator="\r\n")


def write_csv(frame: pd.DataFrame, path: Path | str) -> Path:
    path = Path(path)
    path.write_text(csv_text(frame), encoding="utf-8", newline="")
    return path


# --- per-task view ------------------------------------------------------------------------------


def task_metrics(rows: Iterable[Row], task_id: str) -> tuple[str, ...]:
    """The task's metrics present in any row, in display order (unknown numeric keys last)."""
    rows = list(rows)
    order = METRICS_BY_KIND[get_task(task_id).kind]
    present = {m for r in rows for m, v in r.tasks.get(task_id, {}).items() if _number(v) is not None}
    extra = sorted(present - set(order))
    return tuple(m for m in order if m in present) + tuple(extra)


def rank_for_task(rows: Iterable[Row], task_id: str) -> list[Row]:
    """The Per-task view's order: verified rows complete on the task, then the paper's rows,
    then verified rows that answered the task only in part; each by the task's first headline
    metric (rows without it last)."""
    metric = MAIN_METRICS_BY_KIND[get_task(task_id).kind][0]

    def rank(r: Row) -> tuple:
        value = r.value(task_id, metric)[0]
        group = 1 if r.kind == REPORTED else (0 if r.complete(task_id) else 2)
        return value is None, group, -(value or 0.0)

    return sorted(rows, key=rank)


def task_table(rows: Iterable[Row], task_id: str) -> pd.DataFrame:
    """Every metric of one task for every row, in `rank_for_task` (± from the 95% intervals)."""
    rows = rank_for_task(rows, task_id)
    metrics = task_metrics(rows, task_id)
    records = []
    for r in rows:
        values = r.tasks.get(task_id, {})
        answered, expected = r.coverage.get(task_id, (0, 0))
        shown = "whole split" if r.kind == REPORTED else (
            f"{answered:,}/{expected:,}" + ("" if r.complete(task_id) else f" {PARTIAL}"))
        cells = [r.model, r.kind, shown]
        for m in metrics:
            cells.append(fmt_value(_number(values.get(m)), r.interval(task_id, m), m))
        records.append(cells)
    return pd.DataFrame(records, columns=["Model", "Kind", "Answered",
                                          *[METRIC_LABELS.get(m, m) for m in metrics]])


# Okabe-Ito (colour-blind safe) and four more of distinct hue; a row keeps its colour in every chart.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
           "#9467bd", "#8c564b", "#7f7f7f", "#17becf")


def row_color(key: str) -> str:
    """A stable colour for a row key (the same model gets the same colour in every chart)."""
    return PALETTE[int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % len(PALETTE)]


def chart_colors(keys: Sequence[str]) -> dict[str, str]:
    """Colours for the rows of one chart: `row_color`, stepping on to a free colour only when
    two rows of the chart would share one (in key order, so the same rows get the same colours
    in every task's chart)."""
    out: dict[str, str] = {}
    for key in sorted(keys):
        start = PALETTE.index(row_color(key))
        for step in range(len(PALETTE)):
            color = PALETTE[(start + step) % len(PALETTE)]
            if color not in out.values():
                break
        out[key] = color
    return out


def bar_frame(rows: Iterable[Row], task_id: str, keys: Sequence[str] | None = None,
              metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Long data for a bar chart like the paper's figure: one bar per (metric, picked row).

    Rows come in the Per-task view's order; `model` is the row's display name.
    """
    rows = [r for r in rank_for_task(rows, task_id) if keys is None or r.key in keys]
    if metrics is None:
        # Rates only (0-1): counts and seconds would dwarf them on one axis.
        metrics = [m for m in task_metrics(rows, task_id)
                   if m not in COUNT_METRICS and m not in ("mtta_gt", "mtta_pred", "tta_mae")]
    records = []
    for m in metrics:
        for r in rows:
            value = _number(r.tasks.get(task_id, {}).get(m))
            if value is not None:
                records.append({"metric": METRIC_LABELS.get(m, m), "model": r.display_name, "key": r.key,
                                "value": value})
    return pd.DataFrame.from_records(records, columns=["metric", "model", "key", "value"])


def bar_figure(data: pd.DataFrame, title: str = ""):
    """A grouped bar chart of `bar_frame` data: metrics on the x axis, one colour per row (the
    row's colour in every chart), the rows' names in the legend. A matplotlib Figure."""
    from matplotlib.figure import Figure  # no pyplot: no global state, safe from worker threads

    fig = Figure(figsize=(12, 4.8), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    metrics = list(dict.fromkeys(data["metric"]))
    keys = list(dict.fromkeys(data["key"]))
    names = dict(zip(data["key"], data["model"], strict=True))
    colors = chart_colors(keys)
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        mine = data[data["key"] == key].set_index("metric")["value"]
        xs = [j + (i - (len(keys) - 1) / 2) * width for j, m in enumerate(metrics) if m in mine.index]
        ys = [float(mine[m]) for m in metrics if m in mine.index]
        label = names[key] if len(names[key]) <= 48 else names[key][:47] + "…"
        ax.bar(xs, ys, width=width * 0.95, color=colors[key], label=label)
    ax.set_xticks(range(len(metrics)), metrics, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (0–1)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title)
    if keys:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "pick rows to compare", ha="center", va="center", transform=ax.transAxes)
    return fig


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


FAILURE_TEXT_CHARS = 400
"""Longest text shown in a failure-browser cell (answers may be up to 16 k characters)."""


def failures_table(items: Sequence[Mapping], limit: int = 20) -> pd.DataFrame:
    """The worst-scored items of one task (lowest per-item score first; ties by video id)."""
    ranked = sorted(items, key=lambda it: (_number(it.get("score")) if _number(it.get("score")) is not None
                                           else -math.inf, str(it.get("video"))))
    records = [[_clip(str(it.get("video", ""))), str(it.get("source", "")), _clip(_text(it.get("truth"))),
                _clip(_text(it.get("response"))), _clip(_text(it.get("parsed"))), fmt_value(_number(it.get("score")))]
               for it in ranked[:limit]]
    return pd.DataFrame(records, columns=["Video", "Source", "Truth", "Answer", "Parsed", "Score"])


def _clip(text: str, limit: int = FAILURE_TEXT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def _text(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str) and not value.strip():
        return "(empty)"
    if isinstance(value, (list, tuple)):
        return " - ".join(_text(v) for v in value)
    return str(value)


# --- API rows -----------------------------------------------------------------------------------


def api_rows(rows: Iterable[Row], *, details: bool = False) -> list[dict]:
    """Plain dicts for `/leaderboard`: model, kind, coverage, the headline metrics (flat
    `task.metric` keys), in the given order (the board passes the table's default order).

    `details`: add each verified row's 95% intervals (`task.metric.ci95`), file digest and
    provenance, and every known metric of each row (`metrics`: task -> metric -> value). That
    is four times the data (about 4 MB for 1000 rows, most of the time of a call), so it is
    asked for.
    """
    out = []
    for r in rows:
        rec: dict[str, object] = {"model": r.model, "kind": r.kind, "protocol": r.protocol}
        if r.kind == REPORTED:
            rec.update(category=r.category, where_in_paper=r.where)
        else:
            rec.update(id=r.id, link=r.link, notes=r.notes, split_sha256=r.split_sha256,
                       scorer_version=r.scorer_version, submitted_at=r.submitted_at,
                       answers_sha256=r.answers_sha256, how_produced=r.how_produced or None)
        rec["coverage"] = {t.id: r.fraction(t.id) for t in TASKS}
        rec["complete"] = r.complete_all
        footnotes = []
        for c in main_columns():
            value, alias = r.value(c.task, c.metric)
            rec[c.key] = value
            ci = r.interval(c.task, c.metric)
            if details and ci is not None:
                rec[f"{c.key}.ci95"] = list(ci)
            if alias:
                footnotes.append(f"{c.key} is the paper's unspecified 'rouge' (most likely ROUGE-L F)")
        if footnotes:
            rec["footnotes"] = footnotes
        if details:
            rec["metrics"] = {t: {m: v for m, v in ms.items()} for t, ms in r.tasks.items()}
            if r.kind == VERIFIED:
                rec.update(files_sha256=r.files_sha256, provenance=r.provenance)
        out.append(rec)
    return out
