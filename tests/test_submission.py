import json

import pytest
from submissions import random_responses, write_authors, write_csv, write_jsonl

from leaderboard.submission import (
    MAX_RESPONSE,
    SubmissionError,
    answers_digest,
    canonical_rows,
    read_canonical,
    read_submission,
)


@pytest.fixture(scope="module")
def one_video(split):
    return split.records["crash_localization"][0].video


def _write(tmp_path, name, text, mode="w"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _error(paths, split, **kw):
    with pytest.raises(SubmissionError) as info:
        read_submission(paths, split, **kw)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_validation_report_counts(tmp_path, split, split_dir):
    responses = random_responses(split_dir, seed=3, missing=0.1)
    responses[("crash_recognition", "not_in_split.mp4")] = "Yes"
    sub = read_submission([write_jsonl(tmp_path / "a.jsonl", responses)], split)
    report = sub.validation["crash_recognition"]
    matched = sum(1 for (t, v) in responses if t == "crash_recognition" and v != "not_in_split.mp4")
    assert report == {"expected": 1839, "matched": matched, "missing": 1839 - matched, "unknown": 1,
                      "unparseable": sum(1 for (t, v), x in responses.items()
                                         if t == "crash_recognition" and v != "not_in_split.mp4"
                                         and x.strip().lower() not in ("yes", "no")
                                         and not (("yes" in x.lower()) ^ ("no" in x.lower())))}
    assert sub.validation["prevention_reasoning"]["expected"] == 1838
    assert len(sub.files) == 1 and len(sub.files[0][1]) == 64


def test_videos_match_by_path_basename_or_stem(tmp_path, split, one_video):
    stem = one_video.rsplit(".", 1)[0]
    rows = [{"video": f"/abs/videos/{one_video}", "task": "crash_localization", "response": "1 - 2"},
            {"video": stem, "task": "pre_crash_localization", "response": "1.0"},
            {"video": f"C:\\clips\\{one_video}", "task": "crash_recognition", "response": "Yes"}]
    path = _write(tmp_path, "p.jsonl", "\n".join(json.dumps(r) for r in rows))
    sub = read_submission([path], split)
    assert all(one_video in sub.answers[t] for t in ("crash_localization", "pre_crash_localization", "crash_recognition"))


def test_authors_layout_recognised_and_truth_ignored(tmp_path, split, one_video):
    records = [{"data_id": 0, "video_path": f"videos/{one_video}", "gt_start": 99.0, "gt_end": 100.0,
                "pred_start": 2.0, "pred_end": 3.0, "raw_response": "garbage"}]
    sub = read_submission([_write(tmp_path, "loc.json", json.dumps(records))], split)
    answer = sub.answers["crash_localization"][one_video]
    assert answer.parsed == (2.0, 3.0) and answer.from_fields
    # No pred_* value: the raw response is parsed instead.
    records[0].update(pred_start=None, pred_end=None, raw_response="1.0 - 4.0 seconds")
    sub = read_submission([_write(tmp_path, "loc.json", json.dumps(records))], split)
    assert sub.answers["crash_localization"][one_video].parsed == (1.0, 4.0)


def test_canonical_rows_round_trip(tmp_path, split, split_dir):
    responses = random_responses(split_dir, seed=5)
    sub = read_submission(write_authors(tmp_path / "authors", responses), split)
    rows = canonical_rows(sub.answers)
    assert rows == sorted(rows, key=lambda r: (r["video"], r["task"]))
    again = read_canonical(rows, split)
    for task, answers in sub.answers.items():
        assert {v: a.parsed for v, a in answers.items()} == {v: a.parsed for v, a in again.answers[task].items()}
    assert again.validation == {t: {**v, "unknown": 0} for t, v in sub.validation.items()}


def test_identity_ignores_order_layout_file_split_and_newlines(tmp_path, split, split_dir):
    responses = random_responses(split_dir, seed=6)
    digest = answers_digest(canonical_rows(read_submission([write_jsonl(tmp_path / "a.jsonl", responses)], split).answers))
    shuffled = dict(sorted(responses.items(), key=lambda kv: hash(kv[0][1]) % 97))
    half = len(shuffled) // 2
    items = list(shuffled.items())
    first, second = write_jsonl(tmp_path / "b1.jsonl", dict(items[:half])), write_jsonl(tmp_path / "b2.jsonl", dict(items[half:]))
    (tmp_path / "b2.jsonl").write_text((tmp_path / "b2.jsonl").read_text() + "\n\n")
    variants = [[write_csv(tmp_path / "c.csv", shuffled)], [first, second], write_authors(tmp_path / "authors", responses)]
    for paths in variants:
        assert answers_digest(canonical_rows(read_submission(paths, split).answers)) == digest, paths
    changed = dict(responses)
    key = next(iter(changed))
    changed[key] = changed[key] + " (changed)"
    assert answers_digest(canonical_rows(read_submission([write_jsonl(tmp_path / "d.jsonl", changed)], split).answers)) != digest


def test_authors_fields_are_kept_exactly(tmp_path, split, one_video):
    """A negative or odd pred_* value has no text form the parsers read back: the value itself is kept."""
    records = [{"video_path": one_video, "pred_start": -1.0, "pred_end": 2, "raw_response": "1.0 - 2.0 seconds"}]
    sub = read_submission([_write(tmp_path, "loc.json", json.dumps(records))], split)
    rows = canonical_rows(sub.answers)
    assert rows == [{"video": one_video, "task": "crash_localization", "response": "1.0 - 2.0 seconds",
                     "fields": {"pred_start": -1.0, "pred_end": 2.0}}]
    assert read_canonical(json.loads(json.dumps(rows)), split).answers["crash_localization"][one_video].parsed == (-1.0, 2.0)
    # Fields that say what the raw response says are that response: no fields kept.
    records[0].update(pred_start=1, pred_end=2.0)
    same = canonical_rows(read_submission([_write(tmp_path, "loc.json", json.dumps(records))], split).answers)
    assert same == [{"video": one_video, "task": "crash_localization", "response": "1.0 - 2.0 seconds"}]


def test_hostile_structure_and_sizes_are_one_line(tmp_path, split, one_video):
    deep = _error([_write(tmp_path, "deep.json", "[" * 100000)], split)
    assert deep.startswith("deep.json:1: not valid JSON (nested too deeply")
    deep = _error([_write(tmp_path, "deep.jsonl", '{"a":' * 100000)], split)
    assert deep.startswith("deep.jsonl:1: not valid JSON (nested too deeply")
    row = {"video": one_video, "task": "crash_recognition", "response": "x" * (MAX_RESPONSE + 1)}
    assert _error([_write(tmp_path, "long.jsonl", json.dumps(row))], split) == (
        f"long.jsonl:1: response: {MAX_RESPONSE + 1} characters, over the {MAX_RESPONSE}-character limit")
    authors = [{"video_path": one_video, "pred_label": "Yes"}, {"video_path": one_video, "pred_label": "No",
                                                                 "raw_response": "y" * (MAX_RESPONSE + 5)}]
    assert _error([_write(tmp_path, "r.json", json.dumps(authors, indent=1))], split).startswith(
        f"r.json:6: raw_response: {MAX_RESPONSE + 5} characters")


def test_in_memory_files(split, one_video):
    data = json.dumps({"video": one_video, "task": "crash_recognition", "response": "No"}).encode()
    sub = read_submission([("upload.jsonl", data)], split)
    assert sub.answers["crash_recognition"][one_video].parsed == "No"


@pytest.mark.parametrize("name, content, expected", [
    ("e.jsonl", "", "e.jsonl: file is empty"),
    ("bad.jsonl", b"\xff\xfe{", "bad.jsonl:1: not UTF-8 text"),
    ("x.txt", "hello world", "x.txt:1: not JSON, JSONL or CSV"),
    ("j.jsonl", '{"video": "V", "task": "crash_recognition", "response": "Yes"}\n{"video": ', "j.jsonl:2: not valid JSON"),
    ("l.json", '[\n{"video": "V", "task": "crash_recognition", "response": "Yes"},\n 5\n]', "l.json:3: expected an object"),
    ("t.jsonl", '{"video": "V", "task": "crash_recognition", "response": 1}', "t.jsonl:1: response: expected str, got int"),
    ("v.jsonl", '{"video": 3, "task": "crash_recognition", "response": "Yes"}', "v.jsonl:1: video: expected str, got int"),
    ("u.jsonl", '{"video": "V", "task": "crash_detection", "response": "Yes"}', "u.jsonl:1: task: unknown task 'crash_detection'"),
    ("m.jsonl", '{"video": "V", "task": "crash_recognition"}', "m.jsonl:1: response: missing"),
    ("n.jsonl", '{"video": "V", "task": "crash_recognition", "response": NaN}', "n.jsonl:1: response: non-finite number NaN"),
    ("na.json", '[{"video_path": "V", "pred_start": 1.0, "pred_end": NaN}]', "na.json:1: pred_end: non-finite number NaN"),
    ("nb.json", '[{"video_path": "V",\n "gt_start": -Infinity, "pred_start": 1, "pred_end": 2}]', "nb.json:1: gt_start: non-finite number -Infinity"),
    ("d.jsonl", '{"video": "V", "task": "crash_recognition", "response": "Yes"}\n{"video": "videos/V", "task": "crash_recognition", "response": "No"}',
     "d.jsonl:2: video: duplicate answer for (V, crash_recognition); first at d.jsonl:1"),
    ("c.csv", "video,task\nV,crash_recognition\n", "c.csv:1: CSV header lacks column(s) response"),
    ("w.csv", 'video,task,response\nV,crash_recognition,"Yes",extra\n', "w.csv:2: more cells than header columns"),
    ("a.json", '[{"video_path": "V", "gt_start": 1, "pred_start": "1.0", "pred_end": 2}]', "a.json:1: pred_start: expected int or float, got str"),
    ("i.json", '[{"video_path": "V", "pred_time": 1e999}]', "i.json:1: pred_time: non-finite number"),
    ("p.json", '[{"video_path": "V", "pred_start": 1.0}]', "p.json:1: pred_end: missing while its pair is given"),
    ("x.json", '[{"video_path": "V", "pred_label": "Yes"},\n{"video_path": "V", "pred_time": 1.0}]', "x.json:2: fields are for pre_crash_localization but earlier records are crash_recognition"),
    ("k.json", '[{"video_path": "V", "raw_response": "Yes"}]', "k.json:1: cannot tell the task"),
    ("z.jsonl", '{"video": "nope.mp4", "task": "crash_recognition", "response": "Yes"}', "z.jsonl: no record matches a video of the test split"),
])
def test_each_error_names_file_line_and_field(tmp_path, split, one_video, name, content, expected):
    if isinstance(content, str):
        content = content.replace('"V"', json.dumps(one_video)).replace('"videos/V"', json.dumps("videos/" + one_video))
        content = content.replace("V,", one_video + ",")
        expected = expected.replace("(V,", f"({one_video},")
    message = _error([_write(tmp_path, name, content)], split)
    assert message.startswith(expected), message


def test_size_limit_and_unreadable(tmp_path, split):
    big = _write(tmp_path, "big.jsonl", "x" * 2000)
    assert _error([big], split, max_bytes=1000).startswith("big.jsonl: file is 2000 bytes, over the 1000-byte limit")
    assert "cannot read" in _error([tmp_path / "missing.jsonl"], split)
    assert "is a folder" in _error([tmp_path], split)
    assert _error([], split) == "no prediction files given"


def test_duplicate_across_files(tmp_path, split, one_video):
    row = json.dumps({"video": one_video, "task": "crash_recognition", "response": "Yes"})
    message = _error([_write(tmp_path, "a.jsonl", row), _write(tmp_path, "b.jsonl", row)], split)
    assert message.startswith("b.jsonl:1: video: duplicate answer") and message.endswith("first at a.jsonl:1")


def test_csv_with_split_task_names(tmp_path, split, split_dir):
    responses = random_responses(split_dir, seed=2)
    sub = read_submission([write_csv(tmp_path / "p.csv", responses)], split)
    assert sub.validation["causal_reasoning"]["matched"] == sum(1 for t, _ in responses if t == "causal_reasoning")
