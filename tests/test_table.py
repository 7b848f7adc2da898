"""Leaderboard table building, without Gradio: reported vs verified rows, columns, formatting."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from crashchat.tasks import TASKS
from leaderboard import table
from leaderboard.table import REPORTED, VERIFIED


def fake_result(scale: float, *, sha: str = "ab" * 32, version: str = "9.9.9", answered: int = 10,
                unparseable: int = 0) -> dict:
    """A scorer JSON of issue 2's shape (hand-made values; real scores are tested in test_store)."""
    def task_metrics(task, s):
        keys = table.METRICS_BY_KIND[task.kind]
        return {m: (100 if m in table.COUNT_METRICS else s) for m in keys if m != "rouge"}

    protocols = {}
    for offset, protocol in ((0.0, "paper"), (-0.1, "strict")):
        s = scale + offset
        protocols[protocol] = {
            "tasks": {t.id: task_metrics(t, s) for t in TASKS},
            "by_source": {t.id: {"MM-AU-CAP": task_metrics(t, s + 0.01), "D2City": task_metrics(t, s - 0.01)}
                          for t in TASKS},
            "ci95": {t.id: {m: [s - 0.02, s + 0.02] for m in t.headline} for t in TASKS},
        }
    for p in protocols.values():  # BERTScore not requested: null, never 0
        for t in TASKS:
            if t.kind == "text":
                p["tasks"][t.id]["bertscore_f1"] = None
    return {"scorer_version": version, "split": {"sha256": sha},
            "validation": {t.id: {"expected": 10, "matched": answered, "missing": 10 - answered, "unknown": 0,
                                  "unparseable": unparseable} for t in TASKS},
            "protocols": protocols,
            "overall": {"protocol": "strict", "value": scale - 0.1, "ci95": [scale - 0.13, scale - 0.07]}}


def record(row_id: int, model: str, scale: float, answered: int = 10, unparseable: int = 0, **extra) -> dict:
    return {"id": row_id, "model": model, "submitter": f"user{row_id}", "link": "", "notes": "",
            "submitted_at": "2026-01-01T00:00:00Z", "files_sha256": "cd" * 32, "answers_sha256": "ef" * 32,
            "result": fake_result(scale, answered=answered, unparseable=unparseable), **extra}


@pytest.fixture(scope="module")
def reported():
    return table.reported_rows()


def test_reported_rows_are_exactly_the_printed_numbers(reported):
    with open(table.PAPER_RESULTS, newline="", encoding="utf-8") as fh:
        printed = list(csv.DictReader(fh))
    by_model = {r.model: r for r in reported}
    assert len(by_model) == len({p["model"] for p in printed}) == 10
    for p in printed:
        row = by_model[p["model"]]
        task = p["task"] if p["task"] != "cause_reasoning" else "causal_reasoning"
        assert row.tasks[task][p["metric"]] == float(p["value"])
        assert p["where_in_paper"] in row.where
        assert row.kind == REPORTED and row.protocol == "paper" and not row.ci95
    # Nothing but the printed metrics: a reported row never gains a computed number.
    assert sum(len(m) for r in reported for m in r.tasks.values()) == len(printed)


def test_reported_rows_only_under_the_paper_protocol(reported):
    recs = [record(1, "mine", 0.5)]
    assert [r.kind for r in table.rows_for("paper", reported, recs)].count(REPORTED) == 10
    strict = table.rows_for("strict", reported, recs)
    assert [r.kind for r in strict] == [VERIFIED]
    assert strict[0].tasks["crash_recognition"]["f1_macro"] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="unknown protocol"):
        table.rows_for("loose", reported, recs)


def test_main_columns_come_from_the_task_table():
    cols = table.main_columns()
    assert cols[0] == table.OVERALL_COLUMN and cols[0].key == "overall"
    assert {c.task for c in cols[1:]} == {t.id for t in TASKS}
    headlines = {c.task: c.metric for c in table.headline_columns()}
    assert headlines == {"crash_recognition": "f1_macro", "crash_localization": "miou",
                         "pre_crash_localization": "miou", "crash_description": "rouge_l_f",
                         "causal_reasoning": "rouge_l_f", "prevention_reasoning": "rouge_l_f"}
    assert {(c.task, c.metric) for c in table.extra_columns()} == {
        (t.id, m) for t in TASKS if t.kind == "text" for m in ("bleu", "bertscore_f1")}
    # The default table: model, submitter, overall, the six headlines, coverage; nothing else.
    frame = table.main_table([])
    assert list(frame.columns) == ["Model", "Submitter", "Overall\n(6 tasks)",
                                   *[c.header for c in table.headline_columns()], "Answered"]
    picked = table.main_headers(["Crash description: BLEU", "Kind"])
    assert picked[-2:] == ["Description\nBLEU", "Kind"]
    # Short headers: the task on one line, the metric under it, no word longer than a column.
    for c in cols[1:]:
        task, metric = c.header.split("\n")
        assert len(task) <= 12 and len(metric) <= 12, c.header
    assert table.column_by_label(cols[0].header) == table.column_by_label(cols[0].label) == cols[0]


def test_main_table_formats_ci_alias_and_missing(reported):
    rows = table.rows_for("paper", reported, [record(7, "<img src=x onerror=alert(1)>", 0.5)])
    extra = ["Crash description: BERTScore F1", "Kind", "Where in paper / split"]
    frame = table.main_table(rows, extra=extra)
    mine = frame[frame["Kind"] == VERIFIED].iloc[0]
    assert mine["Model"] == "<img src=x onerror=alert(1)>" and mine["Submitter"] == "user7"  # shown as given
    assert mine["Overall\n(6 tasks)"] == "0.4000 ± 0.0300"
    assert mine["Recognition\nF1 macro"] == "0.5000 ± 0.0200"
    assert mine["Description\nBERTScore"] == "not computed (needs roberta-large)"  # unavailable, not 0, and why
    assert mine["Description\nROUGE-L F"] == "0.5000 ± 0.0200"
    assert mine["Answered"] == "60/60"
    paper = frame[frame["Model"] == "VideoLLaMA3 7B"].iloc[0]
    assert paper["Submitter"] == "(the paper)"
    assert paper["Description\nROUGE-L F"] == "0.3805 †"  # the paper's unnamed ROUGE
    assert paper["Recognition\nF1 macro"] == "0.5791"  # no ± on reported rows
    assert paper["Overall\n(6 tasks)"] == f"{(0.5791 + 0.1636 + 0.2418 + 0.3805 + 0.3706 + 0.3712) / 6:.4f} ‡"
    assert paper["Where in paper / split"].startswith("Table:") and paper["Answered"] == "whole split"
    wsal = frame[frame["Model"] == "WSAL"].iloc[0]
    assert wsal["Pre-crash\nmIoU"] == "—" and wsal["Overall\n(6 tasks)"] == "—"  # the paper printed fewer
    assert wsal["Description\nBERTScore"] == "—"
    assert all(isinstance(v, str) for v in frame.to_numpy().ravel())


def test_search_and_sort(reported):
    rows = table.rows_for("paper", reported, [record(1, "Alpha", 0.99), record(2, "beta", 0.01)])
    frame = table.main_table(rows, search="llama-vid 13b")
    assert frame["Model"].tolist() == ["LLaMA-VID 13B"]
    assert table.main_table(rows, search="verified")["Model"].tolist() == ["Alpha", "beta"]
    default = table.main_table(rows)["Model"].tolist()  # default: the overall score, descending
    assert default[0] == "Alpha" and default[-3:] == ["beta", "SimpleTAD", "WSAL"]  # no overall: last
    assert table.main_table(rows, search="nothing matches this").empty
    label = "Pre-crash localization: mIoU"
    order = table.main_table(rows, sort_by=label)["Model"].tolist()
    assert order[0] == "Alpha" and order[-1] == "WSAL"  # WSAL has no pre-crash number: last
    ascending = table.main_table(rows, sort_by=label, descending=False)["Model"].tolist()
    assert ascending[0] == "beta" and ascending[-1] == "WSAL"  # missing stays last both ways
    values = [r.value("pre_crash_localization", "miou")[0] for r in table.sort_rows(rows, table.column_by_label(label))]
    known = [v for v in values if v is not None]
    assert known == sorted(known, reverse=True)


def test_export_frame_is_numeric_with_half_widths(reported, tmp_path):
    rows = table.rows_for("paper", reported, [record(3, "mine", 0.5)])
    frame = table.export_frame(rows, search="mine")
    assert frame["Model"].tolist() == ["mine"]
    assert frame.loc[0, "Crash recognition: F1 (macro)"] == pytest.approx(0.5)
    assert frame.loc[0, "Crash recognition: F1 (macro) ±95%"] == pytest.approx(0.02)
    paper = table.export_frame(rows, search="VideoLLaMA3")
    assert paper.loc[0, "Crash description: ROUGE-L F"] == pytest.approx(0.3805)
    assert pd.isna(paper.loc[0, "Crash description: ROUGE-L F ±95%"])
    assert "Crash description: ROUGE-L F: the paper's unnamed ROUGE" in paper.loc[0, "Footnotes"]
    path = table.write_csv(table.export_frame(rows), tmp_path / "x.csv")
    back = list(csv.DictReader(path.open(encoding="utf-8")))
    assert len(back) == 11 and "mine" in [r["Model"] for r in back]


def test_task_view_bar_and_source_tables(reported):
    rows = table.rows_for("paper", reported, [record(4, "mine", 0.5)])
    frame = table.task_table(rows, "pre_crash_localization")
    assert "TTA MAE (s)" in frame.columns and "mIoU" in frame.columns
    assert frame[frame["Model"] == "mine"].iloc[0]["mIoU"] == "0.5000 ± 0.0200"
    assert frame[frame["Model"] == "mine"].iloc[0]["too late"] == "100"
    text = table.task_table(rows, "crash_description")
    assert "ROUGE (paper)" in text.columns and "ROUGE-L F" in text.columns
    bars = table.bar_frame(rows, "crash_localization", ["verified:4", "paper:WSAL"])
    assert bars["model"].tolist()[:2] == ["mine (#4)", "WSAL (paper)"]  # verified first, names as shown
    assert set(bars["metric"]) == {"mIoU", "AP@30", "AP@50", "AP@70"}
    assert bars["value"].between(0, 1).all()
    fig = table.bar_figure(bars, "Crash localization")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mIoU", "AP@30", "AP@50", "AP@70"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mine (#4)", "WSAL (paper)"]
    colors = {p.get_label(): p.patches[0].get_facecolor() for p in ax.containers}
    assert colors["mine (#4)"] != colors["WSAL (paper)"]
    src = table.source_table(table.verified_row({**record(4, "mine", 0.5), "by_source": {
        p: fake_result(0.5)["protocols"][p]["by_source"] for p in ("paper", "strict")}}, "paper"), "crash_recognition")
    assert src["Source"].tolist() == ["MM-AU-CAP", "D2City"]
    assert list(src.columns) == ["Source", "n", "Accuracy"]  # one class per source: accuracy only
    assert src.iloc[0]["Accuracy"] == "0.5100"
    loc = table.source_table(table.verified_row({**record(4, "mine", 0.5), "by_source": {
        p: fake_result(0.5)["protocols"][p]["by_source"] for p in ("paper", "strict")}}, "paper"), "crash_localization")
    assert "mIoU" in loc.columns and "AP@50" in loc.columns


def test_compare_and_failures_tables():
    result = {"crash_recognition": {"metric": "f1_macro", "a": 0.5, "b": 0.6, "diff": 0.1, "ci95": [0.05, 0.15],
                                    "p_value": 0.0, "better": "b", "significant": True},
              "crash_localization": {"metric": "miou", "a": 0.3, "b": 0.3, "diff": 0.0, "ci95": [0.0, 0.0],
                                     "p_value": 1.0, "better": None, "significant": False}}
    frame = table.compare_table(result, "A model", "B model")
    assert frame["Better"].tolist() == ["B model", "neither"]
    assert frame["Significant (95%)"].tolist() == ["yes", "no"]
    assert frame.iloc[0]["95% CI of B − A"] == "[0.0500, 0.1500]"
    assert frame["p"].tolist() == ["< 0.001", "1.000"]
    items = [{"video": f"v{i}.mp4", "source": "Nexar", "truth": "No", "response": None if i == 2 else "Yes",
              "parsed": None if i == 2 else "Yes", "score": s} for i, s in enumerate([1.0, 0.0, 0.5])]
    worst = table.failures_table(items, limit=2)
    assert worst["Video"].tolist() == ["v1.mp4", "v2.mp4"]
    assert worst.iloc[1]["Answer"] == "—" and worst.iloc[1]["Score"] == "0.5000"
    long = table.failures_table([{**items[0], "response": "x" * 8000}])
    assert long.iloc[0]["Answer"] == "x" * table.FAILURE_TEXT_CHARS + f"… ({8000 - table.FAILURE_TEXT_CHARS:,} more characters)"


def test_api_rows_carry_model_kind_and_headlines(reported):
    rows = table.api_rows(table.rows_for("paper", reported, [record(5, "mine", 0.5)]))
    json.dumps(rows)  # plain JSON for gradio_client
    keys = {c.key for c in table.main_columns()}
    for r in rows:
        assert {"model", "submitter", "kind", "protocol", "overall", "complete", "answered"} <= set(r) and keys <= set(r)
    mine = next(r for r in rows if r["kind"] == "verified")
    assert mine["kind"] == "verified" and mine["id"] == 5 and mine["submitter"] == "user5"
    assert mine["overall"] == pytest.approx(0.4) and mine["answered"]["crash_recognition"] == [10, 10]
    assert mine["coverage"] == {t.id: 1.0 for t in TASKS} and mine["complete"] and mine["how_produced"] is None
    assert "crash_recognition.f1_macro.ci95" not in mine and "metrics" not in mine  # asked for with details
    detailed = table.api_rows(table.rows_for("paper", reported, [record(5, "mine", 0.5)]), details=True)
    mine = next(r for r in detailed if r["kind"] == "verified")
    assert mine["crash_recognition.f1_macro.ci95"] == pytest.approx([0.48, 0.52])
    assert mine["overall.ci95"] == pytest.approx([0.37, 0.43])
    assert mine["provenance"] is None and mine["files_sha256"] == "cd" * 32
    paper = next(r for r in detailed if r["model"] == "VideoLLaMA3 7B")
    assert paper["crash_description.rouge_l_f"] == 0.3805 and paper["footnotes"]
    assert paper["metrics"]["crash_description"] == {"bleu": 0.0221, "rouge": 0.3805, "bertscore_f1": 0.9099}


def test_bad_paper_results_name_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("model,kind,where_in_paper,task,metric,value\nX,k,w,crash_recognition,f1_macro,abc\n")
    with pytest.raises(ValueError, match=r"line 2: field value"):
        table.reported_rows(bad)
    bad.write_text("model,kind,where_in_paper,task,metric,value\nX,k,w,flying,f1_macro,0.1\n")
    with pytest.raises(ValueError, match=r"line 2: field task"):
        table.reported_rows(bad)
    bad.write_text("model,task\n")
    with pytest.raises(ValueError, match="missing column"):
        table.reported_rows(bad)


def test_partial_rows_never_rank_above_complete_ones(reported):
    """One answer per task can score 1.0; it still ranks below every row that answered the task."""
    recs = [record(1, "complete low", 0.2), record(2, "partial perfect", 0.99, answered=1),
            record(3, "complete high", 0.6)]
    for protocol in ("paper", "strict"):
        rows = table.rows_for(protocol, reported, recs)
        partial = next(r for r in rows if r.model == "partial perfect")
        assert not partial.complete("crash_recognition") and not partial.complete_all
        assert partial.answered_text() == "6/60 partial" and partial.fraction("crash_localization") == 0.1
        for column in table.main_columns():
            if partial.value(column.task, column.metric)[0] is None:
                continue  # BERTScore was not computed: no value, last anyway
            for descending in (True, False):
                order = [r.model for r in table.sort_rows(rows, column, descending)
                         if r.value(column.task, column.metric)[0] is not None]
                assert order[-1] == "partial perfect", (column.key, descending)
        frame = table.main_table(rows)
        assert frame["Model"].tolist()[-1] == "partial perfect" or protocol == "paper"
        cells = frame[frame["Model"] == "partial perfect"].iloc[0]
        assert cells["Recognition\nF1 macro"].endswith(" partial") and cells["Answered"] == "6/60 partial"
        exported = table.export_frame(rows)
        assert exported["Model"].tolist().index("partial perfect") > exported["Model"].tolist().index("complete low")
        assert exported.loc[exported["Model"] == "partial perfect", "Complete"].item() is False
        api = table.api_rows(table.shown_rows(rows))
        assert [r["model"] for r in api] == frame["Model"].tolist()
        mine = next(r for r in api if r["model"] == "partial perfect")
        assert mine["coverage"]["crash_recognition"] == 0.1 and mine["complete"] is False
        ranked = [r.model for r in table.rank_for_task(rows, "crash_localization")]
        assert ranked[0] == "complete high" and ranked[-1] == "partial perfect"
        per_task = table.task_table(rows, "crash_localization")
        assert per_task["Model"].tolist() == ranked and per_task["Answered"].tolist()[-1] == "1/10 partial"


def test_csv_cells_cannot_run_as_formulas(reported, tmp_path):
    names = ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-2+3", "@SUM(A1)", "\tTAB", "\rCR", "plain"]
    recs = [record(i + 1, name, 0.5, notes=name) for i, name in enumerate(names)]
    rows = table.rows_for("strict", reported, recs)
    path = table.write_csv(table.export_frame(rows), tmp_path / "x.csv")
    back = list(csv.DictReader(path.open(encoding="utf-8", newline="")))
    by_model = {r["Model"]: r for r in back}
    for name in names:
        expected = name if name == "plain" else "'" + name
        assert expected in by_model, name
        assert by_model[expected]["Notes"] == expected
    assert all(float(r["Crash recognition: F1 (macro)"]) == pytest.approx(0.4) for r in back)  # numbers stay numbers
    assert table.safe_cell(-0.25) == -0.25 and table.safe_cell("0.5") == "0.5"


def test_one_missing_answer_makes_a_row_partial(reported):
    """The mutant of issue 21: `Row.complete` off by one (a row missing one answer counted as complete)."""
    one_short = table.rows_for("strict", reported, [record(1, "one short", 0.9, answered=9)])[0]
    assert one_short.coverage["crash_recognition"] == (9, 10)
    assert not one_short.complete("crash_recognition") and not one_short.complete_all
    assert one_short.answered_text() == "54/60 partial"
    full = table.rows_for("strict", reported, [record(2, "full", 0.2)])[0]
    assert full.complete("crash_recognition") and full.complete_all and full.complete("")


def test_unparseable_answers_are_not_answered(reported):
    """Coverage counts parsed answers: a row whose every answer was matched but one unparseable is partial."""
    row = table.rows_for("strict", reported, [record(1, "blanked", 0.99, unparseable=1)])[0]
    assert row.coverage["crash_localization"] == (9, 10) and not row.complete_all
    assert table.api_rows([row])[0]["answered"]["crash_localization"] == [9, 10]
    assert table.export_frame([row]).loc[0, "Crash localization: answered"] == "9/10"


def test_partial_rows_never_rank_above_complete_ones_overall(reported):
    recs = [record(1, "complete low", 0.15), record(2, "blanked high", 0.99, unparseable=1),
            record(3, "one task only", 0.95, answered=0), record(4, "complete high", 0.6)]
    for protocol in ("paper", "strict"):
        rows = table.rows_for(protocol, reported, recs)
        order = [r.model for r in table.shown_rows(rows) if r.kind == VERIFIED]
        assert order == ["complete high", "complete low", "blanked high", "one task only"], protocol
        cells = table.main_table(rows).set_index("Model")
        assert cells.loc["blanked high", "Overall\n(6 tasks)"].endswith(" partial")
        assert not cells.loc["complete low", "Overall\n(6 tasks)"].endswith(" partial")
    ascending = [r.model for r in table.shown_rows(table.rows_for("strict", reported, recs), descending=False)]
    assert ascending[:2] == ["complete low", "complete high"]  # partial rows stay below either way


def test_chart_draws_names_literally(reported, tmp_path):
    """A name with mathtext (`$\\undefinedcmd$`) would make matplotlib fail for every visitor."""
    name = r"atk $\undefinedcmd$ model"
    rows = table.rows_for("paper", reported, [record(9, name, 0.5)])
    fig = table.bar_figure(table.bar_frame(rows, "crash_recognition", ["verified:9", "paper:WSAL"]), "t $x$")
    fig.savefig(tmp_path / "chart.png")  # draws: no ValueError from the mathtext parser
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert texts[0] == f"{name} (#9)"
    assert all(not t.get_parse_math() for t in fig.axes[0].get_legend().get_texts())
