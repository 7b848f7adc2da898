"""`crashchat inspect` and the prompt as the authors' evaluation builds it.

The frames and labels `inspect --json` reports are compared with an independent run of the
authors' loader logic (`tests/video_oracle.py`: libavfilter's fps filter through PyAV, their labels
and truncating thinning); the prompt with their template rendered by hand for one clip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from video_oracle import authors_load

from crashchat import inspection
from crashchat.synthetic import write_clip
from crashchat.tasks import TASKS, get_task

# (name, write_clip arguments): rates, a long clip (thinned to 96), a start offset
CLIPS = {
    "cfr25": dict(seconds=2.0, fps=25, size=(64, 48)),
    "ntsc_offset": dict(seconds=1.5, fps=30000 / 1001, size=(64, 48), start=0.37),
    "long_30fps": dict(seconds=12.0, fps=30, size=(64, 48)),
    "vfr": dict(seconds=3.0, fps=10, size=(64, 48), times=[0.0, 0.05, 0.3, 0.33, 0.9, 1.0, 1.25, 1.7, 2.2, 2.5, 2.55, 2.6]),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inspect")
    return {name: write_clip(folder / f"{name}.mp4", **kwargs) for name, kwargs in CLIPS.items()}


@pytest.mark.parametrize("name", list(CLIPS))
def test_inspect_json_frames_and_labels_are_the_authors(clips, name, tmp_path, capsys):
    out = tmp_path / "view.json"
    assert inspection.main([str(clips[name]), "--model", "tiny-random", "--json", str(out)]) == 0
    view = json.loads(out.read_text())
    authors = authors_load(clips[name])
    frames = view["video"]["frames"]
    assert [f["source_index"] for f in frames] == authors.numbers
    assert [f["label"] for f in frames] == [round(float(x), 6) for x in authors.labels]
    assert [f["shown_as"] for f in frames] == [f"{float(x):.1f}" for x in authors.labels]
    assert view["video"]["filtered_frames"] == authors.filtered and view["video"]["start_time"] == authors.start_time
    assert view["prompt_format"] == "authors-eval"
    for task in TASKS:
        prompt = view["prompts"][task.id]
        # the split's question, `<video>\n` included, right after the last frame
        assert prompt.endswith(f"\n<video>\n{task.prompt}<|im_end|>\n<|im_start|>assistant\n")
        assert prompt.count("Time ") == len(frames)
        first = frames[0]["shown_as"]
        assert prompt.startswith(f"<|im_start|>user\nTime {first}s:<|video_pad|>")
    tokens = view["visual_tokens"]
    assert 0 < tokens["after_compression"] <= tokens["before_compression"]
    assert sum(tokens["per_frame_after"]) == tokens["after_compression"] and len(tokens["per_frame_after"]) == len(frames)
    assert "RANDOM" not in capsys.readouterr().err


def test_prompt_token_ids_equal_the_authors_template(tiny_crashchat):
    """A 3-frame clip labelled 0.0, 0.1, 0.3 s and the recognition question: our input ids equal the
    authors' template (authors_eval.md, rendered by hand) with each frame's kept visual tokens."""
    from crashchat.video import Clip

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 56, 56, 3), dtype=np.uint8)
    frames[1] = frames[0]  # an unchanged frame: compression keeps one token of it
    clip = Clip(path="hand.mp4", frames=frames, timestamps=(0.0, 0.1, 0.3), duration_s=0.4, native_fps=10.0,
                width=56, height=56, backend="hand")
    prepared = tiny_crashchat.prepare(clip)
    question = get_task("crash_recognition").question
    ids = tiny_crashchat.inputs(prepared, question)["input_ids"][0].tolist()

    mask = prepared.video_inputs["video_compression_mask"]
    per_frame = mask.numel() // 3
    kept = [int(mask[i * per_frame:(i + 1) * per_frame].sum()) for i in range(3)]
    assert kept[1] == 1 and kept[0] == per_frame
    pad = "<|video_pad|>"
    authors = ("<|im_start|>user\nTime 0.0s:<image>,Time 0.1s:<image>,Time 0.3s:<image>\n<video>\nYou are a traffic "
               "accident engineer. Analyze the given traffic video and decide whether a collision or crash happens "
               "during the clip. Answer with only 'Yes' or 'No'. Example: If two vehicles collide, or a vehicle hits "
               "a pedestrian, answer 'Yes'; if all vehicles move normally without collision, answer 'No'."
               "<|im_end|>\n<|im_start|>assistant\n")
    for n in kept:
        authors = authors.replace("<image>", pad * n, 1)
    expected = tiny_crashchat.tokenizer(authors, add_special_tokens=False)["input_ids"]
    assert ids == expected


def test_training_keeps_the_training_format(tiny_crashchat, crash_clip):
    """Training asks without the tag (the question right after the frames), as the authors trained."""
    from crashchat.data import Encoder
    from crashchat.video import load_video

    clip = load_video(crash_clip, max_frames=4)
    encoder = Encoder(tiny_crashchat.processor, token_budget=None)
    ids, _ = encoder.prompt_ids(clip, get_task("crash_recognition").prompt)
    text = tiny_crashchat.tokenizer.decode(ids)
    assert "<video>" not in text and text.endswith(f"\n{get_task('crash_recognition').prompt}<|im_end|>\n"
                                                   "<|im_start|>assistant\n")


def test_inspect_an_hf_model_uses_its_own_template(tmp_path, crash_clip):
    from hf_families import write_family

    folder = write_family("qwen2_vl", tmp_path / "q2")
    from crashchat.video import load_video

    view = inspection.inspect(load_video(crash_clip), ["crash_recognition"], model=f"hf:{folder}")
    prompt = view["prompts"]["crash_recognition"]
    assert view["prompt_format"] == "chat-template" and "<video>" not in prompt
    assert "<|vision_start|><|video_pad|>×" in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_bad_video_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    assert inspection.main([str(bad), "--model", "tiny-random"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_inspect_names_the_base_and_where_each_setting_came_from(clips, tmp_path, capsys):
    """Without --base nothing is read (and it says so); with one, its configs set the values."""
    out = tmp_path / "view.json"
    assert inspection.main([str(clips["cfr25"]), "--task", "crash_recognition", "--json", str(out)]) == 0
    view = json.loads(out.read_text())
    assert view["base"] == {"id": "KDliang/crashchat/videollama3_original_model", "name": "authors-eval",
                            "repo": "KDliang/crashchat", "subfolder": "videollama3_original_model",
                            "revision": None, "read": False}
    assert view["settings"]["token_compression"]["value"] is True and view["settings"]["min_tokens"]["value"] == 16
    assert all(s["from"].startswith("default (the base's configs were not read: pass --base authors-eval")
               for s in view["settings"].values())
    text = capsys.readouterr().out
    assert "base: KDliang/crashchat/videollama3_original_model (not read)" in text
    assert "token compression: True (from default (the base's configs were not read" in text


def test_inspect_reads_a_hub_base_from_the_stand_in(clips, tmp_path, monkeypatch, capsys):
    from hub_stand_in import REVISION, offline_hub, put
    from test_convert import write_authors_base

    from crashchat.tiny import build_tiny_random

    hub = offline_hub(monkeypatch, tmp_path / "hub")
    base = write_authors_base(*build_tiny_random(), tmp_path / "authors_base")
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "use_token_compression": False}))
    put(hub, "KDliang/crashchat", {"videollama3_original_model": base})
    put(hub, "DAMO-NLP-SG/SigLIP-NaViT", {"preprocessor_config.json": {"min_tokens": 9}})
    out = tmp_path / "view.json"
    assert inspection.main([str(clips["cfr25"]), "--task", "crash_recognition", "--base", "authors-eval",
                            "--json", str(out)]) == 0
    view = json.loads(out.read_text())
    assert view["base"]["revision"] == REVISION and view["base"]["read"] is True
    settings = view["settings"]
    assert settings["token_compression"] == {"value": False,
                                             "from": "KDliang/crashchat/videollama3_original_model config.json"}
    assert settings["min_tokens"] == {"value": 9, "from": f"DAMO-NLP-SG/SigLIP-NaViT@{REVISION[:12]} preprocessor_config.json"}
    assert settings["image_mean"]["from"].startswith("default (DAMO-NLP-SG/SigLIP-NaViT@")
    assert view["processor"]["token_compression"] is False and view["processor"]["min_tokens_per_frame"] == 9
    # without compression every frame keeps all its tokens
    assert view["visual_tokens"]["after_compression"] == view["visual_tokens"]["before_compression"]
    assert view["tokenizer"] == "KDliang/crashchat/videollama3_original_model (the base's own)"
    assert f"base: KDliang/crashchat/videollama3_original_model @ {REVISION[:12]}" in capsys.readouterr().out
