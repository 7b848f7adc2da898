"""What happens on each event of the tab: an upload, Analyze, a question, a task button, clearing
the chat, and the `/analyze` API.

Plain generator functions yielding `View`s, with no Gradio in them: `crashchat.chat.layout` wires
them to components, and the tests drive the same functions with the tiny random model.
Every request stops at the configured time limit with a message saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from crashchat.chat.config import TIME_LIMIT_ENV, TabConfig
from crashchat.chat.display import (
    UNDECODABLE_NOTE,
    blocked_message,
    clip_summary,
    empty_sections,
    has_undecodable,
    literal,
    model_status,
    report_figure,
    section_markdown,
    verdict_markdown,
    write_downloads,
)
from crashchat.chat.resources import (
    BROWSER_PLAYABLE,
    free_gpu_memory,
    get_model,
    loaded_model,
    missing_model_packages,
    open_clip,
    out_of_memory,
    video_codec,
)
from crashchat.chat.state import KEEP, BrowserSession, View
from crashchat.moments import Mark, answer_times, key_frames, report_marks
from crashchat.tasks import TASK_IDS, get_task

if TYPE_CHECKING:
    from crashchat.model import CrashChat
    from crashchat.video import Clip

CHAT_TURNS_KEPT = 8  # earlier turns are dropped from the model's context (each re-reads the video)
MAX_QUESTION_CHARS = 2000
"""A typed question's length limit (the question box says it): a longer one is refused before it
reaches the model (a 100,000-character question once held the one model queue for 98 s)."""
OUT_OF_MEMORY = "The GPU ran out of memory on this clip; try a shorter or lower-resolution clip."


class TimeLimitExceeded(RuntimeError):
    pass


class Deadline:
    """The per-request time limit; `check()` raises once it has passed."""

    def __init__(self, limit_s: float):
        self.limit_s = limit_s
        self.start = time.monotonic()

    def check(self) -> None:
        if time.monotonic() - self.start > self.limit_s:
            raise TimeLimitExceeded(
                f"Stopped: this request ran past the {self.limit_s:g} s time limit ({TIME_LIMIT_ENV}). "
                "Try a shorter clip, or ask the app's owner to raise the limit.")


def _no_progress(fraction: float, desc: str | None = None) -> None:
    pass


# --- upload ------------------------------------------------------------------------------------------


def upload_view(cfg: TabConfig, path: str | None) -> View:
    """A new (or cleared) video: check it at once, reset the report and the conversation.

    A file that cannot be used gets one message, in the status line; it never reaches the
    preview player (whose own error would be a second, vaguer one).
    """
    from crashchat.video import SUPPORTED_SUFFIXES, VideoError

    session = BrowserSession(video=None)
    blocked = blocked_message(cfg) is not None
    view = View(preview=None, verdict="", timeline=None, frames=[], sections=empty_sections("off" if blocked else "waiting"),
                raw=None, json_file=None, md_file=None, chat=[], session=session, model_status=model_status(cfg))
    missing = missing_model_packages()
    if missing:  # nothing here can decode a video either: the status line above says why
        view.status = "Uploads are off: the model packages are not installed (see above)."
        return view
    if not path:
        view.status = f"Upload a video ({', '.join(s[1:] for s in SUPPORTED_SUFFIXES)}) or pick a synthetic example."
        return view
    try:
        clip = open_clip(path, cfg)
    except VideoError as exc:
        view.status = f"**Cannot use this file.** {exc}"
        view.error = f"Cannot use this file. {exc}"
        return view
    session.video = path
    if not blocked:
        view.status = f"Ready: {clip_summary(clip)}. Click **Analyze**, or ask a question below."
    else:  # Analyze and chat are off: say what can be done instead, not what cannot
        view.status = (f"Readable: {clip_summary(clip)}. Analysis and chat need a GPU, which this machine "
                       "lacks (see the note at the top); to try the pipeline here, restart the app with "
                       "`CRASHCHAT_MODEL=tiny-random python app.py`.")
    for note in clip.notes:
        view.status += f"\n\nNote: {note}"
    codec = video_codec(path)
    if (Path(path).suffix.lower(), codec) in BROWSER_PLAYABLE:
        view.preview = path
    else:
        view.status += (f"\n\nNo preview: browsers do not play {codec or 'this codec'} in "
                        f"{Path(path).suffix.lower()} files. The model reads it all the same.")
    view.timeline = report_figure(clip.duration_s, None, [], clip.timestamps)
    return view


# --- model requests ------------------------------------------------------------------------------------


def _start(cfg: TabConfig, session: BrowserSession, progress) -> Iterator[View | tuple[Clip, CrashChat]]:
    """Shared first steps of a model request: video check, GPU check, lazy model load.

    Yields Views to show, and finally `(clip, model)`; a View with an error ends the request.
    """
    from crashchat.video import VideoError
    from crashchat.weights import ModelLoadError

    if not session.video:
        message = "Upload a video first (or pick a synthetic example)."
        yield View(status=message, error=message)
        return
    blocked = blocked_message(cfg)
    if blocked is not None:
        yield View(status=blocked, model_status=blocked, error=blocked)
        return
    try:
        clip = open_clip(session.video, cfg)
    except VideoError as exc:
        yield View(status=f"**Cannot use this file.** {exc}", error=f"Cannot use this file. {exc}")
        return
    if loaded_model(cfg.model) is None:
        yield View(model_status=f"**Loading the model `{cfg.model}` (first use)…**")
        progress(0.05, desc=f"Loading {cfg.model} (first use)")
    try:
        model = get_model(cfg.model)
    except ModelLoadError as exc:
        yield View(status=f"**The model could not be loaded.** {exc}", model_status=model_status(cfg),
                   error=f"The model could not be loaded. {exc}")
        return
    yield clip, model


def analysis_views(cfg: TabConfig, session: BrowserSession, progress: Callable = _no_progress) -> Iterator[View]:
    """Analyze: the six tasks, shown task by task as each answer arrives; then the downloads."""
    from crashchat.pipeline import analyze, task_order
    from crashchat.report import build_report

    deadline = Deadline(cfg.time_limit_s)
    started = None
    for item in _start(cfg, session, progress):
        if isinstance(item, View):
            yield item
        else:
            started = item
    if started is None:
        return
    clip, model = started
    order = task_order(TASK_IDS)
    results: dict[str, dict] = {}
    sections = empty_sections()
    sections[order[0]] = section_markdown(order[0], None, "running")
    session = replace(session, report=None)  # chat marks stay: the conversation goes on
    yield View(model_status=model_status(cfg), status=f"Analyzing {clip_summary(clip)}…", verdict="",
               sections=dict(sections),
               timeline=report_figure(clip.duration_s, None, session.chat_marks, clip.timestamps),
               frames=[], raw=None, json_file=None, md_file=None, session=session)
    try:
        for task_id, result in analyze(model, clip, TASK_IDS, **cfg.generation()):
            results[task_id] = result
            sections[task_id] = section_markdown(task_id, result, guided=cfg.guided)
            pending = [t for t in order if t not in results]
            if pending:
                sections[pending[0]] = section_markdown(pending[0], None, "running")
            progress(len(results) / len(order), desc=f"{len(results)}/{len(order)} tasks")
            partial = build_report(clip, model, results, cfg.generation())
            yield View(status=f"Analyzing {clip_summary(clip)}… {len(results)}/{len(order)} tasks done",
                       verdict=verdict_markdown(partial["crash_detected"], model.random_weights, bool(pending))
                       if "crash_recognition" in results else KEEP,
                       sections=dict(sections), raw=partial["tasks"],
                       timeline=report_figure(clip.duration_s, partial, session.chat_marks, clip.timestamps)
                       if get_task(task_id).group == "perception" else KEEP)
            deadline.check()
    except TimeLimitExceeded as exc:
        yield View(status=f"**{exc}** The answers so far are shown.", error=str(exc))
        return
    except out_of_memory():
        free_gpu_memory()
        yield View(status=f"**{OUT_OF_MEMORY}** The answers so far are shown.", error=OUT_OF_MEMORY)
        return
    report = build_report(clip, model, results, cfg.generation())
    session = replace(session, report=report)
    json_path, md_path = write_downloads(report)
    took = f" in {report['wall_s']:.1f} s" if report["wall_s"] is not None else ""  # wall time, never summed
    yield View(status=f"Done: {clip_summary(clip)}; six tasks{took}.",
               verdict=verdict_markdown(report["crash_detected"], model.random_weights),
               timeline=report_figure(clip.duration_s, report, session.chat_marks, clip.timestamps),
               frames=key_frames(clip.frames, clip.timestamps, report_marks(report), clip.duration_s),
               raw=report["tasks"], json_file=json_path, md_file=md_path, session=session)


def chat_views(cfg: TabConfig, question: str, session: BrowserSession, *, task: str | None = None,
               progress: Callable = _no_progress) -> Iterator[View]:
    """One chat turn, the answer streamed token by token.

    A typed question is sent as typed, on the group `crashchat.routing.route` picks. A task
    button (`task`, a task id) asks that task as the authors' evaluation does (`Task.question`,
    `<video>\\n` included) on its own group, and the chat shows the readable prompt; recognition
    and the localizations are format-guided when `cfg.guided`. Answers from the perception
    adapter that name a time are drawn on the timeline.
    """
    from crashchat.guided import guided_options
    from crashchat.routing import route

    if task is not None:
        spec = get_task(task)
        asked, shown, group = spec.question, f"**{spec.title}**: {spec.prompt}", spec.group
    else:
        asked = (question or "").strip()
        shown, group = literal(asked), None
    if not asked:
        return
    if len(asked) > MAX_QUESTION_CHARS:  # before routing, the model, anything that costs
        message = (f"Questions are limited to {MAX_QUESTION_CHARS:,} characters; this one has {len(asked):,}. "
                   "Nothing was sent to the model.")
        chat = list(session.messages) + [{"role": "assistant", "content": f"**{message}**"}]
        yield View(chat=chat, session=replace(session, messages=chat), error=message)
        return
    if group is None:
        group = route(asked)
    messages = list(session.messages) + [{"role": "user", "content": shown}]
    session = replace(session, messages=messages)

    def say(text: str) -> View:
        session.messages = messages + [{"role": "assistant", "content": text}]
        return View(chat=list(session.messages), session=session)

    started = None
    for item in _start(cfg, session, progress):
        if isinstance(item, View):
            if item.status is not KEEP:
                yield replace(say(item.status), model_status=item.model_status, error=item.error)
            else:
                yield replace(say("_loading the model…_"), model_status=item.model_status)
        else:
            started = item
    if started is None:
        return
    clip, model = started
    options = {}
    if task is not None and cfg.guided:
        options = guided_options(spec.kind, model.tokenizer, duration=clip.duration_s, end_ids=model.stop_ids)
    deadline = Deadline(cfg.time_limit_s)
    answer = ""
    yield replace(say("…"), model_status=model_status(cfg))
    try:
        for chunk in model.stream(clip, asked, group=group, history=session.turns[-CHAT_TURNS_KEPT:],
                                  max_new_tokens=cfg.max_new_tokens, **options):
            answer += chunk
            yield say(literal(answer))
            deadline.check()
    except TimeLimitExceeded as exc:
        yield replace(say(f"{literal(answer)}\n\n**{exc}**"), error=str(exc))
        return
    except out_of_memory():
        free_gpu_memory()
        yield replace(say(f"{literal(answer)}\n\n**{OUT_OF_MEMORY}**"), error=OUT_OF_MEMORY)
        return
    answer = answer.strip()
    how = ([f"{group} adapter"] + (["guided"] if options else []) + (["RANDOM WEIGHTS"] if model.random_weights else [])
           + ([UNDECODABLE_NOTE] if has_undecodable(answer) else []))
    view = say((literal(answer) or "_(empty answer)_") + f"\n\n<sub>{' · '.join(how)}</sub>")
    session.turns = session.turns + [(asked, answer)]
    mark = chat_mark(answer, group, len(session.turns))
    if mark is not None:
        session.chat_marks = session.chat_marks + [mark]
        view.timeline = report_figure(clip.duration_s, session.report, session.chat_marks, clip.timestamps)
    yield view


def chat_mark(answer: str, group: str, turn: int) -> Mark | None:
    """The time a perception answer names, as a mark labelled by its turn (`Q3`); else None.

    >>> chat_mark("It starts at 2.5 - 3 seconds.", "perception", 3)
    Mark(kind='chat', label='Q3', start=2.5, end=3.0)
    >>> chat_mark("The car was speeding at 50 km/h.", "linguistic", 1) is None
    True
    """
    times = answer_times(answer) if group == "perception" else None
    return None if times is None else Mark("chat", f"Q{turn}", times[0], times[1])


def clear_chat_view(cfg: TabConfig, session: BrowserSession) -> View:
    """The chat's clear button: forget the conversation and its timeline marks, keep the report."""
    session = replace(session, turns=[], messages=[], chat_marks=[])
    view = View(chat=[], session=session)
    if session.video and Path(session.video).exists():
        from crashchat.video import VideoError

        try:
            clip = open_clip(session.video, cfg)
        except VideoError:  # already reported at upload; nothing to redraw
            return view
        view.timeline = report_figure(clip.duration_s, session.report, [], clip.timestamps)
    return view


def analyze_report(cfg: TabConfig, video: str | None) -> dict:
    """The `/analyze` API: a video file in, the report JSON out (as `analyze --json` writes it).

    Raises `ValueError` with a readable message for a bad video, no GPU, or a model that cannot load.
    """
    from crashchat.pipeline import analyze
    from crashchat.report import build_report

    started = None
    for item in _start(cfg, BrowserSession(video=video), _no_progress):
        if isinstance(item, View):
            if item.error:
                raise ValueError(item.error.replace("**", ""))
        else:
            started = item
    clip, model = started
    deadline = Deadline(cfg.time_limit_s)
    results = {}
    for task_id, result in analyze(model, clip, TASK_IDS, **cfg.generation()):
        results[task_id] = result
        deadline.check()
    return build_report(clip, model, results, cfg.generation())
