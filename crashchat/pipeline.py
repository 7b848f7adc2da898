"""Answering a clip's questions, group by group: one pipeline for `analyze`, the app and `predict`.

Each question runs on its task's group adapter (`crashchat.tasks`). The clip is prepared once and
each group's questions share one prefill of the video (`CrashChat.session`). With `gate=True`, as
in the paper's conditional refinement, crash recognition runs first and the perception (temporal
localization) questions run only when it answers Yes; otherwise they are reported as skipped.
`predict` runs ungated: the benchmark scores every task on its own records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from crashchat.guided import guided_rows
from crashchat.stopping import RepetitionStop, repetition_options
from crashchat.tasks import GROUPS, TASK_IDS, get_task

if TYPE_CHECKING:
    from crashchat.model import CrashChat

RECOGNITION = "crash_recognition"
clock: Callable[[], float] = time.perf_counter
"""Where answer times come from (seconds; a seam for tests, which replace it with a fake clock)."""


def task_order(tasks: Sequence[str]) -> list[str]:
    """Recognition first (it gates the rest), then one group after the other (one adapter switch).

    Perception tasks always bring recognition with them: without it the gate cannot decide.

    >>> task_order(["crash_localization", "crash_description"])
    ['crash_recognition', 'crash_description', 'crash_localization']
    """
    wanted = [get_task(t).id for t in tasks]
    if any(get_task(t).group == "perception" for t in wanted) and RECOGNITION not in wanted:
        wanted.append(RECOGNITION)
    ordered = [RECOGNITION] if RECOGNITION in wanted else []
    for group in GROUPS:
        ordered += [t for t in TASK_IDS if t in wanted and t not in ordered and get_task(t).group == group]
    return ordered


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


def skipped(group: str, elapsed_s: float = 0.0) -> dict:
    return {"group": group, "response": None, "parsed": None, "skipped": True, "seconds": 0.0, "stopped": None,
            "elapsed_s": elapsed_s}


def wall_seconds(results) -> float | None:
    """The wall time of an analysis: when its last answer was ready (`elapsed_s`), not the sum of
    the answers' `seconds` (questions decoded together share their batch's seconds)."""
    times = [r["elapsed_s"] for r in results if r.get("elapsed_s") is not None]
    return max(times) if times else None


def answer(model: CrashChat, clip, questions: Sequence[tuple[str, str]], *, gate: bool,
           max_new_tokens: int = 256, guided: bool = False, repetition_stop: bool = True, batch: bool = True,
           generate_options: Callable[[str], dict] | None = None) -> Iterator[tuple[str, dict]]:
    """Answer `(task_id, question)` pairs about one clip, yielding `(task_id, result)` as each finishes.

    Groups run in `GROUPS` order (linguistic first: recognition, which gates perception, is
    linguistic), questions within a group in the order given. `result` is `{"group", "response",
    "parsed", "skipped", "seconds", "elapsed_s", "stopped"}`. With `batch` (the default, for models
    whose session can) a group's questions are decoded together from the shared video prefix, and
    each result's `seconds` is its batch's (so seconds must not be summed over answers); one by
    one, a group's first answer's seconds include the shared prefill. `elapsed_s` is the wall time
    from the call (the clip's preparation included) until that answer was ready, so the last
    answer's is the analysis's wall time (`wall_seconds`). `guided=True` constrains the closed-form answers to their format
    (`crashchat.guided`); `repetition_stop` ends an answer stuck in an exact loop
    (`crashchat.stopping`), and its result then says `"stopped": "repetition"`.
    `generate_options(task_id)` may add `generate` arguments per task (timing, fixed lengths);
    in a batch they are merged for the whole batch.
    """
    for _, task_id, result in answer_clips(model, [clip], [questions], gate=gate, max_new_tokens=max_new_tokens,
                                           guided=guided, repetition_stop=repetition_stop, batch=batch,
                                           generate_options=generate_options):
        yield task_id, result


def answer_clips(model: CrashChat, clips: Sequence, questions: Sequence[Sequence[tuple[str, str]]], *, gate: bool,
                 max_new_tokens: int = 256, guided: bool = False, repetition_stop: bool = True, batch: bool = True,
                 generate_options: Callable[[str], dict] | None = None) -> Iterator[tuple[int, str, dict]]:
    """`answer` for several clips at once: yields `(clip index, task_id, result)`.

    With `batch` and a model that has `sessions`, each group's questions about all the clips are
    decoded in one batch (`predict --batch-videos`); otherwise clip after clip. Answers are the
    same either way (greedy).
    """
    began = clock()

    def elapsed() -> float:
        return round(clock() - began, 3)

    prepared = [model.prepare(c) for c in clips]
    crash: dict[int, object] = {}
    together = batch and hasattr(model, "sessions")
    for group in GROUPS:
        rows = [(i, t, q) for i, qs in enumerate(questions) for t, q in qs if get_task(t).group == group]
        asked = []
        for i, task_id, question in rows:
            if group == "perception" and gate and crash.get(i) != "Yes":
                yield i, task_id, skipped(group, elapsed())
            else:
                asked.append((i, task_id, question))
        if not asked:
            continue
        if together:
            runs = [asked]
        else:
            runs = [[row] for row in asked]
        for run in runs:
            for i, task_id, result in _answer_run(model, prepared, group, run, max_new_tokens=max_new_tokens,
                                                  guided=guided, repetition_stop=repetition_stop,
                                                  generate_options=generate_options):
                if task_id == RECOGNITION:
                    crash[i] = result["parsed"]
                yield i, task_id, {**result, "elapsed_s": elapsed()}


def _answer_run(model, prepared: Sequence, group: str, run: Sequence[tuple[int, str, str]], *, max_new_tokens: int,
                guided: bool, repetition_stop: bool, generate_options) -> Iterator[tuple[int, str, dict]]:
    """One batch (or one question) of `run`'s rows on `group`, with per-row guidance and loop guard."""
    start = clock()
    options = {"max_new_tokens": max_new_tokens}
    if guided:
        rows = [(get_task(t).kind, float(prepared[i].clip.duration_s)) for i, t, _ in run]
        options.update(guided_rows(rows, model.tokenizer, end_ids=model.stop_ids))
    guard = RepetitionStop() if repetition_stop else None
    if guard is not None:
        options.update(repetition_options(guard))
    for _, task_id, _ in run:
        options.update(generate_options(task_id) if generate_options else {})
    clip_ids = sorted({i for i, _, _ in run})
    if len(run) == 1 and not hasattr(model, "sessions"):
        with model.session(prepared[run[0][0]], group=group) as ask:
            texts = [ask(run[0][2], **options)]
    else:
        with model.sessions([prepared[i] for i in clip_ids], group=group) as ask:
            where = {i: n for n, i in enumerate(clip_ids)}
            texts = ask.batch([q for _, _, q in run], clips=[where[i] for i, _, _ in run], **options)
    seconds = round(clock() - start, 3)
    for row, ((i, task_id, _), response) in enumerate(zip(run, texts, strict=True)):
        yield i, task_id, {"group": group, "response": response, "parsed": _jsonable(get_task(task_id).parse(response)),
                           "skipped": False, "seconds": seconds,
                           "stopped": "repetition" if guard is not None and row in guard.rows else None}


def analyze(model: CrashChat, clip, tasks: Sequence[str] = TASK_IDS, *, max_new_tokens: int = 256,
            gate: bool = True, guided: bool = False, repetition_stop: bool = True, batch: bool = True,
            generate_options: Callable[[str], dict] | None = None) -> Iterator[tuple[str, dict]]:
    """The six-task report's answers for one clip, gated; each task asked as the authors' evaluation
    asks it (`Task.question`: the split's value, `<video>\n` included)."""
    questions = [(t, get_task(t).question) for t in task_order(tasks)]
    yield from answer(model, clip, questions, gate=gate, max_new_tokens=max_new_tokens, guided=guided,
                      repetition_stop=repetition_stop, batch=batch, generate_options=generate_options)
