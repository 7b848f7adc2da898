"""The model wrapper on the tiny random VideoLLaMA3: adapters, chat format, sharing, load errors."""

from __future__ import annotations

import pytest
import torch

from crashchat.loading import ModelConfig
from crashchat.tasks import TASKS
from crashchat.tiny import SEED, build_tiny_random
from crashchat.video import load_video


@pytest.fixture(scope="module")
def clip(crash_clip):
    return load_video(crash_clip, max_frames=12)


def test_tiny_random_is_the_same_every_time():
    a, _ = build_tiny_random()
    b, _ = build_tiny_random()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    c, _ = build_tiny_random(seed=SEED + 1)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_tiny_random_says_so(tiny_crashchat):
    assert tiny_crashchat.name == "tiny-random" and tiny_crashchat.random_weights
    assert "RANDOM WEIGHTS" in tiny_crashchat.label
    assert tiny_crashchat.groups == ("linguistic", "perception")
    assert not tiny_crashchat.model.training  # LoRA dropout off


def test_adapters_switch_lora_and_projector(tiny_crashchat, clip):
    model = tiny_crashchat.model
    # each adapter owns a projector copy with its own weights
    lin = model.base_model.model.model.projector.modules_to_save["linguistic"].readout[0].weight
    per = model.base_model.model.model.projector.modules_to_save["perception"].readout[0].weight
    assert not torch.equal(lin, per)
    logits = {g: tiny_crashchat.logits(clip, "Describe the crash.", group=g) for g in ("linguistic", "perception")}
    assert not torch.allclose(logits["linguistic"], logits["perception"])
    # and switching back gives the first adapter's logits again, exactly
    assert torch.equal(tiny_crashchat.logits(clip, "Describe the crash.", group="linguistic"), logits["linguistic"])
    with tiny_crashchat.using("perception"):
        assert model.active_adapter == "perception"
        assert model.base_model.model.model.projector.active_adapters == ["perception"]


def test_videollama3_baseline_has_no_adapters():
    with pytest.raises(ValueError, match="--model videollama3 runs the base alone"):
        ModelConfig(name="videollama3", linguistic="x")
    with pytest.raises(ValueError, match="unknown model 'gpt'"):
        ModelConfig(name="gpt")


def test_chat_format_has_no_system_prompt_and_keeps_history(tiny_crashchat):
    assert tiny_crashchat.prompt("Q2?", [("Q1?", "A1.")]) == (
        "<|im_start|>user\n<|video_pad|>\nQ1?<|im_end|>\n<|im_start|>assistant\nA1.<|im_end|>\n"
        "<|im_start|>user\nQ2?<|im_end|>\n<|im_start|>assistant\n")


def test_prepared_clip_carries_timestamps(tiny_crashchat, clip):
    prepared = tiny_crashchat.prepare(clip)
    assert prepared.placeholder.startswith("Time 0.0s:<|video_pad|>")
    assert f"Time {clip.timestamps[-1]:.1f}s:" in prepared.placeholder
    assert tiny_crashchat.prepare(prepared) is prepared


def test_session_answers_equal_plain_generate(tiny_crashchat, clip):
    prompts = [t.prompt for t in TASKS[:3]]
    with tiny_crashchat.session(clip, group="linguistic") as ask:
        shared = [ask(p, max_new_tokens=12) for p in prompts]
    plain = [tiny_crashchat.generate(clip, p, group="linguistic", max_new_tokens=12) for p in prompts]
    assert shared == plain and all(isinstance(a, str) for a in shared)


def test_a_session_answers_on_its_group_after_a_nested_call_on_the_other(tiny_crashchat, clip):
    # The chat asks the other group in the middle of a session (same thread, so the lock lets it
    # in): the session must switch its adapter back, or it answers with the other group's LoRA.
    question = "Describe the crash."
    own = tiny_crashchat.generate(clip, question, group="linguistic", max_new_tokens=12)
    other = tiny_crashchat.generate(clip, question, group="perception", max_new_tokens=12)
    assert own != other  # the two random adapters answer differently, so a wrong switch shows
    with tiny_crashchat.session(clip, group="linguistic") as ask:
        assert tiny_crashchat.generate(clip, question, group="perception", max_new_tokens=12) == other
        assert ask(question, max_new_tokens=12) == own
        tiny_crashchat.generate(clip, question, group="perception", max_new_tokens=1)
        assert ask.batch([question, question], max_new_tokens=12) == [own, own]


def test_stream_yields_the_generated_text(tiny_crashchat, clip):
    chunks = list(tiny_crashchat.stream(clip, "Why?", group="perception", max_new_tokens=10))
    assert chunks and "".join(chunks).strip() == tiny_crashchat.generate(clip, "Why?", group="perception", max_new_tokens=10)


def test_history_changes_the_prompt_tokens(tiny_crashchat, clip):
    prepared = tiny_crashchat.prepare(clip)
    one = tiny_crashchat.inputs(prepared, "Why?")["input_ids"]
    two = tiny_crashchat.inputs(prepared, "Why?", [("What?", "A crash.")])["input_ids"]
    assert two.shape[1] > one.shape[1]
    assert (one == tiny_crashchat.model.config.video_token_id).sum() == (two == tiny_crashchat.model.config.video_token_id).sum()


def test_offline_machine_gets_one_line(tmp_path, crash_clip, monkeypatch, capsys):
    import huggingface_hub.constants as hub

    from crashchat import analysis

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)  # the same refusal a machine without network gets
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert analysis.main([str(crash_clip), "--cache-dir", str(tmp_path / "cc")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot fetch KDliang/crashchat from the Hugging Face Hub"), lines
    assert "--base/--linguistic/--perception" in lines[0]
