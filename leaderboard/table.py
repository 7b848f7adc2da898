"""Leaderboard rows and tables: the paper's reported numbers beside verified submissions.

Pure data building (pandas, no Gradio, no SQL) so that every table the tab shows can be tested
directly. Two kinds of row never mix:

- *reported*: a system the paper reports, exactly the numbers it printed
  (`assets/paper_results.csv`), only under the paper protocol, with where in the paper;
- *verified*: a submission scored here, with its submitter, split fingerprint, protocol, scorer
  version, time and answers hash, and 95% bootstrap intervals;
- *evaluated*: the same, for answers the leaderboard's own worker produced from a Hub model id
  (an evaluation request), with the worker, GPU and code version that produced them.

Columns are derived from `crashchat.tasks.TASKS`: one headline metric per task (the same six
that make the overall score, `scoring.OVERALL_METRIC`), plus BLEU and BERTScore for the text tasks
behind the column picker.

The overall score comes first and is the default order. Coverage decides rank before any number
does: a verified row that did not answer every question of a task (*partial* on it: a missing,
`null`, empty or unparseable answer is not answered) is never ranked above a row that did
(reported rows answered the whole split), on that task's columns and, when partial on any task,
on the overall score, in every view and export.

>>> [c.key for c in main_columns()][:3]
['overall', 'crash_recognition.f1_macro', 'crash_localization.miou']
>>> fmt_value(0.41234, (0.40, 0.42))
'0.4123 ± 0.0100'
>>> fmt_p(0.0), fmt_p(0.0123)
('< 0.001', '0.012')
>>> safe_cell("=HYPERLINK(1)"), safe_cell(-0.5)
("'=HYPERLINK(1)", -0.5)
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

import pandas as pd

from crashchat.tasks import TASKS, get_task
from leaderboard.scoring import OVERALL_METRIC, PROTOCOLS
from leaderboard.store import EVALUATED, VERIFIED
from leaderboard.summary import protocols as summary_protocols
from leaderboard.summary import split_result

REPORTED = "reported"
KINDS = (REPORTED, VERIFIED, EVALUATED)
"""What a row is: printed by the paper; self-reported answers scored here; answers the
leaderboard's own worker produced for a Hub model id and scored here."""

PAPER_RESULTS = Path(__file__).resolve().parents[1] / "assets" / "paper_results.csv"

OVERALL = "overall"
# One headline per task (the overall score's six), and what the column picker adds.
HEADLINE_BY_KIND: dict[str, str] = dict(OVERALL_METRIC)
EXTRA_BY_KIND: dict[str, tuple[str, ...]] = {"text": ("bleu", "bertscore_f1")}
MAIN_METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    kind: (headline, *EXTRA_BY_KIND.get(kind, ())) for kind, headline in HEADLINE_BY_KIND.items()}
"""Every metric a main-table column shows (what a compact row keeps)."""

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
# Per source, recognition shows accuracy only: each source holds one class (MM-AU crashes only,
# D2City and Nexar normal driving only), so its precision, recall and F1 say nothing.
SOURCE_METRICS_BY_KIND: dict[str, tuple[str, ...]] = {"yes_no": ("n", "accuracy")}
SOURCE_NOTE = ("Recognition per source shows accuracy only: each source holds one class (MM-AU-CAP and "
               "MM-AU-DADA crashes only, D2City and Nexar normal driving only), so precision, recall and "
               "F1 of a single source say nothing.")

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
PAPER_OVERALL_MARK = " ‡"
BERTSCORE_MISSING = "not computed (needs roberta-large)"
"""What a verified row's BERTScore cell says: the leaderboard scores without the 1.4 GB model."""

OVERALL_TEXT = (
    "**Overall** is one number per row: the mean of six headline metrics, one per task: crash "
    "recognition macro-F1, crash-window mIoU, pre-crash mIoU and ROUGE-L F for the description, "
    "cause and prevention answers. These are the metrics the paper's tables lead with for the first "
    "three tasks; for the text tasks ROUGE-L F scores every answer on the same 0-1 scale (corpus BLEU "
    "does not, and BERTScore needs a 1.4 GB model). Each task counts the same, whatever its number of "
    "questions. Verified rows are scored under the *strict* protocol, so that every question of the "
    "split counts and a skipped or unreadable answer counts as wrong; its ± comes from one bootstrap "
    "that resamples videos for all six tasks at once. The paper's rows (‡) take the mean of the numbers "
    "the paper printed, under its own protocol, and cannot be re-scored.")
FOOTNOTE = (
    "± is half the width of the 95% bootstrap interval over videos (verified rows only). "
    "‡ overall of the paper's printed numbers (paper protocol). "
    "† the paper prints one unspecified \"ROUGE\" column, most likely ROUGE-L F. "
    "Reported rows show only what the paper printed, and only under the paper protocol. "
    "*partial*: the row did not answer every question of that task (a missing, empty or unparseable "
    "answer is not answered); it ranks below every row that did, whatever its numbers, and a row "
    "partial on any task ranks below every complete row overall."
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
PAPER_SUBMITTER = "(the paper)"
UNRECORDED_SUBMITTER = "(not recorded)"


@dataclass(frozen=True)
class Column:
    """One metric column of a table: `task.metric`, or the overall score (`task` empty)."""

    task: str
    metric: str

    @property
    def key(self) -> str:
        return self.metric if not self.task else f"{self.task}.{self.metric}"

    @property
    def label(self) -> str:
        """Unambiguous name (CSV header, sort menu): `Crash recognition: F1 (macro)`."""
        if not self.task:
            return "Overall (mean of six headline metrics)"
        return f"{get_task(self.task).title}: {METRIC_LABELS.get(self.metric, self.metric)}"

    @property
    def header(self) -> str:
        """Short two-line table header: the task, then the metric."""
        if not self.task:
            return "Overall\n(6 tasks)"
        return f"{SHORT_TITLES[self.task]}\n{SHORT_METRICS.get(self.metric, METRIC_LABELS.get(self.metric, self.metric))}"


OVERALL_COLUMN = Column("", OVERALL)


def headline_columns() -> tuple[Column, ...]:
    """One column per task: the metric the overall score takes from it."""
    return tuple(Column(t.id, HEADLINE_BY_KIND[t.kind]) for t in TASKS)


def extra_columns() -> tuple[Column, ...]:
    """The metric columns behind the column picker (BLEU and BERTScore of the text tasks)."""
    return tuple(Column(t.id, m) for t in TASKS for m in EXTRA_BY_KIND.get(t.kind, ()))


def main_columns() -> tuple[Column, ...]:
    """Every metric column of the main table (overall, the six headlines, the extras), derived from the
    task table: what the CSV, `/leaderboard` and the sort menu offer."""
    return (OVERALL_COLUMN, *headline_columns(), *extra_columns())


@dataclass(frozen=True, slots=True)
class Row:
    """One leaderboard row under one protocol (slots: a board keeps 10,000 of them per protocol)."""

    model: str
    kind: str
    """`reported`, `verified` or `evaluated` (`KINDS`); the last two are *scored here*."""
    protocol: str
    tasks: Mapping[str, Mapping[str, float | None]]
    """task -> metric -> value, exactly as printed (reported) or scored (verified; a compact row
    keeps only `MAIN_METRICS_BY_KIND`)."""
    ci95: Mapping[str, Mapping[str, Sequence[float]]] = field(default_factory=dict)
    by_source: Mapping[str, Mapping[str, Mapping[str, float | None]]] = field(default_factory=dict)
    category: str = ""
    """Reported rows: the paper's grouping (e.g. `zero-shot general MLLM`)."""
    where: str = ""
    """Reported rows: where in the paper the numbers are printed."""
    id: int | None = None
    """Verified rows: the store's row id."""
    submitter: str = ""
    """Verified rows: who submitted it (a Hugging Face username on a Space)."""
    link: str = ""
    notes: str = ""
    split_sha256: str = ""
    scorer_version: str = ""
    submitted_at: str = ""
    files_sha256: str = ""
    answers_sha256: str = ""
    coverage: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Verified rows: task -> (answered, expected); only parsed answers count as answered."""
    provenance: Mapping | None = None
    """Verified rows: how the predictions were produced (`crashchat.provenance`), when sent."""
    how_produced: str = ""
    """`crashchat.provenance.describe` of the provenance, or empty."""
    evaluation: Mapping | None = None
    """Evaluated rows: the request, worker, GPU and code version that produced the answers."""
    overall: float | None = None
    """The overall score: strict protocol (verified), the paper's printed numbers (reported)."""
    overall_ci: tuple[float, float] | None = None
    _complete: bool = field(init=False, repr=False, compare=False)
    """`complete_all`, computed once: every sort by the overall score asks it of every row."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_complete", all(self.complete(t.id) for t in TASKS))

    @property
    def scored(self) -> bool:
        """Scored here from stored answers (verified or evaluated), not printed by the paper."""
        return self.kind != REPORTED

    @property
    def row_id(self) -> int:
        """The store's id of a verified row (a reported row has none: asking is a bug)."""
        assert self.id is not None, f"{self.model!r}: a reported row has no store id"
        return self.id

    @property
    def key(self) -> str:
        """A unique, stable handle for pickers (model names of different kinds may repeat)."""
        return f"paper:{self.model}" if self.kind == REPORTED else f"verified:{self.id}"

    @property
    def display_name(self) -> str:
        return f"{self.model} (paper)" if self.kind == REPORTED else f"{self.model} (#{self.id})"

    @property
    def shown_submitter(self) -> str:
        if self.kind == REPORTED:
            return PAPER_SUBMITTER
        return self.submitter or UNRECORDED_SUBMITTER

    def value(self, task: str, metric: str) -> tuple[float | None, bool]:
        """(value, is_alias): the metric, or for reported rows its printed alias (paper ROUGE);
        `task` empty: the overall score."""
        if not task:
            return self.overall, False
        metrics = self.tasks.get(task, {})
        if metrics.get(metric) is not None:
            return _number(metrics[metric]), False
        if self.kind == REPORTED:
            for printed, meaning in PAPER_ALIASES.items():
                if meaning == metric and metrics.get(printed) is not None:
                    return _number(metrics[printed]), True
        return None, False

    def complete(self, task: str) -> bool:
        """Every question of `task` answered (reported rows: the paper scored the whole split);
        `task` empty: every task."""
        if not task:
            return self._complete
        if self.kind == REPORTED:
            return True
        answered, expected = self.coverage.get(task, (0, 0))
        return answered >= expected

    @property
    def complete_all(self) -> bool:
        return self._complete

    def fraction(self, task: str) -> float:
        """Share of `task`'s questions answered (1.0 for reported rows and for a task with none)."""
        if self.kind == REPORTED:
            return 1.0
        answered, expected = self.coverage.get(task, (0, 0))
        return answered / expected if expected else 1.0

    def answered(self, task: str) -> str:
        """`1,838/1,839` answered of `task`; `whole split` for reported rows."""
        if self.kind == REPORTED:
            return "whole split"
        answered, expected = self.coverage.get(task, (0, 0))
        return f"{answered:,}/{expected:,}"

    def answered_text(self) -> str:
        """`9,679/9,679`, or `6/9,679 partial`; `whole split` for reported rows."""
        if self.kind == REPORTED:
            return "whole split"
        answered = sum(a for a, _ in self.coverage.values())
        expected = sum(e for _, e in self.coverage.values())
        return f"{answered:,}/{expected:,}" + ("" if self.complete_all else f" {PARTIAL}")

    def interval(self, task: str, metric: str) -> tuple[float, float] | None:
        ci = self.overall_ci if not task else self.ci95.get(task, {}).get(metric)
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
    rows = [Row(model=m, kind=REPORTED, protocol="paper", tasks=e["tasks"], category=e["category"],
                where="; ".join(e["where"])) for m, e in by_model.items()]
    return [_with_paper_overall(r) for r in rows]


def _with_paper_overall(row: Row) -> Row:
    """A reported row with its overall score: the mean of the six headline numbers it printed
    (paper protocol; the unnamed ROUGE as ROUGE-L F), None when the paper printed fewer."""
    values = [row.value(c.task, c.metric)[0] for c in headline_columns()]
    printed = [v for v in values if v is not None]
    overall = sum(printed) / len(printed) if len(printed) == len(values) else None
    return replace(row, overall=overall)


def verified_row(record: Mapping, protocol: str, *, full: bool = True) -> Row:
    """A stored submission seen under one protocol.

    `record`: a stored row's fields (`store.StoredRow.as_dict()`) plus its `summary`
    (`leaderboard.summary`; a `result`, the whole scorer JSON, works too) and optionally its
    `by_source` (protocol -> task -> source -> metrics). `full=False` keeps only the metrics and
    intervals of the main table's columns (`MAIN_METRICS_BY_KIND`): 10,000 rows fit in tens of MB.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    summary = record.get("summary") or split_result(record["result"])[0]
    scored = summary_protocols(summary)[protocol]
    tasks, ci95 = scored.get("tasks", {}), scored.get("ci95", {}) or {}
    if not full:  # keys from the task table, not from each row's JSON: one string object for all rows
        tasks = {t.id: {m: tasks[t.id][m] for m in MAIN_METRICS_BY_KIND[t.kind] if m in tasks.get(t.id, {})}
                 for t in TASKS if t.id in tasks}
        ci95 = {t.id: {m: tuple(ci95[t.id][m]) for m in MAIN_METRICS_BY_KIND[t.kind] if m in ci95.get(t.id, {})}
                for t in TASKS if t.id in ci95}
    overall = summary.get("overall") or {}
    ci = overall.get("ci95")
    meta = record.get("provenance")
    by_source = record.get("by_source") or {}
    return Row(
        model=record["model"], kind=record.get("kind") or VERIFIED, protocol=protocol, tasks=tasks, ci95=ci95,
        by_source=by_source.get(protocol, {}), id=record["id"], submitter=record.get("submitter") or "",
        link=record.get("link") or "", notes=record.get("notes") or "",
        split_sha256=record.get("split_sha256", ""),
        scorer_version=str(summary.get("scorer_version") or record.get("scorer_version", "")),
        submitted_at=record.get("submitted_at", ""), files_sha256=record.get("files_sha256", ""),
        answers_sha256=record.get("answers_sha256", ""),
        coverage={t.id: (int(c[0]), int(c[1])) for t in TASKS
                  if (c := summary.get("coverage", {}).get(t.id)) is not None},
        provenance=meta, how_produced=_how_produced(meta, record.get("evaluation")), evaluation=record.get("evaluation"),
        overall=_number(overall.get("value")),
        overall_ci=(float(ci[0]), float(ci[1])) if ci else None,
    )


def evaluated_by(evaluation: Mapping) -> str:
    """One line on who produced an evaluated row: `evaluated here (request #3, worker gpu-1, NVIDIA H200, crashchat 0.4 abc1234)`."""
    parts = [f"request #{evaluation.get('request_id', '?')}", str(evaluation.get("worker") or "a worker"),
             str(evaluation.get("gpu") or "unknown GPU"), str(evaluation.get("code_version") or "unknown code")]
    return f"evaluated here ({', '.join(parts)})"


def _how_produced(meta: Mapping | None, evaluation: Mapping | None) -> str:
    described = _describe(meta)
    if not evaluation:
        return described
    return f"{evaluated_by(evaluation)}; {described}" if described else evaluated_by(evaluation)


def _describe(meta: Mapping | None) -> str:
    if not meta:
        return ""
    from crashchat.provenance import Provenance, describe  # imported here: the table module stays light

    return describe(cast(Provenance, meta))  # validated by `crashchat.provenance` when it was stored


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


def fmt_p(p: float | None) -> str:
    """A p-value: three decimals, `< 0.001` below that (a bootstrap of 1000 cannot say more)."""
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def cell(row: Row, column: Column) -> str:
    """One main-table cell of `row`: the value with its ±, marked partial, alias or paper overall."""
    value, alias = row.value(column.task, column.metric)
    if value is None:
        if row.scored and column.metric == "bertscore_f1":
            return BERTSCORE_MISSING
        return "—"
    text = fmt_value(value, row.interval(column.task, column.metric), column.metric, alias)
    if not column.task and row.kind == REPORTED:
        text += PAPER_OVERALL_MARK
    return text if row.complete(column.task) else f"{text} {PARTIAL}"


def _haystack(row: Row) -> str:
    return " ".join([row.model, row.kind, row.shown_submitter, row.category, row.where, row.notes, row.link,
                     str(row.id or "")]).casefold()


KIND_TERM = "kind:"
"""A search term `kind:evaluated` (or `kind:reported`, `kind:verified`) keeps rows of that kind only."""


def _matches(row: Row, terms: Sequence[str]) -> bool:
    # Every whitespace-separated term must occur somewhere in the row's descriptive text; a
    # `kind:` term must name the row's kind exactly (so `kind:verified` is not any row noting "verified").
    haystack = _haystack(row)
    return all(row.kind == term[len(KIND_TERM):] if term.startswith(KIND_TERM) else term in haystack
               for term in terms)


def filter_rows(rows: Iterable[Row], search: str = "") -> list[Row]:
    terms = (search or "").casefold().split()
    return list(rows) if not terms else [r for r in rows if _matches(r, terms)]


def empty_note(protocol: str, search: str = "") -> str:
    """What an empty view says: no rows of a `kind:` asked for, none matching, or none yet."""
    terms = (search or "").casefold().split()
    kinds = [t[len(KIND_TERM):] for t in terms if t.startswith(KIND_TERM)]
    if kinds:
        return f"no {kinds[0]} rows" + (" match the search" if len(terms) > 1 else " yet")
    return EMPTY_NOTE["strict" if protocol == "strict" and not terms else "paper"]


def with_kind(search: str, kind: str) -> str:
    """`search` with its `kind:` term replaced by `kind` (`all` or empty: removed)."""
    terms = [t for t in (search or "").split() if not t.casefold().startswith(KIND_TERM)]
    if kind and kind != "all":
        terms.append(KIND_TERM + kind)
    return " ".join(terms)


def sort_rows(rows: Iterable[Row], column: Column | None, descending: bool = True) -> list[Row]:
    """Sorted by one column: rows complete on its task (on every task, for the overall score)
    first, then partial ones, then rows without a value (the last two in either direction)."""
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


DEFAULT_SORT = OVERALL_COLUMN
"""The table's default order (and `/leaderboard`'s): the overall score, descending."""

# Columns beyond the default ones, picked in the tab's column picker (metric columns by label).
INFO_COLUMNS = ("Kind", "How produced", "Protocol", "Where in paper / split", "Scorer", "Submitted (UTC)",
                "Answers SHA-256", "Link", "Notes")
EXTRA_CHOICES = tuple(c.label for c in extra_columns()) + INFO_COLUMNS
"""What the column picker offers."""


def _info(row: Row) -> dict[str, str]:
    if row.kind == REPORTED:
        return {"Kind": row.kind, "How produced": "", "Protocol": row.protocol, "Where in paper / split": row.where,
                "Scorer": "", "Submitted (UTC)": "", "Answers SHA-256": "", "Link": "", "Notes": row.category}
    return {"Kind": row.kind, "How produced": row.how_produced, "Protocol": row.protocol,
            "Where in paper / split": f"split {row.split_sha256[:12]}", "Scorer": row.scorer_version,
            "Submitted (UTC)": row.submitted_at, "Answers SHA-256": row.answers_sha256[:16], "Link": row.link,
            "Notes": row.notes}


def shown_rows(rows: Iterable[Row], search: str = "", sort_by: str | None = None,
               descending: bool = True) -> list[Row]:
    """The rows a view shows: those matching `search`, sorted by the column labelled `sort_by`
    (default `DEFAULT_SORT`)."""
    column = column_by_label(sort_by) if sort_by else DEFAULT_SORT
    return sort_rows(filter_rows(rows, search), column or DEFAULT_SORT, descending)


def main_headers(extra: Sequence[str] = ()) -> list[str]:
    """The main table's headers: Model, Submitter, Overall, the six headlines, Answered, then the
    picked `extra` columns (labels of `EXTRA_CHOICES`) in the picker's order."""
    picked = [c.header for c in extra_columns() if c.label in extra]
    picked += [name for name in INFO_COLUMNS if name in extra]
    return ["Model", "Submitter", OVERALL_COLUMN.header, *[c.header for c in headline_columns()], "Answered", *picked]


def main_records(rows: Sequence[Row], extra: Sequence[str] = ()) -> list[list[str]]:
    """The cells of `rows` under `main_headers(extra)`: strings only, so user text is never
    interpreted as numbers or HTML."""
    metric_columns = [OVERALL_COLUMN, *headline_columns()]
    extra_metrics = [c for c in extra_columns() if c.label in extra]
    extra_info = [name for name in INFO_COLUMNS if name in extra]
    out = []
    for r in rows:
        cells = [r.model, r.shown_submitter, *[cell(r, c) for c in metric_columns], r.answered_text()]
        cells += [cell(r, c) for c in extra_metrics]
        if extra_info:
            info = _info(r)
            cells += [info[name] for name in extra_info]
        out.append(cells)
    return out


def main_table(rows: Iterable[Row], *, search: str = "", sort_by: str | None = None,
               descending: bool = True, extra: Sequence[str] = ()) -> pd.DataFrame:
    """The main table as shown (every matching row; the tab shows it a page at a time)."""
    shown = shown_rows(rows, search, sort_by, descending)
    return pd.DataFrame(main_records(shown, extra), columns=main_headers(extra))


def export_frame(rows: Iterable[Row], *, search: str = "", sort_by: str | None = None,
                 descending: bool = True) -> pd.DataFrame:
    """The shown rows for CSV: numbers as numbers, the ± half-width in its own column, what each
    task's answers covered as `answered/expected`."""
    columns = main_columns()
    records = []
    for r in shown_rows(rows, search, sort_by, descending):
        rec: dict[str, object] = {"Model": r.model, "Submitter": r.shown_submitter, "Kind": r.kind}
        aliased = []
        for c in columns:
            value, alias = r.value(c.task, c.metric)
            ci = r.interval(c.task, c.metric)
            rec[c.label] = value
            rec[f"{c.label} ±95%"] = None if ci is None else (ci[1] - ci[0]) / 2
            if alias:
                aliased.append(c.label)
        rec["Overall from"] = "the paper's printed numbers (paper protocol)" if r.kind == REPORTED else "strict protocol"
        rec.update({f"{t.title}: answered": r.answered(t.id) for t in TASKS})
        rec.update({"Complete": r.complete_all, "How produced": r.how_produced, "Protocol": r.protocol,
                    "Where in paper": r.where, "Split SHA-256": r.split_sha256,
                    "Scorer": r.scorer_version, "Submitted (UTC)": r.submitted_at,
                    "Answers SHA-256": r.answers_sha256, "Files SHA-256": r.files_sha256, "Link": r.link,
                    "Notes": r.notes or r.category,
                    "Footnotes": "; ".join(f"{a}: the paper's unnamed ROUGE" for a in aliased)})
        records.append(rec)
    wanted = ["Model", "Submitter", "Kind"] + [x for c in columns for x in (c.label, f"{c.label} ±95%")]
    wanted += ["Overall from"] + [f"{t.title}: answered" for t in TASKS]
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
    if get_task(task_id).kind == "text" and any(r.scored for r in rows):
        present.add("bertscore_f1")  # said "not computed" rather than left out
    return tuple(m for m in order if m in present) + tuple(extra)


def rank_for_task(rows: Iterable[Row], task_id: str) -> list[Row]:
    """The Per-task view's order: verified rows complete on the task, then the paper's rows,
    then verified rows that answered the task only in part; each by the task's headline metric
    (rows without it last)."""
    metric = HEADLINE_BY_KIND[get_task(task_id).kind]

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
        shown = r.answered(task_id) + ("" if r.complete(task_id) else f" {PARTIAL}")
        cells = [r.model, r.shown_submitter, shown]
        for m in metrics:
            value = _number(values.get(m))
            if value is None and m == "bertscore_f1" and r.scored:
                cells.append(BERTSCORE_MISSING)
            else:
                cells.append(fmt_value(value, r.interval(task_id, m), m))
        records.append(cells)
    return pd.DataFrame(records, columns=["Model", "Submitter", "Answered",
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

    Rows come in the Per-task view's order; `model` is the row's display name (`, partial` when the
    row did not answer every question of the task: its bars are not comparable).
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
                name = r.display_name if r.complete(task_id) else f"{r.display_name}, {PARTIAL}"
                records.append({"metric": METRIC_LABELS.get(m, m), "model": name, "key": r.key, "value": value})
    return pd.DataFrame.from_records(records, columns=["metric", "model", "key", "value"])


def bar_figure(data: pd.DataFrame, title: str = ""):
    """A grouped bar chart of `bar_frame` data: metrics on the x axis, one colour per row (the
    row's colour in every chart), the rows' names in the legend. A matplotlib Figure.

    Names are drawn literally: mathtext is off for every text a user can choose (a model called
    `$\\undefinedcmd$` would otherwise fail to draw, for every visitor).
    """
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
        ax.set_title(title, parse_math=False)
    if keys:
        legend = ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        for text in legend.get_texts():
            text.set_parse_math(False)
    else:
        ax.text(0.5, 0.5, "pick rows to compare", ha="center", va="center", transform=ax.transAxes)
    return fig


def source_table(row: Row, task_id: str) -> pd.DataFrame:
    """A verified row's metrics of one task per source dataset (recognition: accuracy only, see
    `SOURCE_NOTE`)."""
    by_source = row.by_source.get(task_id, {})
    kind = get_task(task_id).kind
    order = SOURCE_METRICS_BY_KIND.get(kind, METRICS_BY_KIND[kind])
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
        better = {"a": name_a, "b": name_b}.get(str(c.get("better")), "neither")
        lo, hi = (c.get("ci95") or [None, None])[:2]
        records.append([
            task.title, METRIC_LABELS.get(c["metric"], c["metric"]), fmt_value(_number(c.get("a"))),
            fmt_value(_number(c.get("b"))), fmt_value(_number(c.get("diff"))),
            "—" if lo is None else f"[{lo:.4f}, {hi:.4f}]", fmt_p(_number(c.get("p_value"))),
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
    """Plain dicts for `/leaderboard`: model, submitter, kind, `overall`, `complete`, coverage,
    the main metrics (flat `task.metric` keys), in the given order (the board passes the table's
    default order, a page at a time).

    `details`: add each row's 95% intervals (`overall.ci95`, `task.metric.ci95`), file digest and
    provenance, and every known metric of each row (`metrics`: task -> metric -> value); the board
    reads those for the rows of the page only.
    """
    out = []
    for r in rows:
        rec: dict[str, object] = {"model": r.model, "submitter": r.shown_submitter, "kind": r.kind,
                                  "protocol": r.protocol}
        if r.kind == REPORTED:
            rec.update(category=r.category, where_in_paper=r.where)
        else:
            rec.update(id=r.id, link=r.link, notes=r.notes, split_sha256=r.split_sha256,
                       scorer_version=r.scorer_version, submitted_at=r.submitted_at,
                       answers_sha256=r.answers_sha256, how_produced=r.how_produced or None)
            if r.kind == EVALUATED:
                rec["evaluation"] = dict(r.evaluation or {})
        rec["overall_from"] = "paper" if r.kind == REPORTED else "strict"
        rec["complete"] = r.complete_all
        rec["answered"] = {t.id: (list(r.coverage.get(t.id, (0, 0))) if r.scored else None) for t in TASKS}
        rec["coverage"] = {t.id: r.fraction(t.id) for t in TASKS}
        footnotes = []
        for c in main_columns():
            value, alias = r.value(c.task, c.metric)
            rec[c.key] = value
            ci = r.interval(c.task, c.metric)
            if details and ci is not None:
                rec[f"{c.key}.ci95"] = list(ci)
            if alias:
                footnotes.append(f"{c.key} is the paper's unspecified 'rouge' (most likely ROUGE-L F)")
        if r.kind == REPORTED and r.overall is not None:
            footnotes.append("overall is the mean of the paper's printed numbers (paper protocol)")
        if footnotes:
            rec["footnotes"] = footnotes
        if details:
            rec["metrics"] = {t: {m: v for m, v in ms.items()} for t, ms in r.tasks.items()}
            if r.scored:
                rec.update(files_sha256=r.files_sha256, provenance=r.provenance)
        out.append(rec)
    return out
