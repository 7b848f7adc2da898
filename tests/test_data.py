"""Training data: the authors' JSON layout, label masking, padding and bad-record handling.

Clips are 1-second 64x64 synthetic videos written here; the processor is the tiny model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crashchat.data import (
    IGNORE_INDEX,
    Collator,
    DataConfig,
    DataError,
    Encoder,
    TrainingData,
    TrainingRecord,
    answer_text,
    model_inputs,
    read_split,
    read_tasks,
)
from crashchat.synthetic import write_broken, write_clip
from crashchat.tasks import get_task

RECOGNITION = get_task("crash_recognition")
LOCALIZATION = get_task("crash_localization")


pytestmark = pytest.mark.usefixtures("one_thread")


def record(video: str, question: str, answer: str, source: str = "MM-AU-CAP") -> dict:
    return {"video": [video], "source": source,
            "conversations": [{"from": "human", "value": f"<video>\n{question}"}, {"from": "gpt", "value": answer}]}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """`root/videos/{crash,normal,long}.mp4` and one split file per task for two tasks."""
    root = tmp_path_factory.mktemp("data")
    write_clip(root / "videos" / "crash.mp4", seconds=1.0, scene="crash")
    write_clip(root / "videos" / "normal.mp4", seconds=1.0, scene="normal", seed=1)
    write_clip(root / "videos" / "long.mp4", seconds=2.0, scene="crash", seed=2)
    splits = root / "splits"
    splits.mkdir()
    (splits / RECOGNITION.split_file("train")).write_text(json.dumps([
        record("videos/crash.mp4", RECOGNITION.prompt, "Yes"),
        record("videos/normal.mp4", RECOGNITION.prompt, "No"),
    ]))
    (splits / LOCALIZATION.split_file("train")).write_text(json.dumps([
        record("videos/long.mp4", LOCALIZATION.prompt, "1.2 - 1.6 seconds"),
    ]))
    return root


@pytest.fixture(scope="module")
def tiny():
    from crashchat.tiny import build_tiny_random

    return build_tiny_random()


@pytest.fixture(scope="module")
def encoder(tiny) -> Encoder:
    return Encoder(tiny[1], token_budget=None)


def write_split(tmp_path: Path, records) -> Path:
    path = tmp_path / RECOGNITION.split_file("train")
    path.write_text(json.dumps(records))
    return path


# --- reading ----------------------------------------------------------------------------------------


def test_reads_the_authors_layout_and_mixes_task_files(root):
    split = read_tasks(root / "splits", [RECOGNITION, LOCALIZATION], "train", videos_dir=root)
    assert split.count_by_task() == {"crash_recognition": 2, "crash_localization": 1}
    first = split.records[0]
    assert first.question == RECOGNITION.prompt  # the <video> tag is gone: the video goes first
    assert first.answer == "Yes" and first.source == "MM-AU-CAP" and first.index == 0
    assert first.video == root / "videos" / "crash.mp4"
    assert split.skipped == []


def test_videos_dir_may_be_the_folder_of_the_mp4s(root):
    split = read_split(root / "splits" / RECOGNITION.split_file("train"), videos_dir=root / "videos")
    assert [r.video.name for r in split.records] == ["crash.mp4", "normal.mp4"]


@pytest.mark.parametrize("bad, field", [
    ("not a record", "expected an object"),
    ({"conversations": []}, "'video'"),
    ({"video": ["videos/crash.mp4"], "conversations": [{"from": "human", "value": "<video>\nQ"}]}, "'conversations'"),
    ({"video": ["videos/crash.mp4"], "conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]},
     "conversations[0]"),
    (record("videos/crash.mp4", "Q", "  "), "conversations[1].value"),
    (record("videos/crash.mp4", "", "Yes"), "no question"),
    (record("videos/missing.mp4", "Q", "Yes"), "video videos/missing.mp4 not found"),
])
def test_bad_record_names_file_and_index_or_is_skipped_and_counted(root, tmp_path, bad, field):
    path = write_split(tmp_path, [record("videos/crash.mp4", "Q", "Yes"), bad, record("videos/normal.mp4", "Q", "No")])
    with pytest.raises(DataError) as err:
        read_split(path, videos_dir=root)
    message = str(err.value)
    assert str(path) in message and "record 1" in message and field in message
    split = read_split(path, videos_dir=root, skip_bad=True)
    assert [r.index for r in split.records] == [0, 2]
    assert len(split.skipped) == 1 and "record 1" in split.skipped[0]


def test_unreadable_json_and_missing_files_are_one_line_errors(root, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"video": ["a.mp4"],\n')
    with pytest.raises(DataError, match=r"broken.json: line 2 column 1: not valid JSON"):
        read_split(path, videos_dir=root)
    with pytest.raises(DataError, match="no such split file"):
        read_tasks(tmp_path, [RECOGNITION], "val", videos_dir=root)


# --- encoding ---------------------------------------------------------------------------------------


def clip(path: Path, fps: float = 10.0, max_frames: int = 96):
    from crashchat.video import load_video

    return load_video(path, fps=fps, max_frames=max_frames)


def test_labels_cover_only_the_answer_and_its_end_token(root, encoder, tiny):
    from crashchat.model import CrashChat

    c = clip(root / "videos" / "crash.mp4")
    example = encoder.encode(c, RECOGNITION.prompt, "Yes")
    assert answer_text(encoder.tokenizer, example) == "Yes<|im_end|>"
    labelled = (example["labels"] != IGNORE_INDEX).nonzero().flatten()
    n_answer = len(encoder.tokenizer("Yes", add_special_tokens=False)["input_ids"]) + 1
    # one contiguous run at the very end, equal to the input ids there
    assert labelled.tolist() == list(range(len(example["labels"]) - n_answer, len(example["labels"])))
    assert torch.equal(example["labels"][labelled], example["input_ids"][labelled])
    # the unlabelled prefix is exactly what the model sees at inference
    chat = CrashChat(model=tiny[0], processor=tiny[1], name="tiny-random", random_weights=True, device="cpu",
                     groups=())
    served = chat.inputs(chat.prepare(c), RECOGNITION.prompt)
    assert example["input_ids"][: labelled[0]].tolist() == served["input_ids"][0].tolist()
    assert torch.equal(example["pixel_values_videos"], served["pixel_values_videos"])


def test_frames_are_sampled_as_at_inference(root, encoder):
    data = TrainingData([TrainingRecord("f", 0, root / "videos" / "long.mp4", "Q", "A")], encoder)
    assert data[0]["video_grid_thw"][0, 0] == 20  # 2 s at 10 fps
    text = encoder.tokenizer.decode(data[0]["input_ids"])
    assert "Time 0.0s:" in text and "Time 1.9s:" in text
    thin = TrainingData([TrainingRecord("f", 0, root / "videos" / "long.mp4", "Q", "A")], encoder,
                        DataConfig(max_frames=4))
    assert thin[0]["video_grid_thw"][0, 0] == 4


def test_training_budget_sets_the_visual_tokens(tiny):
    from crashchat.prompt import TRAIN_TOKEN_BUDGET

    enc = Encoder(tiny[1])  # the default: the paper's training budget
    size = enc.processor.video_processor.size
    assert size["longest_edge"] == TRAIN_TOKEN_BUDGET * 28 * 28
    assert size["shortest_edge"] == tiny[1].video_processor.size["shortest_edge"]  # the floor is kept


def test_batch_of_clips_pads_right_and_matches_unbatched_logits(root, encoder, tiny):
    model = tiny[0].eval()
    data = TrainingData(read_tasks(root / "splits", [RECOGNITION, LOCALIZATION], "train", videos_dir=root).records,
                        encoder, DataConfig(max_frames=3))
    examples = [data[0], data[2]]  # a "Yes" and a longer time-range answer, different clips
    batch = Collator(encoder.pad_id)(examples)
    lengths = [len(e["input_ids"]) for e in examples]
    assert batch["input_ids"].shape == (2, max(lengths))
    short = lengths.index(min(lengths))
    assert (batch["input_ids"][short, min(lengths):] == encoder.pad_id).all()
    assert (batch["labels"][short, min(lengths):] == IGNORE_INDEX).all()
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["video_grid_thw"].shape == (2, 3)
    with torch.no_grad():
        batched = model(**model_inputs(batch)).logits
        for row, example in enumerate(examples):
            alone = model(**model_inputs(Collator(encoder.pad_id)([example]))).logits[0]
            torch.testing.assert_close(batched[row, : lengths[row]], alone, atol=1e-4, rtol=1e-4)
    loss = model(**model_inputs(batch)).loss
    assert torch.isfinite(loss)


def test_unreadable_video_errors_or_is_replaced_and_reported(root, encoder, tmp_path):
    broken = write_broken(tmp_path / "videos" / "broken.mp4", "text")
    records = [TrainingRecord("train.json", 0, broken, "Q", "A"),
               TrainingRecord("train.json", 1, root / "videos" / "crash.mp4", "Q", "B")]
    with pytest.raises(DataError, match=r"train.json: record 0: video .*broken.mp4"):
        TrainingData(records, encoder)[0]
    item = TrainingData(records, encoder, DataConfig(max_frames=2, skip_bad=True))[0]
    assert answer_text(encoder.tokenizer, item) == "B<|im_end|>"
    assert len(item["skipped"]) == 1 and "record 0" in item["skipped"][0]
    batch = Collator(encoder.pad_id)([item])
    assert batch["skipped"] == item["skipped"] and "skipped" not in model_inputs(batch)
