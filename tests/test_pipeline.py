"""The pipeline `analyze` and `predict` share: every task answered on its group's adapter (LoRA
layers and projector copy both), each group's questions sharing one prefill of the video.

The tiny model's two random adapters answer differently, so "on the right adapter" is checked
twice: by what the model answers (equal to that group asked alone, unlike the other group) and by
what peft says is active at each `generate`.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from mini_split import VIDEOS, expected_rows
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.utils import ModulesToSaveWrapper

from crashchat import predict
from crashchat.pipeline import analyze
from crashchat.tasks import GROUPS, TASK_IDS, TASKS, get_task
from crashchat.video import load_video

TOKENS = 6  # enough for the two random adapters' answers to differ on every task


@pytest.fixture(scope="module")
def clip(crash_clip):
    return load_video(crash_clip, max_frames=4)


def other(group: str) -> str:
    return next(g for g in GROUPS if g != group)


def active(peft_model) -> tuple[set[str], set[str]]:
    """The adapters peft's layers say are active: (LoRA layers, projector copies)."""
    lora = {a for m in peft_model.modules() if isinstance(m, LoraLayer) for a in m.active_adapters}
    projector = {m.active_adapter for m in peft_model.modules() if isinstance(m, ModulesToSaveWrapper)}
    return lora, projector


@pytest.fixture
def generations(monkeypatch, tiny_crashchat):
    """Every question a CrashChat peft model generates for (one per row of a batch), as
    (task id, active LoRA adapters, active projector adapters) at that moment."""
    calls = []
    real = PeftModel.generate
    tokenizer = tiny_crashchat.tokenizer

    def spy(self, *args, **kwargs):
        for row in kwargs["input_ids"]:
            text = tokenizer.decode(row)
            tasks = [t.id for t in TASKS if t.prompt in text]
            assert len(tasks) == 1, text
            calls.append((tasks[0], *active(self)))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PeftModel, "generate", spy)
    return calls


@pytest.fixture
def prefills(monkeypatch, tiny_crashchat):
    """Each time the language model starts from an empty cache, i.e. reads a prompt's video
    tokens afresh; the token count it read. Continuing from a cache is not counted."""
    calls = []
    language_model = type(tiny_crashchat.model.get_base_model().model.language_model)
    real = language_model.forward

    def spy(self, *args, **kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is None or cache.get_seq_length() == 0:
            tokens = kwargs["inputs_embeds"] if kwargs.get("inputs_embeds") is not None else kwargs["input_ids"]
            calls.append(tokens.shape[1])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(language_model, "forward", spy)
    return calls


def alone(model, clip, question: str, group: str) -> str:
    """The answer of one group's adapter to one question, with nothing else asked in between."""
    return model.generate(clip, question, group=group, max_new_tokens=TOKENS)


def assert_answered_by_its_group(model, clip, task_id: str, response: str) -> None:
    group = get_task(task_id).group
    mine, theirs = alone(model, clip, get_task(task_id).question, group), \
        alone(model, clip, get_task(task_id).question, other(group))
    assert mine != theirs, f"{task_id}: both adapters answer {mine!r}; the test cannot tell them apart"
    assert response == mine, f"{task_id} was not answered by the {group} adapter: {response!r}, alone {mine!r}"


# -- routing ------------------------------------------------------------------------------------

def test_analyze_answers_every_task_on_its_groups_adapter(tiny_crashchat, clip, one_thread, generations):
    results = dict(analyze(tiny_crashchat, clip, gate=False, max_new_tokens=TOKENS, repetition_stop=False))
    assert set(results) == set(TASK_IDS)
    # what peft had active while each task's answer was generated
    asked = generations[:]
    assert sorted(t for t, _, _ in asked) == sorted(TASK_IDS)
    for task_id, lora, projector in asked:
        group = get_task(task_id).group
        assert (lora, projector) == ({group}, {group}), f"{task_id} ran on LoRA {lora}, projector {projector}"
    # and what each task answered: its group's answer, not the other's
    for task_id, result in results.items():
        assert result["group"] == get_task(task_id).group
        assert_answered_by_its_group(tiny_crashchat, clip, task_id, result["response"])


def test_predict_rows_come_from_each_tasks_group(tiny_crashchat, one_thread, tmp_path, generations, mini_split):
    """`predict` end to end: its output rows, answered through the same pipeline as `analyze`."""
    split, root = mini_split
    out = tmp_path / "sub.jsonl"
    assert predict.main(["--split-dir", str(split), "--videos-dir", str(root), "--out", str(out),
                         "--model", "tiny-random", "--device", "cpu", "--max-new-tokens", str(TOKENS),
                         "--no-repetition-stop", "--no-guided", "--max-frames", "4", "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(r["video"], r["task"]) for r in rows} == expected_rows()
    assert len(generations) == len(rows)
    for task_id, lora, projector in generations:
        group = get_task(task_id).group
        assert (lora, projector) == ({group}, {group}), f"{task_id} ran on LoRA {lora}, projector {projector}"
    clips = {name: load_video(root / "videos" / name, fps=10.0, max_frames=4) for name, _, state in VIDEOS
             if state == "ok"}
    for row in rows:
        assert_answered_by_its_group(tiny_crashchat, clips[row["video"]], row["task"], row["response"])


# -- the shared prefill --------------------------------------------------------------------------

def test_session_prefills_the_video_once_for_all_its_questions(tiny_crashchat, clip, one_thread, prefills):
    questions = [t.question for t in TASKS if t.group == "linguistic"]
    with tiny_crashchat.session(clip, group="linguistic") as ask:
        shared = [ask(q, max_new_tokens=TOKENS) for q in questions]
    assert len(prefills) == 1, f"the video was prefilled {len(prefills)} times for {len(questions)} questions"
    # the one prefill is the prefix alone (`<|im_start|>user\n<frames>\n`): every question came after it
    full = min(tiny_crashchat.inputs(tiny_crashchat.prepare(clip), q)["input_ids"].shape[1] for q in questions)
    assert prefills[0] < full
    # and sharing changes nothing in the answers (greedy)
    assert shared == [alone(tiny_crashchat, clip, q, "linguistic") for q in questions]


def test_analyze_and_predict_prefill_the_video_once_per_group(tiny_crashchat, clip, one_thread, prefills, tmp_path,
                                                              mini_split):
    list(analyze(tiny_crashchat, clip, gate=False, max_new_tokens=2))
    assert len(prefills) == len(GROUPS), f"analyze prefilled the video {len(prefills)} times for {len(GROUPS)} groups"
    del prefills[:]
    split, root = mini_split
    written, failed = predict.run(tiny_crashchat, predict.read_jobs(split, TASK_IDS), videos_dir=root,
                                  out=tmp_path / "sub.jsonl", shard=predict.Shard(), video_kwargs={"max_frames": 4},
                                  options={"max_new_tokens": 2}, progress=False)
    assert (written, failed) == (len(expected_rows()), 2)
    groups = {(video, get_task(task).group) for video, task in expected_rows()}  # normal clips: no perception
    assert len(prefills) == len(groups), f"predict prefilled {len(prefills)} times for {len(groups)} (video, group) pairs"


# -- LoRA and projector switch together ------------------------------------------------------------

@contextlib.contextmanager
def held(model, *, lora: str, projector: str):
    """The model with its LoRA layers on one adapter and its projector copy on another (peft directly)."""
    peft_model = model.model
    try:
        for m in peft_model.modules():
            if isinstance(m, LoraLayer):
                m.set_adapter(lora)
            elif isinstance(m, ModulesToSaveWrapper):
                m.set_adapter(projector)
        assert active(peft_model) == ({lora}, {projector})
        yield
    finally:
        peft_model.set_adapter(peft_model.active_adapter)  # consistent again, as peft last set it


def logits_held(model, clip, question: str, *, lora: str, projector: str) -> torch.Tensor:
    inputs = model.inputs(model.prepare(clip), question)
    with held(model, lora=lora, projector=projector), torch.inference_mode():
        return model.model(**inputs).logits[0, -1].float()


def logits_after_switch(model, clip, question: str, group: str) -> torch.Tensor:
    """`CrashChat.logits` on `group`, switching from the other group (LoRA and projector both there)."""
    model.model.set_adapter(other(group))
    return model.logits(clip, question, group=group)


QUESTION = get_task("crash_description").question


@pytest.mark.parametrize("group", GROUPS)
def test_switching_moves_the_projector(tiny_crashchat, clip, one_thread, group):
    """Fails if `set_adapter` switched the LoRA layers but left the projector on the other group
    (and only then: the LoRA layers are not looked at)."""
    stale_projector = logits_held(tiny_crashchat, clip, QUESTION, lora=group, projector=other(group))
    right = logits_held(tiny_crashchat, clip, QUESTION, lora=group, projector=group)
    assert not torch.allclose(stale_projector, right)  # the projector alone changes the logits
    switched = logits_after_switch(tiny_crashchat, clip, QUESTION, group)
    assert not torch.allclose(switched, stale_projector), "the projector copy was not switched"
    with tiny_crashchat.using(group):
        assert active(tiny_crashchat.model)[1] == {group}


@pytest.mark.parametrize("group", GROUPS)
def test_switching_moves_the_lora_layers(tiny_crashchat, clip, one_thread, group):
    """Fails if `set_adapter` switched the projector copy but left the LoRA layers on the other group
    (and only then: the projector is not looked at)."""
    stale_lora = logits_held(tiny_crashchat, clip, QUESTION, lora=other(group), projector=group)
    right = logits_held(tiny_crashchat, clip, QUESTION, lora=group, projector=group)
    assert not torch.allclose(stale_lora, right)  # the LoRA layers alone change the logits
    switched = logits_after_switch(tiny_crashchat, clip, QUESTION, group)
    assert not torch.allclose(switched, stale_lora), "the LoRA layers were not switched"
    with tiny_crashchat.using(group):
        assert active(tiny_crashchat.model)[0] == {group}


@pytest.mark.parametrize("group", GROUPS)
def test_switching_gives_exactly_that_groups_model(tiny_crashchat, clip, one_thread, group):
    """Both parts together: the logits of LoRA and projector both on `group`, whatever ran before."""
    right = logits_held(tiny_crashchat, clip, QUESTION, lora=group, projector=group)
    assert torch.equal(logits_after_switch(tiny_crashchat, clip, QUESTION, group), right)
