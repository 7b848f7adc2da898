"""Format-guided decoding: every guided answer parses and lies within the clip, for random models."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crashchat.guided import GUIDED_KINDS, GuidedAnswer, answer_complete, answer_prefix_ok
from crashchat.tasks import TASKS, get_task
from crashchat.tiny import tiny_tokenizer

KIND_TASK = {t.kind: t for t in TASKS if t.kind in GUIDED_KINDS}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def _within(kind: str, parsed, duration: float) -> bool:
    if kind == "yes_no":
        return parsed in ("Yes", "No")
    if kind == "time":
        return 0.0 <= parsed <= duration
    start, end = parsed
    return 0.0 <= start < end <= duration


@pytest.mark.parametrize("kind", GUIDED_KINDS)
@settings(max_examples=60, deadline=None)
@given(duration=st.floats(min_value=0.2, max_value=120.0), seed=st.integers(0, 10**6))
def test_any_walk_through_the_allowed_tokens_ends_in_a_parseable_answer(tokenizer, kind, duration, seed):
    """No dead ends: whatever allowed token is picked, the answer can always be finished."""
    rng = random.Random(seed)
    guide = GuidedAnswer(kind, tokenizer, duration=duration, end_ids=[tokenizer.eos_token_id])
    text = ""
    for _ in range(40):
        allowed = guide.allowed(text)
        assert allowed, f"dead end after {text!r}"
        if tokenizer.eos_token_id in allowed and (rng.random() < 0.3 or len(allowed) == 1):
            break
        choice = rng.choice([i for i in allowed if i != tokenizer.eos_token_id])
        text += tokenizer.decode([choice])
    else:
        # the walk ran long: finish greedily along the shortest completion
        while tokenizer.eos_token_id not in guide.allowed(text):
            text += tokenizer.decode([min(guide.allowed(text))])
    assert answer_complete(kind, text, duration), text
    parsed = KIND_TASK[kind].parse(text)
    assert parsed is not None and _within(kind, parsed, duration), (text, parsed)


@pytest.mark.parametrize("text, ok", [
    ("", True), ("Y", True), ("Yes", True), ("Yes.", False), ("Nope", False),
])
def test_yes_no_prefixes(text, ok):
    assert answer_prefix_ok("yes_no", text, 5.0) is ok


@pytest.mark.parametrize("kind, text, ok", [
    ("time", "4.5 seconds", True), ("time", "5.1 seconds", False), ("time", "05 seconds", False),
    ("time", "4.55", False), ("time", "4.5 sec", True), ("time", "4.5 s ", False), ("time", "12", False),
    ("time_range", "1 - 2 seconds", True), ("time_range", "2 - 2 seconds", False), ("time_range", "5 -", False),
    ("time_range", "4.9 - 5", True), ("time_range", "1 - 0.5", False),
])
def test_time_prefixes_respect_the_clip(kind, text, ok):
    assert answer_prefix_ok(kind, text, 5.0) is ok


def test_guided_answers_parse_for_random_models_on_every_task(crash_clip, monkeypatch):
    """The tiny model with several seeds, every closed-form task: guided answers always parse."""
    import crashchat.tiny as tiny
    from crashchat.loading import ModelConfig, load_model
    from crashchat.pipeline import answer
    from crashchat.video import load_video

    clip = load_video(crash_clip)
    questions = [(t.id, t.prompt) for t in TASKS if t.kind in GUIDED_KINDS]
    build = tiny.build_tiny_random
    for seed in (0, 1, 2, tiny.SEED):
        monkeypatch.setattr(tiny, "build_tiny_random", lambda seed=seed: build(seed))
        model = load_model(ModelConfig(name="tiny-random", device="cpu"))
        for task_id, result in answer(model, clip, questions, gate=False, guided=True, max_new_tokens=24):
            task = get_task(task_id)
            assert result["parsed"] is not None, (seed, task_id, result["response"])
            parsed = tuple(result["parsed"]) if task.kind == "time_range" else result["parsed"]
            assert _within(task.kind, parsed, clip.duration_s), (seed, task_id, result["response"])


def test_guided_leaves_a_well_formed_greedy_answer_alone(tokenizer):
    """Among allowed tokens the model's ranking decides: a logit favouring an allowed token wins."""
    import torch

    guide = GuidedAnswer("yes_no", tokenizer, duration=3.0, end_ids=[tokenizer.eos_token_id])
    prompt = torch.tensor([[1, 5, 6]])
    scores = torch.zeros(1, len(tokenizer))
    yes = tokenizer("Yes")["input_ids"][0]
    scores[0, yes] = 5.0
    scores[0, 7] = 9.0  # an arbitrary token the format forbids
    out = guide(prompt, scores)
    assert int(out.argmax()) == yes
    assert torch.isinf(out[0, 7])
