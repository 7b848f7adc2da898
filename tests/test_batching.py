"""The fast paths give byte-identical answers: one vision pass per clip, batched answers per group."""

from __future__ import annotations

import pytest

from crashchat.pipeline import answer
from crashchat.tasks import TASKS


@pytest.fixture(scope="module")
def clip(crash_clip):
    from crashchat.video import load_video

    return load_video(crash_clip)


QUESTIONS = [(t.id, t.question) for t in TASKS]


def _plain(model, clip, task, max_new_tokens, **kwargs) -> str:
    """The slow reference: one full `generate` per question (processor, vision, prefill, decode)."""
    return model.generate(clip, task.question, group=task.group, max_new_tokens=max_new_tokens, **kwargs)


@pytest.mark.parametrize("guided", [False, True])
def test_batched_answers_equal_one_by_one_generate(tiny_crashchat, clip, guided, one_thread):
    batched = dict(answer(tiny_crashchat, clip, QUESTIONS, gate=False, guided=guided, max_new_tokens=12))
    single = dict(answer(tiny_crashchat, clip, QUESTIONS, gate=False, guided=guided, max_new_tokens=12, batch=False))
    assert {t: r["response"] for t, r in batched.items()} == {t: r["response"] for t, r in single.items()}
    if not guided:
        for task in TASKS:
            assert batched[task.id]["response"] == _plain(tiny_crashchat, clip, task, 12), task.id


def test_rows_stop_at_their_own_end(tiny_crashchat, clip, one_thread):
    """Different answer lengths in one batch: guided closed forms end early, free text runs on."""
    results = dict(answer(tiny_crashchat, clip, QUESTIONS, gate=False, guided=True, max_new_tokens=20))
    assert results["crash_recognition"]["response"] in ("Yes", "No")
    assert len(results["crash_description"]["response"]) > len(results["crash_recognition"]["response"])


def test_the_vision_encoder_runs_once_per_clip(tiny_crashchat, clip, monkeypatch, one_thread):
    vision = tiny_crashchat._inner().vision_model
    calls = []
    real = vision.forward
    monkeypatch.setattr(vision, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    prepared = tiny_crashchat.prepare(clip)
    dict(answer(tiny_crashchat, prepared, QUESTIONS, gate=False, max_new_tokens=2))
    assert len(calls) == 1  # two groups, six questions, one vision pass
    dict(answer(tiny_crashchat, prepared, QUESTIONS, gate=False, max_new_tokens=2))
    assert len(calls) == 1  # kept on the prepared clip


def test_each_group_applies_its_own_projector_to_the_shared_states(tiny_crashchat, clip):
    """The prefix cache built from the shared vision states equals a full forward on that group."""
    import torch

    for group in ("linguistic", "perception"):
        with tiny_crashchat.session(clip, group=group) as ask:
            ids = ask.prefix_ids
            shared = ask.cache
        inputs = tiny_crashchat.inputs(tiny_crashchat.prepare(clip), "")
        with tiny_crashchat.using(group), torch.inference_mode():
            full = tiny_crashchat._inner()(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True,
                                           **{k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")})
        reference = full["cache"] if "cache" in full else full["past_key_values"]
        for layer in range(len(reference.layers)):
            assert torch.allclose(shared.layers[layer].keys, reference.layers[layer].keys, atol=1e-5), (group, layer)


def test_the_static_cache_path_gives_the_same_answers(tiny_crashchat, clip, monkeypatch, one_thread):
    """The static-cache decode that CUDA compiles: on the CPU it runs eagerly, and must agree exactly."""
    dynamic = dict(answer(tiny_crashchat, clip, QUESTIONS, gate=False, guided=True, max_new_tokens=10))
    monkeypatch.setattr(tiny_crashchat, "static_cache", True)
    static = dict(answer(tiny_crashchat, clip, QUESTIONS, gate=False, guided=True, max_new_tokens=10))
    assert {t: r["response"] for t, r in static.items()} == {t: r["response"] for t, r in dynamic.items()}


def test_static_cache_is_off_on_cpu_and_zero_gpu(tiny_crashchat, monkeypatch):
    assert tiny_crashchat.static_cache is None and not tiny_crashchat.uses_static_cache()  # CPU
    monkeypatch.setattr(tiny_crashchat, "device", "cuda")
    assert tiny_crashchat.uses_static_cache()
    monkeypatch.setenv("SPACES_ZERO_GPU", "1")
    assert not tiny_crashchat.uses_static_cache()
    monkeypatch.delenv("SPACES_ZERO_GPU")
    monkeypatch.setenv("CRASHCHAT_STATIC_CACHE", "0")
    assert not tiny_crashchat.uses_static_cache()
    monkeypatch.setenv("CRASHCHAT_STATIC_CACHE", "off")  # the usual words work; before, only 0/false/no did
    assert not tiny_crashchat.uses_static_cache()
    monkeypatch.setenv("CRASHCHAT_STATIC_CACHE", "1")
    assert tiny_crashchat.uses_static_cache()
