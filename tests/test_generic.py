"""`predict --model hf:DIR`: each video-LLM family's tiny random checkpoint through predict, provenance
written and valid, scored by the leaderboard CLI; refusals and resume across families."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hf_families import FAMILIES, write_family
from mini_split import VIDEOS, expected_rows, write_mini_split

from crashchat import predict, provenance
from crashchat.generic import MODEL_CARD_HF_ONLY
from crashchat.synthetic import write_broken

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mini(mini_split) -> tuple[Path, Path]:
    return mini_split  # conftest's, written once per session


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {f: write_family(f, root / f) for f in FAMILIES + ("llava",)}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _argv(split, videos, out, model, *extra) -> list[str]:
    return ["--split-dir", str(split), "--videos-dir", str(videos), "--out", str(out), "--model", model,
            "--max-new-tokens", "3", "--no-progress", "--device", "cpu", *extra]


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_predicts_a_scoreable_submission_with_provenance(family, checkpoints, mini, tmp_path, one_thread):
    split, videos = mini
    out = tmp_path / f"{family}.jsonl"
    assert predict.main(_argv(split, videos, out, f"hf:{checkpoints[family]}")) == 0
    rows = _rows(out)
    assert {(r["video"], r["task"]) for r in rows} == expected_rows()
    assert all(isinstance(r["response"], str) for r in rows)

    meta = provenance.loads((tmp_path / f"{family}.jsonl.meta.json").read_bytes())
    assert meta["model"] == {**meta["model"], "id": f"hf:{checkpoints[family]}", "backend": "hf", "family": family,
                             "dtype": "float32", "attention": "sdpa", "trust_remote_code": False}
    assert meta["prompt"] == {"format": "chat-template", "video_tag": False, "system_prompt": False}
    assert meta["frames"]["fps"] == 10.0 and meta["frames"]["max_frames"] == 96
    assert meta["generation"]["max_new_tokens"] == 3 and not meta["generation"]["guided"]
    assert meta["answers"]["written"] == len(rows) and meta["answers"]["videos_failed"] == 2
    assert meta["packages"]["transformers"]
    assert provenance.describe(meta).startswith(f"zero-shot, {family}, 96 frames @ 10 fps")

    score = subprocess.run([sys.executable, "-m", "leaderboard", "score", str(out), "--split-dir", str(split),
                            "--bootstrap", "0", "--json", str(tmp_path / "score.json")],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert score.returncode == 0, score.stderr
    result = json.loads((tmp_path / "score.json").read_text())
    assert result["validation"]["crash_recognition"]["matched"] == 3


def test_the_model_sees_the_question_without_the_tag_and_true_times(checkpoints, crash_clip):
    """Qwen3-VL reads time from the metadata: the prompt names the frames' real times."""
    from crashchat.generic import GenericConfig, load_generic
    from crashchat.tasks import get_task
    from crashchat.video import load_video

    model = load_generic(GenericConfig(str(checkpoints["qwen3_vl"]), device="cpu"))
    clip = load_video(crash_clip)
    question = get_task("crash_recognition").question
    text = model.chat_text(question)
    assert "<video>" not in text and get_task("crash_recognition").prompt in text
    ids = model.inputs(model.prepare(clip), question)["input_ids"][0]
    shown = model.tokenizer.decode(ids)
    # Qwen3-VL merges frames two by two and labels each pair with the mean of their times
    times = [float(t) for t in re.findall(r"<(\d+\.\d) seconds>", shown)]
    pairs = [(a + b) / 2 for a, b in zip(clip.timestamps[::2], clip.timestamps[1::2], strict=False)]
    assert len(times) == len(pairs) == len(clip.timestamps) // 2
    assert all(abs(t - p) <= 0.05 + 1e-9 for t, p in zip(times, pairs, strict=True)), (times, pairs)


@pytest.mark.parametrize("family, why", [("llava", "no video support in its processor")])
def test_an_image_only_model_is_refused_in_one_line(family, why, checkpoints, mini, tmp_path, capsys):
    split, videos = mini
    assert predict.main(_argv(split, videos, tmp_path / "o.jsonl", f"hf:{checkpoints[family]}")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and err[1].startswith("videos: ") and err[2].startswith("error: "), err
    assert why in err[2] and "llava" in err[2], err


def test_a_bad_hub_id_offline_is_one_line(mini, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    split, videos = mini
    assert predict.main(_argv(split, videos, tmp_path / "o.jsonl", "hf:nobody/no-such-model")) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: cannot fetch hf:nobody/no-such-model from the Hugging Face Hub"), err
    assert predict.main(_argv(split, videos, tmp_path / "o.jsonl", "hf:./missing-folder")) == 1
    assert "no such folder" in capsys.readouterr().err


def test_crashchat_options_with_an_hf_model_are_refused(mini, tmp_path, capsys):
    split, videos = mini
    assert predict.main(_argv(split, videos, tmp_path / "o.jsonl", "hf:x/y", "--linguistic", "a")) == 2
    assert "--linguistic: CrashChat options" in capsys.readouterr().err


def test_resume_across_families_keeps_earlier_answers(checkpoints, mini, tmp_path, capsys, one_thread):
    """A run stopped after two videos is finished by another family's run: rows are kept, none asked twice."""
    split, videos = mini
    out = tmp_path / "mixed.jsonl"
    assert predict.main(_argv(split, videos, out, f"hf:{checkpoints['qwen2_vl']}", "--limit", "2")) == 0
    first = _rows(out)
    assert {r["video"] for r in first} == {VIDEOS[0][0], VIDEOS[1][0]}
    assert predict.main(_argv(split, videos, out, f"hf:{checkpoints['llava_onevision']}", "--resume")) == 0
    assert f"{len(first)} already answered" in capsys.readouterr().err
    rows = _rows(out)
    assert rows[:len(first)] == first and {(r["video"], r["task"]) for r in rows} == expected_rows()
    meta = json.loads((tmp_path / "mixed.jsonl.meta.json").read_text())
    assert meta["model"]["family"] == "llava_onevision"  # the run that finished the file


def test_nothing_predicted_exits_non_zero_with_a_summary(checkpoints, tmp_path, capsys):
    split = write_mini_split(tmp_path / "m")[0]
    empty = tmp_path / "no-videos"  # every video there, none readable (a folder without any stops before loading)
    for name, _, _ in VIDEOS:
        write_broken(empty / name, "text")
    out = tmp_path / "none.jsonl"
    assert predict.main(_argv(split, empty, out, f"hf:{checkpoints['qwen2_vl']}")) == 1
    err = capsys.readouterr().err
    assert "error: nothing could be predicted" in err and "0 answers" in err


# --- --frames model-card: each family's documented video defaults ------------------------------------


@pytest.mark.parametrize("family, fps, max_frames, fps_from", [
    ("qwen2_vl", 2.0, 768, "Qwen2-VL's model card"),        # its processor leaves fps unset
    ("qwen2_5_vl", 2.0, 768, "Qwen2.5-VL's model card"),
    ("qwen3_vl", 2.0, 768, "the checkpoint's Qwen3VLVideoProcessor (fps=2)"),  # its processor sets it
    ("llava_onevision", 10.0, 32, "decoded at 10 fps, then 32 frames uniformly"),
])
def test_model_card_frames_per_family(family, fps, max_frames, fps_from, checkpoints):
    from transformers import AutoProcessor

    from crashchat.generic import model_card_frames

    processor = AutoProcessor.from_pretrained(checkpoints[family])
    policy = model_card_frames(family, processor)
    assert (policy.name, policy.fps, policy.max_frames) == ("model-card", fps, max_frames)
    assert policy.sources["fps"].startswith(fps_from) and policy.sources["pixels"].startswith("the checkpoint's ")
    processor.video_processor.fps = 1.0  # a checkpoint whose processor config documents its own rate
    if family != "llava_onevision":
        assert model_card_frames(family, processor).fps == 1.0


def test_predict_with_model_card_frames_records_the_policy(checkpoints, mini, tmp_path, one_thread, monkeypatch):
    from crashchat import video

    asked, real_load = [], video.load_video
    monkeypatch.setattr(video, "load_video", lambda path, **kw: asked.append((kw["fps"], kw["max_frames"]))
                        or real_load(path, **kw))
    split, videos = mini
    out = tmp_path / "card.jsonl"
    assert predict.main(_argv(split, videos, out, f"hf:{checkpoints['llava_onevision']}", "--frames", "model-card",
                              "--limit", "1", "--tasks", "crash_recognition")) == 0
    meta = provenance.loads(out.with_name("card.jsonl.meta.json").read_bytes())
    frames = meta["frames"]
    assert (frames["policy"], frames["fps"], frames["max_frames"]) == ("model-card", 10.0, 32)
    assert frames["settings_from"]["max_frames"].startswith("LLaVA-OneVision's evaluation (lmms-eval")
    assert "32 frames @ 10 fps (model card)" in provenance.describe(meta)
    assert asked == [(10.0, 32)]  # the video was decoded under the policy it records
    plain = tmp_path / "plain.jsonl"
    assert predict.main(_argv(split, videos, plain, f"hf:{checkpoints['llava_onevision']}", "--limit", "1",
                              "--tasks", "crash_recognition")) == 0
    meta = provenance.loads(plain.with_name("plain.jsonl.meta.json").read_bytes())
    assert (meta["frames"]["policy"], meta["frames"]["max_frames"]) == ("benchmark", 96)


def test_inspect_and_analyze_see_the_model_card_frames_as_predict_does(checkpoints, crash_clip, tmp_path, capsys,
                                                                       one_thread):
    from crashchat import analysis, inspection

    model, view_json, report_json = f"hf:{checkpoints['qwen2_vl']}", tmp_path / "view.json", tmp_path / "report.json"
    card = ["--model", model, "--frames", "model-card", "--json"]
    assert inspection.main([str(crash_clip), "--task", "crash_recognition", *card, str(view_json)]) == 0
    view = json.loads(view_json.read_text())
    assert (view["frame_policy"]["name"], view["frame_policy"]["fps"], view["frame_policy"]["max_frames"]) == \
        ("model-card", 2.0, 768)
    assert view["frame_policy"]["sources"]["fps"].startswith("Qwen2-VL's model card")
    assert (view["video"]["sample_fps"], len(view["video"]["frames"])) == (2.0, 6)  # the 3 s clip at 2 fps
    assert "frame policy: model-card, 2 fps, at most 768 frames" in capsys.readouterr().out
    assert analysis.main([str(crash_clip), "--tasks", "crash_recognition", "--max-new-tokens", "2", *card,
                          str(report_json)]) == 0
    given = json.loads(report_json.read_text())["input"]
    assert (given["frame_policy"], given["sample_fps"], given["frames"]) == ("model-card", 2.0, 6)
    assert given["frame_sources"]["fps"].startswith("Qwen2-VL's model card")
    assert "the model card's frames (2 fps)" in capsys.readouterr().out
    assert inspection.main([str(crash_clip), "--task", "crash_recognition", "--model", model, "--json",
                            str(view_json)]) == 0  # the default: the benchmark's frames
    view = json.loads(view_json.read_text())
    assert (view["frame_policy"], view["video"]["sample_fps"]) == ({"name": "benchmark"}, 10.0)


def test_model_card_frames_are_refused_where_they_do_not_apply(mini, crash_clip, tmp_path, capsys):
    from crashchat import analysis, inspection

    split, videos = mini
    assert predict.main(_argv(split, videos, tmp_path / "o.jsonl", "tiny-random", "--frames", "model-card")) == 2
    assert "--frames model-card applies to hf: models only" in capsys.readouterr().err
    assert predict.main(_argv(split, videos, tmp_path / "o.jsonl", "hf:x/y", "--frames", "model-card",
                              "--max-pixels", "200704")) == 2
    assert "--max-pixels and --frames model-card" in capsys.readouterr().err
    for command in (analysis.main, inspection.main):  # refused before any model or file is read
        assert command([str(crash_clip), "--model", "tiny-random", "--frames", "model-card"]) == 2
        assert capsys.readouterr().err == f"error: {MODEL_CARD_HF_ONLY}\n"
        assert command([str(crash_clip), "--model", "hf:x/y", "--frames", "model-card", "--max-pixels", "200704"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --max-pixels and --frames model-card") and err.count("\n") == 1
