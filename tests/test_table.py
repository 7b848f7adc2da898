"""Leaderboard table building, without Gradio: reported vs verified rows, columns, formatting."""

from __future__ import annotations

import csv
import json

import pandas as pd
import pytest

from crashchat.tasks import TASKS
from leaderboard import table
from leaderboard.table import REPORTED, VERIFIED


def fake_result(scale: float, *, sha: str = "ab" * 32, version: str = "9.9.9") -> dict:
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
            "validation": {t.id: {"expected": 10, "matched": 9, "missing": 1, "unknown": 0, "unparseable": 2}
                           for t in TASKS},
            "protocols": protocols}


def record(row_id: int, model: str, scale: float, **extra) -> dict:
    return {"id": row_id, "model": model, "link": "", "notes": "", "submitted_at": "2026-01-01T00:00:00Z",
            "files_sha256": "cd" * 32, "result": fake_result(scale), **extra}


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
    assert {c.task for c in cols} == {t.id for t in TASKS}
    by_task = {t.id: [c.metric for c in cols if c.task == t.id] for t in TASKS}
    assert by_task["crash_recognition"] == ["f1_macro"]
    assert by_task["crash_localization"] == by_task["pre_crash_localization"] == ["miou"]
    for t in TASKS:
        if t.kind == "text":
            assert by_task[t.id] == ["bleu", "rouge_l_f", "bertscore_f1"]
    frame = table.main_table([])
    assert list(frame.columns[:2]) == ["Model", "Kind"]
    assert [c.label for c in cols] == list(frame.columns[2:2 + len(cols)])


def test_main_table_formats_ci_alias_and_missing(reported):
    rows = table.rows_for("paper", reported, [record(7, "<img src=x onerror=alert(1)>", 0.5)])
    frame = table.main_table(rows)
    mine = frame[frame["Kind"] == VERIFIED].iloc[0]
    assert mine["Model"] == "<img src=x onerror=alert(1)>"  # stored and shown as given
    assert mine["Crash recognition: F1 (macro)"] == "0.5000 ± 0.0200"
    assert mine["Crash description: BERTScore F1"] == "—"  # unavailable, not 0
    assert mine["Crash description: ROUGE-L F"] == "0.5000 ± 0.0200"
    paper = frame[frame["Model"] == "VideoLLaMA3 7B"].iloc[0]
    assert paper["Crash description: ROUGE-L F"] == "0.3805 †"  # the paper's unnamed ROUGE
    assert paper["Crash recognition: F1 (macro)"] == "0.5791"  # no ± on reported rows
    assert paper["Where in paper / split"].startswith("Table:")
    wsal = frame[frame["Model"] == "WSAL"].iloc[0]
    assert wsal["Pre-crash localization: mIoU"] == "—"
    assert all(isinstance(v, str) for v in frame.to_numpy().ravel())


def test_search_and_sort(reported):
    rows = table.rows_for("paper", reported, [record(1, "Alpha", 0.99), record(2, "beta", 0.01)])
    frame = table.main_table(rows, search="llama-vid 13b")
    assert frame["Model"].tolist() == ["LLaMA-VID 13B"]
    assert table.main_table(rows, search="verified")["Model"].tolist() == ["Alpha", "beta"]
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
    assert len(back) == 11 and back[-1]["Model"] == "mine"


def test_task_view_bar_and_source_tables(reported):
    rows = table.rows_for("paper", reported, [record(4, "mine", 0.5)])
    frame = table.task_table(rows, "pre_crash_localization")
    assert "TTA MAE (s)" in frame.columns and "mIoU" in frame.columns
    assert frame[frame["Model"] == "mine"].iloc[0]["mIoU"] == "0.5000 ± 0.0200"
    assert frame[frame["Model"] == "mine"].iloc[0]["too late"] == "100"
    text = table.task_table(rows, "crash_description")
    assert "ROUGE (paper)" in text.columns and "ROUGE-L F" in text.columns
    bars = table.bar_frame(rows, "crash_localization", ["verified:4", "paper:WSAL"])
    assert set(bars["model"]) == {"2. mine (#4)", "1. WSAL (paper)"}  # in the board's row order
    assert bars["bar"].tolist()[:2] == ["mIoU · 1", "mIoU · 2"]
    assert set(bars["metric"]) == {"mIoU", "AP@30", "AP@50", "AP@70"}
    assert bars["value"].between(0, 1).all()
    src = table.source_table(rows[-1], "crash_recognition")
    assert src["Source"].tolist() == ["MM-AU-CAP", "D2City"]
    assert src.iloc[0]["F1 (macro)"] == "0.5100"


def test_compare_and_failures_tables():
    result = {"crash_recognition": {"metric": "f1_macro", "a": 0.5, "b": 0.6, "diff": 0.1, "ci95": [0.05, 0.15],
                                    "p_value": 0.0, "better": "b", "significant": True},
              "crash_localization": {"metric": "miou", "a": 0.3, "b": 0.3, "diff": 0.0, "ci95": [0.0, 0.0],
                                     "p_value": 1.0, "better": None, "significant": False}}
    frame = table.compare_table(result, "A model", "B model")
    assert frame["Better"].tolist() == ["B model", "neither"]
    assert frame["Significant (95%)"].tolist() == ["yes", "no"]
    assert frame.iloc[0]["95% CI of B − A"] == "[0.0500, 0.1500]"
    items = [{"video": f"v{i}.mp4", "source": "Nexar", "truth": "No", "response": None if i == 2 else "Yes",
              "parsed": None if i == 2 else "Yes", "score": s} for i, s in enumerate([1.0, 0.0, 0.5])]
    worst = table.failures_table(items, limit=2)
    assert worst["Video"].tolist() == ["v1.mp4", "v2.mp4"]
    assert worst.iloc[1]["Answer"] == "—" and worst.iloc[1]["Score"] == "0.5000"


def test_api_rows_carry_model_kind_and_headlines(reported):
    rows = table.api_rows(table.rows_for("paper", reported, [record(5, "mine", 0.5)]))
    json.dumps(rows)  # plain JSON for gradio_client
    keys = {c.key for c in table.main_columns()}
    for r in rows:
        assert {"model", "kind", "protocol"} <= set(r) and keys <= set(r)
    mine = rows[-1]
    assert mine["kind"] == "verified" and mine["id"] == 5
    assert mine["crash_recognition.f1_macro.ci95"] == pytest.approx([0.48, 0.52])
    paper = next(r for r in rows if r["model"] == "VideoLLaMA3 7B")
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
