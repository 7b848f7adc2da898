"""Reading prediction files into answers matched to the split, with a validation report.

Two layouts, any number of files per submission:
- the authors' per-task prediction files: a JSON list of records carrying `gt_*`/`pred_*` fields,
  `video_path` and `raw_response`; the task is recognised from the field names, the `pred_*`
  fields are used (else `raw_response` is parsed), `gt_*` fields are ignored;
- ours, for any MLLM: JSONL, CSV or a JSON list of rows `{"video", "task", "response"}` where
  `video` is a basename or a path, `task` a task id (or the split's name for it) and `response`
  the model's raw text (`null` for no answer).

Any mistake stops the read with a `SubmissionError` whose message is one line naming the file,
the line and the field.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np

from crashchat.records import video_key
from crashchat.tasks import TASKS, Task, get_task, parse_label
from leaderboard.split import Split

MAX_BYTES = 50 * 1024**2

# Which task an authors' record belongs to, from the `gt_*`/`pred_*` names it carries.
_AUTHOR_FIELDS = {name: task for task in TASKS for name in task.pred_fields + task.gt_fields}

FileInput = Union[str, os.PathLike, tuple[str, bytes]]
"""A path, or (display name, content) for uploads kept in memory or in a database."""


class SubmissionError(ValueError):
    """A submitted file is unusable; the message is one line: `file:line: field: problem`."""


@dataclass
class Answer:
    response: str | None
    """The raw text, or None when the file gave only parsed fields or no answer."""
    parsed: object
    """The prediction after the task's parser; None when unparseable or absent."""
    where: str
    """`file:line` of the record, for messages and the failure browser."""
    from_fields: bool = False
    """True when `parsed` came from the authors' `pred_*` fields rather than from `response`."""


@dataclass
class Submission:
    answers: dict[str, dict[str, Answer]]
    """Task id -> video basename (as in the split) -> answer; only videos of the split."""
    validation: dict[str, dict[str, int]]
    """Task id -> expected, matched, missing, unknown, unparseable."""
    files: list[tuple[str, str]] = field(default_factory=list)
    """(name, SHA-256) of each file read."""


def read_submission(paths: Sequence[FileInput], split: Split, *, max_bytes: int = MAX_BYTES) -> Submission:
    """Read and validate every file against `split`; raises `SubmissionError` on the first mistake."""
    if not paths:
        raise SubmissionError("no prediction files given")
    index = {t.id: _video_index(split, t) for t in TASKS}
    answers: dict[str, dict[str, Answer]] = {t.id: {} for t in TASKS}
    unknown = {t.id: 0 for t in TASKS}
    files = []
    for item in paths:
        name, data = _load(item, max_bytes)
        files.append((name, hashlib.sha256(data).hexdigest()))
        matched_here = 0
        for line, task, video, answer in _records(name, data):
            key = index[task.id].get(video) or index[task.id].get(os.path.splitext(video)[0])
            if key is None:
                unknown[task.id] += 1
                continue
            earlier = answers[task.id].get(key)
            if earlier is not None:
                raise SubmissionError(
                    f"{name}:{line}: video: duplicate answer for ({key}, {task.id}); first at {earlier.where}")
            answer.where = f"{name}:{line}"
            answers[task.id][key] = answer
            matched_here += 1
        if matched_here == 0:
            raise SubmissionError(f"{name}: no record matches a video of the test split")
    validation = {}
    for task in TASKS:
        expected, got = len(split.records[task.id]), answers[task.id]
        validation[task.id] = {
            "expected": expected, "matched": len(got), "missing": expected - len(got),
            "unknown": unknown[task.id], "unparseable": sum(a.parsed is None for a in got.values()),
        }
    return Submission(answers=answers, validation=validation, files=files)


def rows_from_answers(answers: dict[str, dict[str, Answer]]) -> list[dict]:
    """Answers back to our layout, for storing and re-scoring.

    Answers given as parsed fields (the authors' `pred_*`) are written as text that the task's
    parser reads back to the same value.
    """
    rows = []
    for task in TASKS:
        for video, answer in answers.get(task.id, {}).items():
            rows.append({"video": video, "task": task.id, "response": _as_text(task, answer)})
    return rows


def _as_text(task: Task, answer: Answer) -> str | None:
    if not answer.from_fields:
        return answer.response
    if answer.parsed is None:
        return None  # an unreadable pred_* value stays unparseable; its raw_response is not used
    if task.kind == "time_range":
        return " - ".join(_number(v) for v in answer.parsed) + " seconds"
    if task.kind == "time":
        return _number(answer.parsed) + " seconds"
    return str(answer.parsed)


def _number(value: float) -> str:
    # Shortest positional form that reads back to the same float (repr may use an exponent,
    # which the time parsers do not read). Negative times cannot round-trip through text.
    return np.format_float_positional(value, unique=True, trim="0")


def _video_index(split: Split, task: Task) -> dict[str, str]:
    """Basename and stem -> split basename, so `x.mp4`, `videos/x.mp4` and `x` all match."""
    index = {}
    for record in split.records[task.id]:
        index[record.video] = record.video
        index.setdefault(os.path.splitext(record.video)[0], record.video)
    return index


def _load(item: FileInput, max_bytes: int) -> tuple[str, bytes]:
    if isinstance(item, tuple):
        name, data = item
        if len(data) > max_bytes:
            raise SubmissionError(f"{name}: file is {len(data)} bytes, over the {max_bytes}-byte limit")
        return name, data
    path = Path(item)
    name = path.name
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SubmissionError(f"{name}: file is {size} bytes, over the {max_bytes}-byte limit")
        return name, path.read_bytes()
    except SubmissionError:
        raise
    except IsADirectoryError:
        raise SubmissionError(f"{path}: is a folder, not a prediction file") from None
    except OSError as exc:
        raise SubmissionError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _records(name: str, data: bytes) -> Iterator[tuple[int, Task, str, Answer]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SubmissionError(f"{name}:{line}: not UTF-8 text (byte {exc.start})") from None
    stripped = text.lstrip()
    if not stripped:
        raise SubmissionError(f"{name}: file is empty")
    if stripped[0] == "[":
        rows = _json_list(name, text)
    elif stripped[0] == "{":
        rows = _jsonl(name, text)
    elif name.lower().endswith(".csv") or "video" in stripped.split("\n", 1)[0]:
        rows = _csv(name, text)
    else:
        raise SubmissionError(f"{name}:1: not JSON, JSONL or CSV")
    file_task: Task | None = None
    pending: list[tuple[int, dict]] = []  # authors' records seen before their task was known
    for line, row in rows:
        if not isinstance(row, dict):
            raise SubmissionError(f"{name}:{line}: expected an object, got {type(row).__name__}")
        if "task" in row or "response" in row:
            yield _our_row(name, line, row)
            continue
        task = _author_task(name, line, row)
        if task is not None:
            if file_task is not None and task is not file_task:
                raise SubmissionError(
                    f"{name}:{line}: fields are for {task.id} but earlier records are {file_task.id}")
            file_task = task
        if file_task is None:
            pending.append((line, row))
            continue
        for held_line, held in pending:
            yield _author_row(name, held_line, held, file_task)
        pending = []
        yield _author_row(name, line, row, file_task)
    if pending:
        line = pending[0][0]
        raise SubmissionError(
            f"{name}:{line}: cannot tell the task: expected `task`/`response` or the authors' gt_*/pred_* fields")


def _finite(name: str):
    def reject(constant: str):
        raise SubmissionError(f"{name}: non-finite number {constant}")
    return reject


def _json_list(name: str, text: str) -> Iterator[tuple[int, object]]:
    """Elements of a top-level JSON list, each with the line it starts on."""
    decoder = json.JSONDecoder(parse_constant=_finite(name))
    counted, line = 0, 1  # newlines are counted incrementally: files hold ~10k records

    def where(p: int) -> int:
        nonlocal counted, line
        line += text.count("\n", counted, p)
        counted = p
        return line

    def skip(p: int) -> int:
        while p < len(text) and text[p] in " \t\r\n":
            p += 1
        return p

    pos = skip(text.index("[") + 1)
    if pos < len(text) and text[pos] == "]":
        return  # an empty list
    while True:
        if pos >= len(text):
            raise SubmissionError(f"{name}:{where(len(text))}: not valid JSON (unexpected end of file)")
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise SubmissionError(f"{name}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        except SubmissionError as exc:
            raise SubmissionError(str(exc).replace(f"{name}:", f"{name}:{where(pos)}:", 1)) from None
        yield where(pos), obj
        pos = skip(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            rest = skip(pos + 1)
            if rest < len(text):
                raise SubmissionError(f"{name}:{where(rest)}: not valid JSON (text after the list)")
            return
        raise SubmissionError(f"{name}:{where(pos)}: not valid JSON (expected ',' or ']')")


def _jsonl(name: str, text: str) -> Iterator[tuple[int, object]]:
    decoder = json.JSONDecoder(parse_constant=_finite(name))
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield line, decoder.decode(raw)
        except json.JSONDecodeError as exc:
            raise SubmissionError(f"{name}:{line}: not valid JSON ({exc.msg})") from None
        except SubmissionError as exc:
            raise SubmissionError(str(exc).replace(f"{name}:", f"{name}:{line}:", 1)) from None


def _csv(name: str, text: str) -> Iterator[tuple[int, object]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    missing = [c for c in ("video", "task", "response") if c not in columns]
    if missing:
        raise SubmissionError(f"{name}:1: CSV header lacks column(s) {', '.join(missing)}")
    try:
        for row in reader:
            if None in row:
                raise SubmissionError(f"{name}:{reader.line_num}: more cells than header columns")
            yield reader.line_num, row
    except csv.Error as exc:
        raise SubmissionError(f"{name}:{reader.line_num}: not valid CSV ({exc})") from None


def _field(name: str, line: int, row: dict, key: str, types: tuple, *, required: bool = True):
    if key not in row or row[key] is None:
        if required:
            raise SubmissionError(f"{name}:{line}: {key}: missing")
        return None
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, types):
        kinds = " or ".join(t.__name__ for t in types)
        raise SubmissionError(f"{name}:{line}: {key}: expected {kinds}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise SubmissionError(f"{name}:{line}: {key}: non-finite number")
    if isinstance(value, str) and key in ("video", "video_path", "task") and not value.strip():
        raise SubmissionError(f"{name}:{line}: {key}: empty")
    return value


def _our_row(name: str, line: int, row: dict) -> tuple[int, Task, str, Answer]:
    video = _field(name, line, row, "video", (str,))
    task_name = _field(name, line, row, "task", (str,))
    if "response" not in row:
        raise SubmissionError(f"{name}:{line}: response: missing")
    response = _field(name, line, row, "response", (str,), required=False)
    try:
        task = get_task(task_name.strip())
    except KeyError as exc:
        raise SubmissionError(f"{name}:{line}: task: {exc.args[0]}") from None
    parsed = task.parse(response) if response is not None else None
    return line, task, video_key(video.strip()), Answer(response, parsed, "")


def _author_task(name: str, line: int, row: dict) -> Task | None:
    tasks = {_AUTHOR_FIELDS[k] for k in row if k in _AUTHOR_FIELDS}
    if len(tasks) > 1:
        raise SubmissionError(
            f"{name}:{line}: fields of several tasks in one record ({', '.join(sorted(t.id for t in tasks))})")
    return tasks.pop() if tasks else None


def _author_row(name: str, line: int, row: dict, task: Task) -> tuple[int, Task, str, Answer]:
    video = _field(name, line, row, "video_path", (str,))
    raw = _field(name, line, row, "raw_response", (str,), required=False)
    number = (int, float)
    if task.kind == "yes_no":
        label = _field(name, line, row, "pred_label", (str,), required=False)
        parsed = parse_label(label) if label is not None else None
        given = label is not None
    elif task.kind == "time_range":
        start = _field(name, line, row, "pred_start", number, required=False)
        end = _field(name, line, row, "pred_end", number, required=False)
        if (start is None) != (end is None):
            missing = "pred_end" if end is None else "pred_start"
            raise SubmissionError(f"{name}:{line}: {missing}: missing while its pair is given")
        given = start is not None
        parsed = (float(start), float(end)) if given else None
    elif task.kind == "time":
        value = _field(name, line, row, "pred_time", number, required=False)
        given = value is not None
        parsed = float(value) if given else None
    else:
        text = _field(name, line, row, task.pred_fields[0], (str,), required=False)
        given = text is not None
        parsed = task.parse(text) if given else None
    if not given and raw is not None:
        parsed = task.parse(raw)
    return line, task, video_key(video.strip()), Answer(raw, parsed, "", from_fields=given)
