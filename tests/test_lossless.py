"""Lossless answers: what the leaderboard stores is exactly what was submitted.

A property test over random submissions in both layouts (our JSONL/CSV rows and the authors'
per-task files with `pred_*` fields, negative and odd values included): submit, store, rebuild
the stored answers and re-score. The rebuilt answers equal the submitted ones, and the re-score
equals the first score, number for number. A mini split (6 records per task) keeps it fast.
"""

from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from submissions import write_mini_split

from crashchat.tasks import TASKS
from leaderboard.intake import rescore, stored_submission, submit
from leaderboard.split import load_split
from leaderboard.store import Store
from leaderboard.submission import read_submission

SIZE = 6

# Odd but finite numbers: negative, negative zero, tiny, fractional, large, integers.
numbers = st.one_of(st.sampled_from([-1.0, -0.5, -0.0, 0.0, 1e-300, 2.5, 1e6, 3, -2]),
                    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False))
texts = st.one_of(
    st.sampled_from(["Yes", "No", " yes.", "maybe", "", "no collision.", "-1.0 - 2.0 seconds", "-0.5 seconds",
                     "1.2.3 - 4", ". 3.0", "0.5 - 1.0 seconds", "ego-car hits a car."]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30),
    numbers.map(lambda x: f"{x} seconds"),
    st.tuples(numbers, numbers).map(lambda p: f"{p[0]} - {p[1]} seconds"),
)
csv_texts = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=30)


@pytest.fixture(scope="module")
def mini(split_dir, tmp_path_factory):
    return load_split(write_mini_split(split_dir, tmp_path_factory.mktemp("mini"), SIZE))


def authors_record(draw, task, video: str) -> dict:
    record = {"video_path": draw(st.sampled_from([video, f"/data/videos/{video}", f"C:\\clips\\{video}"]))}
    if draw(st.booleans()):
        record["raw_response"] = draw(st.one_of(st.none(), texts))
    given_fields = draw(st.booleans())
    if task.kind == "yes_no":
        record["pred_label"] = draw(st.sampled_from(["Yes", "no", "1", "false", "", "perhaps"])) if given_fields else None
    elif task.kind == "time_range":
        start, end = (draw(numbers), draw(numbers)) if given_fields else (None, None)
        record.update(gt_start=0.0, gt_end=1.0, pred_start=start, pred_end=end)
    elif task.kind == "time":
        record.update(gt_time=9.9, pred_time=draw(numbers) if given_fields else None)
    else:
        record[task.gt_fields[0]] = "wrong truth"
        record[task.pred_fields[0]] = draw(texts) if given_fields else None
    return record


@st.composite
def submissions(draw, split):
    """(files as (name, bytes)): per task, a random subset of its videos in a random layout."""
    files = []
    ours: list[dict] = []
    csv_rows: list[dict] = []
    for task in TASKS:
        videos = [r.video for r in split.records[task.id]]
        chosen = draw(st.lists(st.sampled_from(videos), min_size=1, max_size=len(videos), unique=True))
        layout = draw(st.sampled_from(["jsonl", "csv", "authors"]))
        if layout == "authors":
            records = [authors_record(draw, task, v) for v in chosen]
            files.append((f"{task.id}_predictions.json", json.dumps(records, indent=1).encode()))
        elif layout == "csv":
            csv_rows += [{"video": v, "task": task.split_name, "response": draw(csv_texts)} for v in chosen]
        else:
            ours += [{"video": v, "task": task.id, "response": draw(st.one_of(st.none(), texts))} for v in chosen]
    if ours:
        files.append(("ours.jsonl", "\n".join(json.dumps(r) for r in draw(st.permutations(ours))).encode()))
    if csv_rows:
        buffer = tempfile.SpooledTemporaryFile(mode="w+", newline="")
        writer = csv.DictWriter(buffer, fieldnames=["video", "task", "response"])
        writer.writeheader()
        writer.writerows(csv_rows)
        buffer.seek(0)
        files.append(("ours.csv", buffer.read().encode()))
    return files


def answers_of(sub) -> dict:
    return {task: {v: (a.response, a.parsed) for v, a in answers.items()} for task, answers in sub.answers.items()}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_submit_store_rescore_equals_first_score(mini, data):
    files = data.draw(submissions(mini))
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, content in files:
            path = Path(tmp) / name
            path.write_bytes(content)
            paths.append(path)
        store = Store(Path(tmp) / "board.sqlite3")
        out = submit(store, paths, "property", split=mini, bootstrap=5)
        submitted = read_submission(paths, mini)
        # Stored is submitted: every raw text and every parsed prediction (negative times included).
        assert answers_of(stored_submission(store, out.row.id, mini)) == answers_of(submitted)
        first = json.loads(json.dumps(out.result))
        assert rescore(store, mini, force=True, bootstrap=5)[0].startswith(f"#{out.row.id} 'property': re-scored")
        again = store.result(out.row.id)
        assert again["protocols"] == first["protocols"]
        assert again["validation"] == first["validation"] and again["files"] == first["files"]


def test_negative_times_rescore_identically(mini, tmp_path):
    """The bug of issue 14: pred_start=-1.0 was stored as text and read back as (1.0, 2.0)."""
    loc = mini.records["crash_localization"][0].video
    pre = mini.records["pre_crash_localization"][0].video
    (tmp_path / "loc.json").write_text(json.dumps([{"video_path": loc, "pred_start": -1.0, "pred_end": 2.0,
                                                    "raw_response": "garbled"}]))
    (tmp_path / "pre.json").write_text(json.dumps([{"video_path": pre, "pred_time": -0.5}]))
    store = Store(tmp_path / "board.sqlite3")
    out = submit(store, [tmp_path / "loc.json", tmp_path / "pre.json"], "negative", split=mini, bootstrap=0)
    rebuilt = stored_submission(store, out.row.id, mini)
    assert rebuilt.answers["crash_localization"][loc].parsed == (-1.0, 2.0)
    assert rebuilt.answers["pre_crash_localization"][pre].parsed == -0.5
    rescore(store, mini, force=True, bootstrap=0)
    assert store.result(out.row.id)["protocols"] == json.loads(json.dumps(out.result["protocols"]))
