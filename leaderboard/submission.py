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

A submission's identity is what the scorer reads of it (`scored_digest`): per (video, task) the
parsed label, interval or time of a closed task, the stripped text of the others, or "present
but unreadable". Reordered rows, another file split, another layout, a trailing newline, `yes`
for `Yes` or spaces around a sentence change nothing the scorer reads, so they give the same
digest. What the leaderboard stores is the canonical answers (`canonical_rows`): every raw answer
exactly as submitted (`read_canonical` reads them back), so re-scoring a stored row scores the
same answers, whatever a later, stricter parser makes of them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from crashchat.records import video_key
from crashchat.tasks import TASKS, Task, get_task, parse_label
from leaderboard.split import Split

MAX_BYTES = 50 * 1024**2
MAX_RESPONSE = 16 * 1024
"""Longest answer text accepted (characters): the longest reference is ~1 kB and `predict`
stops at 2,048 new tokens (under 16 k characters); every stored answer may be shown back."""

# Which task an authors' record belongs to, from the `gt_*`/`pred_*` names it carries.
_AUTHOR_FIELDS = {name: task for task in TASKS for name in task.pred_fields + task.gt_fields}

FileInput = str | os.PathLike | tuple[str, bytes]
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
    fields: dict | None = None
    """The `pred_*` values as given (numbers as floats) when `from_fields`; kept so that a stored
    answer is exactly the submitted one (a negative time has no text form the parsers read)."""


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


def canonical_rows(answers: dict[str, dict[str, Answer]]) -> list[dict]:
    """The answers in canonical form, sorted by (video, task): what identifies and what stores a submission.

    Each row is `{"video", "task", "response"}` (the raw text, or None), plus `"fields"` (the
    authors' `pred_*` values as given) for an answer whose fields say something its raw text does
    not: an authors' record whose fields parse to what its `raw_response` parses to is the same
    answer as our row with that response, so the two layouts give one identity.
    """
    rows: list[dict[str, object]] = []
    for task in TASKS:
        for video, answer in answers.get(task.id, {}).items():
            row: dict[str, object] = {"video": video, "task": task.id, "response": answer.response}
            if answer.from_fields and not (answer.response is not None and task.parse(answer.response) == answer.parsed):
                row["fields"] = dict(answer.fields or {})
            rows.append(row)
    rows.sort(key=lambda r: (r["video"], r["task"]))
    return rows


def answers_digest(rows: list[dict]) -> str:
    """SHA-256 of canonical rows (see `canonical_rows`): what was submitted, byte for byte."""
    text = json.dumps(rows, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _scored_value(value):
    """A parsed prediction as JSON: tuples as lists, -0.0 as 0.0 (the scorer cannot tell them apart)."""
    if isinstance(value, tuple):
        return [_scored_value(v) for v in value]
    if isinstance(value, float):
        return value + 0.0
    return value


def scored_digest(answers: dict[str, dict[str, Answer]]) -> str:
    """SHA-256 of what the scorer reads: `[video, task, parsed]` per answer, sorted (parsed is
    None for an answer given but unreadable, which the paper protocol scores apart from a missing
    one). A submission's identity on the leaderboard: a case or whitespace variant of the same
    answers gives the same digest."""
    rows = sorted([video, task, _scored_value(answer.parsed)]
                  for task, by_video in answers.items() for video, answer in by_video.items())
    text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_canonical(rows: list[dict], name: str = "stored answers") -> dict[str, dict[str, Answer]]:
    """Canonical rows (as stored) parsed as the files are: task id -> video -> answer.

    Rows stored before answers kept their `fields` are plain rows of our layout and read as such.
    """
    answers: dict[str, dict[str, Answer]] = {t.id: {} for t in TASKS}
    for i, row in enumerate(rows, start=1):
        try:
            task = get_task(row["task"])
            response = row.get("response")
            fields = row.get("fields")
            if fields is not None:
                parsed = _parse_fields(task, fields)
            else:
                parsed = task.parse(response) if response is not None else None
            answers[task.id][video_key(row["video"])] = Answer(
                response, parsed, f"{name}:{i}", from_fields=fields is not None, fields=fields)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SubmissionError(f"{name}:{i}: unreadable stored answer ({type(exc).__name__}: {exc})") from None
    return answers


def read_canonical(rows: list[dict], split: Split, name: str = "stored answers") -> Submission:
    """Rebuild a submission from canonical rows (as stored), with the same parsing as the files."""
    answers = parse_canonical(rows, name)
    validation = {}
    for task in TASKS:
        known = {r.video for r in split.records[task.id]}
        got = {v: a for v, a in answers[task.id].items() if v in known}
        unknown = len(answers[task.id]) - len(got)
        answers[task.id] = got
        expected = len(split.records[task.id])
        validation[task.id] = {"expected": expected, "matched": len(got), "missing": expected - len(got),
                               "unknown": unknown, "unparseable": sum(a.parsed is None for a in got.values())}
    return Submission(answers=answers, validation=validation, files=[(name, answers_digest(rows))])


def _parse_fields(task: Task, fields: dict):
    """The prediction an authors' record's `pred_*` values give (None when they do not read)."""
    if task.kind == "yes_no":
        return parse_label(fields["pred_label"])
    if task.kind == "time_range":
        return float(fields["pred_start"]), float(fields["pred_end"])
    if task.kind == "time":
        return float(fields["pred_time"])
    return task.parse(fields[task.pred_fields[0]])


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
    if b"\x00" in data[:8192]:  # a video, an archive, an image: no text format has NUL bytes
        raise SubmissionError(f"{name}: not a text file (binary data); expected a JSON, JSONL or CSV prediction file")
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


class _NonFinite(float):
    """A NaN/Infinity token read from a file, kept until the record's field can be named."""

    token: str

    def __new__(cls, token: str):
        value = super().__new__(cls, float(token.replace("Infinity", "inf")))
        value.token = token
        return value


MAX_DIGITS = 30
"""Longest integer literal accepted: no answer or `pred_*` field needs more (a 5,000-digit number
would otherwise cost seconds to convert, or hit Python's 4,300-digit limit as a bare ValueError)."""


class _HugeInt(float):
    """An integer literal with more than `MAX_DIGITS` digits, kept until its field can be named."""

    token: str

    def __new__(cls, token: str):
        value = super().__new__(cls, float("nan"))
        value.token = f"with {len(token.lstrip('-')):,} digits"
        return value


def _parse_int(token: str):
    return int(token) if len(token.lstrip("-")) <= MAX_DIGITS else _HugeInt(token)


def _decoder() -> json.JSONDecoder:
    return json.JSONDecoder(parse_constant=_NonFinite, parse_int=_parse_int)


def _check_record(name: str, line: int, row: object) -> None:
    """Refuse NaN/Infinity and huge integers anywhere in a record, naming the top-level field."""
    def bad(value) -> str | None:
        stack = [value]  # a loop, not recursion: records may nest as deep as the JSON parser allows
        while stack:
            item = stack.pop()
            if isinstance(item, _HugeInt):
                return f"number {item.token} (at most {MAX_DIGITS})"
            if isinstance(item, float) and not math.isfinite(item):
                return "non-finite number " + getattr(item, "token", repr(item))  # NaN/Infinity, 1e999
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return None

    if isinstance(row, dict):
        for key, value in row.items():
            found = bad(value)
            if found is not None:
                raise SubmissionError(f"{name}:{line}: {_shown(key)}: {found}")
    elif bad(row) is not None:
        raise SubmissionError(f"{name}:{line}: {bad(row)}")


_TOO_DEEP = "nested too deeply; a record is one flat object"


def _shown(text: str, limit: int = 40) -> str:
    """A field name from the file, safe to put in a message: surrogates escaped, cut when long."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[:limit] + "…"


_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate(text: str) -> str | None:
    """The first lone surrogate (U+D800..U+DFFF, e.g. JSON's "\\ud800") in `text`, as `\\udXXX`."""
    found = _SURROGATE.search(text)
    return None if found is None else f"\\u{ord(found.group()):04x}"


def _json_list(name: str, text: str) -> Iterator[tuple[int, object]]:
    """Elements of a top-level JSON list, each with the line it starts on."""
    decoder = _decoder()
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
        except RecursionError:
            raise SubmissionError(f"{name}:{where(pos)}: not valid JSON ({_TOO_DEEP})") from None
        _check_record(name, where(pos), obj)
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
    decoder = _decoder()
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = decoder.decode(raw)
        except json.JSONDecodeError as exc:
            raise SubmissionError(f"{name}:{line}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise SubmissionError(f"{name}:{line}: not valid JSON ({_TOO_DEEP})") from None
        _check_record(name, line, obj)
        yield line, obj


def _csv(name: str, text: str) -> Iterator[tuple[int, object]]:
    # strict: a quote opened and never closed is an error, not a cell holding the rest of the file.
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        columns = reader.fieldnames or []
    except csv.Error as exc:
        raise SubmissionError(f"{name}:1: not valid CSV ({exc})") from None
    missing = [c for c in ("video", "task", "response") if c not in columns]
    if missing:
        raise SubmissionError(f"{name}:1: CSV header lacks column(s) {', '.join(missing)}")
    start = reader.line_num + 1  # the line the next record starts on (a quoted cell may span lines)
    try:
        for row in reader:
            if None in row:
                raise SubmissionError(f"{name}:{start}: more cells than header columns")
            yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            raise SubmissionError(f"{name}:{start}: unclosed quote: a cell opened with \" on this line never "
                                  "ends (the rest of the file would be one answer)") from None
        raise SubmissionError(f"{name}:{start}: not valid CSV ({exc})") from None


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
    if isinstance(value, str) and _surrogate(value):
        raise SubmissionError(f"{name}:{line}: {key}: lone surrogate {_surrogate(value)} (not Unicode text; "
                              "write the character itself or its pair of surrogates)")
    if isinstance(value, str) and key in ("video", "video_path", "task") and not value.strip():
        raise SubmissionError(f"{name}:{line}: {key}: empty")
    if isinstance(value, str) and len(value) > MAX_RESPONSE:
        raise SubmissionError(f"{name}:{line}: {key}: {len(value)} characters, over the {MAX_RESPONSE}-character limit")
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
    fields: dict = {}
    if task.kind == "yes_no":
        label = _field(name, line, row, "pred_label", (str,), required=False)
        if label is not None:
            fields["pred_label"] = label
    elif task.kind == "time_range":
        start = _field(name, line, row, "pred_start", number, required=False)
        end = _field(name, line, row, "pred_end", number, required=False)
        if (start is None) != (end is None):
            missing = "pred_end" if end is None else "pred_start"
            raise SubmissionError(f"{name}:{line}: {missing}: missing while its pair is given")
        if start is not None:
            fields.update(pred_start=float(start), pred_end=float(end))
    elif task.kind == "time":
        value = _field(name, line, row, "pred_time", number, required=False)
        if value is not None:
            fields["pred_time"] = float(value)
    else:
        text = _field(name, line, row, task.pred_fields[0], (str,), required=False)
        if text is not None:
            fields[task.pred_fields[0]] = text
    if fields:
        answer = Answer(raw, _parse_fields(task, fields), "", from_fields=True, fields=fields)
    else:
        answer = Answer(raw, task.parse(raw) if raw is not None else None, "")
    return line, task, video_key(video.strip()), answer
