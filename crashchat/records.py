"""The authors' record files, read in one place (the test split, training data, `predict`'s questions).

A file is a JSON list of records::

    {"video": ["videos/x.mp4"],
     "conversations": [{"from": "human", "value": "<video>\\n<question>"},
                       {"from": "gpt", "value": "<answer>"}],
     "source": "MM-AU-CAP"}

A video is identified by its basename (`video_key`). The human value is kept as written
(`Record.human`): the authors' evaluation asks it *with* its `<video>\\n`, their training without
(`Record.question`). Every problem is a `RecordError` naming the file, the record and the field.

>>> r = parse_record({"video": ["videos/a.mp4"], "conversations": [
...     {"from": "human", "value": "<video>\\nCrash?"}, {"from": "gpt", "value": "Yes"}]}, file="f.json", index=0)
>>> r.name, r.human, r.question, r.answer
('a.mp4', '<video>\\nCrash?', 'Crash?', 'Yes')
>>> parse_record({"video": "a.mp4"}, file="f.json", index=3)
Traceback (most recent call last):
...
crashchat.records.RecordError: f.json: record 3: field 'conversations' must be a list of turns (human, then gpt)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

VIDEO_TAG = "<video>"


class RecordError(ValueError):
    """A record file or record that cannot be used; one line naming the file, the record and the field."""


@dataclass(frozen=True)
class Record:
    """One question (and, in labelled files, its answer) about one video."""

    file: str
    index: int
    """Position in the file's list (0-based)."""
    video: str
    """`video[0]` as written (`videos/x.mp4`), relative to the data root."""
    human: str
    """The human turn exactly as written, `<video>\\n` included (what the authors' evaluation asks)."""
    answer: str | None
    """The gpt turn (None in a questions-only file)."""
    source: str | None = None
    task: str | None = None
    """Task id when the file is a task's split file."""

    @property
    def name(self) -> str:
        """The video's basename: the key of predictions and of the split."""
        return video_key(self.video)

    @property
    def question(self) -> str:
        """The human turn without the `<video>` tag (the training format: the video goes first)."""
        return strip_video_tag(self.human)

    @property
    def where(self) -> str:
        return f"{self.file}: record {self.index}"


def video_key(path: str) -> str:
    """The basename of a video path written with `/` or `\\` separators.

    >>> video_key("C:\\\\data\\\\videos/cap_1.mp4")
    'cap_1.mp4'
    """
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def strip_video_tag(text: str) -> str:
    """The question without the `<video>` tag and the whitespace around it.

    >>> strip_video_tag("<video>\\nWhat happens?")
    'What happens?'
    """
    return text.replace(VIDEO_TAG, "").strip()


def find_video(videos_dir: str | Path, relative: str) -> Path | None:
    """`videos_dir/relative` (the authors' data root) or `videos_dir/<basename>` (the videos folder itself).

    Nothing else is guessed.
    """
    videos_dir = Path(videos_dir)
    for candidate in (videos_dir / relative, videos_dir / video_key(relative)):
        if candidate.is_file():
            return candidate
    return None


def parse_record(raw: object, *, file: str, index: int, task: str | None = None,
                 require_answer: bool = True) -> Record:
    """Validate one raw record; raises `RecordError` naming file, index and field."""
    where = f"{file}: record {index}"
    if not isinstance(raw, dict):
        raise RecordError(f"{where}: expected an object, got {type(raw).__name__}")
    video = raw.get("video")
    if isinstance(video, list) and len(video) == 1:
        video = video[0]
    if not isinstance(video, str) or not video.strip() or not video_key(video):
        raise RecordError(f"{where}: field 'video' must be one path (a string or a one-element list), got {video!r}"[:300])
    turns = raw.get("conversations")
    wanted = ("human", "gpt") if require_answer else ("human",)
    if not isinstance(turns, list) or not len(wanted) <= len(turns) <= 2:
        raise RecordError(f"{where}: field 'conversations' must be a list of turns (human, then gpt)")
    for i, (turn, speaker) in enumerate(zip(turns, ("human", "gpt"), strict=False)):
        if not isinstance(turn, dict) or turn.get("from") != speaker:
            raise RecordError(f"{where}: conversations[{i}] must be a {{'from': '{speaker}', 'value': ...}} turn")
        if not isinstance(turn.get("value"), str) or not turn["value"].strip():
            raise RecordError(f"{where}: conversations[{i}].value must be a non-empty string")
    human = turns[0]["value"]
    if not strip_video_tag(human):
        raise RecordError(f"{where}: conversations[0].value has no question besides {VIDEO_TAG}")
    source = raw.get("source")
    if source is not None and not isinstance(source, str):
        raise RecordError(f"{where}: field 'source' must be a string, got {type(source).__name__}")
    answer = turns[1]["value"].strip() if len(turns) > 1 else None
    return Record(file=file, index=index, video=video, human=human, answer=answer, source=source, task=task)


def load_list(path: str | Path, data: bytes | None = None) -> list[object]:
    """The JSON list of a record file (`data`: its bytes, when already read)."""
    path = Path(path)
    try:
        if data is None:
            data = path.read_bytes()
        raw = json.loads(data.decode("utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RecordError(f"{path}: is a directory, not a record file") from None
    except UnicodeDecodeError:
        raise RecordError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise RecordError(f"{path}: nested too deeply to be a record file") from None
    if not isinstance(raw, list):
        raise RecordError(f"{path}: expected a JSON list of records, got {type(raw).__name__}")
    return raw


def read_records(path: str | Path, *, task: str | None = None, data: bytes | None = None,
                 require_answer: bool = True, skip_bad: bool = False) -> tuple[list[Record], list[str]]:
    """The records of one file, and one line per record left out (only with `skip_bad`)."""
    records, skipped = [], []
    for index, item in enumerate(load_list(path, data)):
        try:
            records.append(parse_record(item, file=str(path), index=index, task=task,
                                        require_answer=require_answer))
        except RecordError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
    return records, skipped
