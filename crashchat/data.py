"""Training examples from the authors' JSON layout, encoded exactly as CrashChat is asked at inference.

A split file is a JSON list of records::

    {"video": ["videos/x.mp4"],
     "conversations": [{"from": "human", "value": "<video>\\n<question>"},
                       {"from": "gpt", "value": "<answer>"}],
     "source": "MM-AU-CAP"}

`read_split` turns one file into `TrainingRecord`s (any number of files, one per task, are simply
concatenated and shuffled by the loader), `Encoder` turns a record's decoded clip into model
inputs whose labels cover only the answer and its `<|im_end|>`, and `Collator` pads a batch of
clips. Frames are sampled as at inference (`crashchat.video.load_video`: 10 fps, at most 96);
the training visual budget is 10240 merged tokens per clip (16384 at evaluation).

Bad input is never skipped silently: by default a malformed record or a missing video raises
`DataError` naming the file and the record's index; with `skip_bad` it is left out, counted and
reported (`TrainingSplit.skipped`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crashchat import records
from crashchat.prompt import TRAIN_TOKEN_BUDGET
from crashchat.tasks import Task

if TYPE_CHECKING:
    pass

IGNORE_INDEX = -100
"""Label value that the causal-LM loss ignores (prompt, video and padding positions)."""


class DataError(ValueError):
    """A record or a video cannot be used; the message names the file and the record index."""


@dataclass(frozen=True)
class DataConfig:
    """How clips become model inputs; the defaults are the paper's training settings."""

    fps: float = 10.0
    """Frames sampled per second (as at inference)."""
    max_frames: int = 96
    """At most this many frames per clip; longer clips are thinned uniformly."""
    token_budget: int | None = TRAIN_TOKEN_BUDGET
    """Merged visual tokens per clip (`none`: the processor's own budget)."""
    skip_bad: bool = False
    """Leave out (and count) malformed records and unreadable videos instead of stopping."""

    def __post_init__(self):
        if self.fps <= 0:
            raise ValueError(f"--fps must be positive, got {self.fps}")
        if self.max_frames < 1:
            raise ValueError(f"--max-frames must be at least 1, got {self.max_frames}")
        if self.token_budget is not None and self.token_budget < 1:
            raise ValueError(f"--token-budget must be positive, got {self.token_budget}")


@dataclass(frozen=True)
class TrainingRecord:
    """One question/answer pair about one video, with where it came from."""

    file: str
    index: int
    """Position of the record in its file's list (0-based)."""
    video: Path
    question: str
    """The human turn without the `<video>` tag (the video goes first, as at inference)."""
    answer: str
    source: str | None = None
    task: str | None = None
    """Task id when the record came from a task's split file."""

    @property
    def where(self) -> str:
        return f"{self.file}: record {self.index}"


@dataclass
class TrainingSplit:
    """The usable records of one or more files, and what was left out (with `skip_bad`)."""

    records: list[TrainingRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """One line per record left out: file, index and reason."""

    def extend(self, other: TrainingSplit) -> TrainingSplit:
        self.records.extend(other.records)
        self.skipped.extend(other.skipped)
        return self

    def count_by_task(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rec in self.records:
            counts[rec.task or "-"] = counts.get(rec.task or "-", 0) + 1
        return counts


def parse_training_record(raw: object, *, file: str, index: int, videos_dir: Path,
                          task: Task | None = None) -> TrainingRecord:
    """Validate one raw record (`crashchat.records`) and find its video; raises `DataError`."""
    try:
        rec = records.parse_record(raw, file=file, index=index, task=task.id if task else None)
    except records.RecordError as exc:
        raise DataError(str(exc)) from None
    path = records.find_video(videos_dir, rec.video)
    if path is None:
        raise DataError(f"{rec.where}: video {rec.video} not found under {videos_dir}")
    return TrainingRecord(file=file, index=index, video=path, question=rec.question, answer=rec.answer,
                          source=rec.source, task=rec.task)


def read_split(path: str | Path, *, videos_dir: str | Path, task: Task | None = None,
               skip_bad: bool = False) -> TrainingSplit:
    """All records of one split file; bad ones raise `DataError`, or with `skip_bad` are counted."""
    path, videos_dir = Path(path), Path(videos_dir)
    if not path.is_file():
        raise DataError(f"{path}: no such split file")
    try:
        raw = records.load_list(path)
    except records.RecordError as exc:
        raise DataError(str(exc)) from None
    split = TrainingSplit()
    for index, item in enumerate(raw):
        try:
            split.records.append(parse_training_record(item, file=str(path), index=index, videos_dir=videos_dir,
                                                       task=task))
        except DataError as exc:
            if not skip_bad:
                raise
            split.skipped.append(str(exc))
    return split


def split_path(split_dir: str | Path, task: Task, split: str) -> Path:
    """`crashchat_dada_video_total_<name>_<split>.json` in `split_dir` (the authors' naming)."""
    return Path(split_dir) / task.split_file(split)


def read_tasks(split_dir: str | Path, tasks: Sequence[Task], split: str, *, videos_dir: str | Path,
               skip_bad: bool = False) -> TrainingSplit:
    """The mixture of several tasks' files of one split (train or val)."""
    mixed = TrainingSplit()
    for task in tasks:
        mixed.extend(read_split(split_path(split_dir, task, split), videos_dir=videos_dir, task=task,
                                skip_bad=skip_bad))
    if not mixed.records:
        raise DataError(f"{split_dir}: no usable {split} records for {', '.join(t.id for t in tasks)}")
    return mixed


# --- encoding -----------------------------------------------------------------------------------


class Encoder:
    """Clip + question + answer -> input ids, labels and video tensors, formatted as at inference.

    The prompt is built by the inference code itself (`crashchat.model.CrashChat.prepare` and
    `.prompt`), so training and serving cannot drift apart; the answer and `<|im_end|>` are
    tokenized separately and appended, which is exactly the sequence the model must generate.
    """

    def __init__(self, processor, token_budget: int | None = TRAIN_TOKEN_BUDGET):
        from crashchat.prompt import with_token_budget

        if token_budget is not None:
            # Only the budget changes; floor, compression and normalisation stay the processor's own.
            processor = with_token_budget(processor, token_budget)
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.end_id = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        assert self.end_id is not None and self.end_id != self.tokenizer.unk_token_id, "tokenizer lacks <|im_end|>"

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.end_id

    def prompt_ids(self, clip, question: str) -> tuple[list[int], dict]:
        from crashchat.prompt import chat_text, prepare_clip  # the inference prompt, exactly

        prepared = prepare_clip(self.processor, clip)
        text = chat_text(self.processor, question, prepared=prepared)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return list(ids), prepared.video_inputs

    def encode(self, clip, question: str, answer: str) -> dict:
        """One example: 1-D `input_ids`/`labels` and the clip's video tensors."""
        import torch

        prompt, video_inputs = self.prompt_ids(clip, question)
        target = list(self.tokenizer(answer, add_special_tokens=False)["input_ids"]) + [self.end_id]
        return {
            "input_ids": torch.tensor(prompt + target, dtype=torch.long),
            "labels": torch.tensor([IGNORE_INDEX] * len(prompt) + target, dtype=torch.long),
            **video_inputs,
        }


class TrainingData:
    """A `torch` map-style dataset over records: decodes, samples and encodes one clip per item.

    With `skip_bad`, an unreadable video is replaced by the next record that decodes, and the
    replacement is reported in the item (`"skipped"`) so the loop counts it: every process must
    still receive a full batch, or data-parallel training would hang.
    """

    def __init__(self, records: Sequence[TrainingRecord], encoder: Encoder, cfg: DataConfig = DataConfig(),
                 limits=None):
        if not records:
            raise DataError("no records to train on")
        self.records = list(records)
        self.encoder = encoder
        self.cfg = cfg
        self.limits = limits

    def __len__(self) -> int:
        return len(self.records)

    def load(self, record: TrainingRecord):
        from crashchat.video import VideoError, load_video

        kwargs = {"limits": self.limits} if self.limits is not None else {}
        try:
            return load_video(record.video, fps=self.cfg.fps, max_frames=self.cfg.max_frames, **kwargs)
        except VideoError as exc:
            raise DataError(f"{record.where}: video {record.video}: {exc}") from None

    def __getitem__(self, index: int) -> dict:
        skipped: list[str] = []
        for attempt in range(len(self.records)):
            record = self.records[(index + attempt) % len(self.records)]
            try:
                clip = self.load(record)
            except DataError as exc:
                if not self.cfg.skip_bad:
                    raise
                skipped.append(str(exc))
                continue
            example = self.encoder.encode(clip, record.question, record.answer)
            example["skipped"] = skipped
            return example
        raise DataError(f"none of the {len(self.records)} videos could be decoded; first error: {skipped[0]}")


@dataclass(frozen=True)
class Collator:
    """Pads a list of examples into one batch (right padding; video tensors concatenated in order)."""

    pad_id: int

    def __call__(self, examples: Sequence[dict]) -> dict:
        import torch

        assert examples, "empty batch"
        length = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(examples), length), dtype=torch.long)
        for row, example in enumerate(examples):
            n = len(example["input_ids"])
            ids[row, :n] = example["input_ids"]
            labels[row, :n] = example["labels"]
            mask[row, :n] = 1
        batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        # The model consumes the videos of a batch as one flat sequence of patches, in row order.
        for key in ("pixel_values_videos", "video_grid_thw", "video_merge_sizes", "video_compression_mask"):
            batch[key] = torch.cat([e[key] for e in examples], dim=0)
        batch["skipped"] = [line for e in examples for line in e.get("skipped", ())]
        return batch


def model_inputs(batch: dict) -> dict:
    """The batch without bookkeeping keys, ready for `model(**...)`."""
    return {k: v for k, v in batch.items() if k != "skipped"}


def answer_text(tokenizer, example: dict) -> str:
    """The labelled tokens of an example, decoded (what the loss is computed on).

    Useful to check masking by eye: it is the answer followed by `<|im_end|>`.
    """
    labels = example["labels"]
    return tokenizer.decode([int(t) for t in labels if int(t) != IGNORE_INDEX])


# --- a synthetic split (for trying the pipeline) --------------------------------------------------


def synthetic_answers(scene: str, seconds: float) -> dict[str, str | None]:
    """Answers that are true of a `crashchat.synthetic` clip, per task id (None: no record).

    As in the authors' split, the two localization tasks have records for crash clips only.

    >>> synthetic_answers("crash", 5.0)["crash_localization"]
    '3.0 - 3.4 seconds'
    >>> synthetic_answers("normal", 5.0)["pre_crash_localization"] is None
    True
    """
    from crashchat.synthetic import crash_time

    if scene == "normal":
        return {"crash_recognition": "No", "crash_localization": None, "pre_crash_localization": None,
                "crash_description": "no collision.", "causal_reasoning": "No accident, no cause.",
                "prevention_reasoning": "No accident, no prevention needed."}
    tc = crash_time(seconds)
    return {
        "crash_recognition": "Yes",
        "crash_localization": f"{tc:.1f} - {min(tc + 0.4, seconds):.1f} seconds",  # the impact flash
        "pre_crash_localization": f"{max(tc - 1.5, 0.0):.1f} seconds",  # the cut-in starts
        "crash_description": "car hits a car.",
        "causal_reasoning": "The car in the left lane cut in too close to the car ahead.",
        "prevention_reasoning": "Drivers should keep a safe distance and check the gap before changing lanes.",
    }


def write_synthetic_split(root: str | Path, clips: int = 4, seconds: float = 2.0, size: tuple[int, int] = (64, 64),
                          tasks: Sequence[Task] | None = None) -> Path:
    """Synthetic clips in `root/videos/` and train/val/test files in `root/splits/`, in the authors' layout.

    For trying `train`, `predict` and `score` end to end without the real data: half the clips are
    crashes, half normal driving (`crashchat.synthetic`), and every answer is true of its clip.
    Train, val and test hold the same records. Returns `root/splits`; pass `--videos-dir root`.
    """
    import json

    from crashchat.synthetic import write_clip
    from crashchat.tasks import TASKS

    root = Path(root)
    names = []
    for i in range(clips):
        scene = "crash" if i % 2 == 0 else "normal"
        name = f"videos/synthetic_{scene}_{i}.mp4"
        write_clip(root / name, seconds=seconds, size=size, scene=scene, seed=i)
        names.append((name, scene))
    splits = root / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    for task in tasks or TASKS:
        rows = [
            {"video": [name], "source": "synthetic",
             "conversations": [{"from": "human", "value": f"{records.VIDEO_TAG}\n{task.prompt}"},
                               {"from": "gpt", "value": answer}]}
            for name, scene in names if (answer := synthetic_answers(scene, seconds)[task.id]) is not None
        ]
        for split in ("train", "val", "test"):
            (splits / task.split_file(split)).write_text(json.dumps(rows, indent=1))
    return splits
