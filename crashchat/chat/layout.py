"""The chat tab's Gradio components and their wiring: `build()` lays the tab out inside the
caller's `gr.Blocks` (`app.py`). The only part of `crashchat.chat` that imports Gradio.

Read it top to bottom, as the page is: `build` calls one function per part of the page
(`_status_and_upload`, `_report`, `_task_sections`, `_downloads`, `_chat`), which return the
components in a `Tab`, then `_wire` connects them to `crashchat.chat.events`.

Each model request (Analyze, Send, a task button) runs as three steps: `lock` disables every
control at once (outside the queue, so a second click cannot slip in), the request itself runs in
the shared model queue (`concurrency_id="gpu"`, one job at a time; inside `spaces.GPU` on a
ZeroGPU Space, with a duration estimated from the clip and the tasks asked), and `unlock` enables
again what the session allows: the model controls only with a readable video and a machine that
can run the model. Before a request joins the queue, `admit` refuses it when its session already
has a model job running and one waiting (`MAX_JOBS_PER_SESSION`), or when a typed question is
over `MAX_QUESTION_CHARS`: the `/analyze` API and scripted clients are held to what the page allows.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from crashchat.chat.config import TabConfig
from crashchat.chat.display import blocked_message, model_status, raw_view, section_markdown
from crashchat.chat.events import (
    MAX_QUESTION_CHARS,
    OUT_OF_MEMORY,
    TimeLimitExceeded,
    analysis_views,
    analyze_report,
    chat_views,
    clear_chat_view,
    upload_view,
)
from crashchat.chat.resources import (
    clip_frames,
    example_clips,
    free_gpu_memory,
    get_model,
    missing_model_packages,
    out_of_memory,
)
from crashchat.chat.state import KEEP, BrowserSession, View
from crashchat.chat.zerogpu import analysis_batches, gpu, request_seconds, zero_gpu
from crashchat.tasks import TASK_IDS, TASKS

GPU_QUEUE = "gpu"  # concurrency id shared by every event that runs the model: one job per GPU
MAX_JOBS_PER_SESSION = 2
"""Model jobs one browser session (or one API client) may have in the queue: one running, one waiting."""
NO_MATH: list = []  # `latex_delimiters`: answers and questions are text; a `$` is a dollar

# Keeps the newest turn in view: when a question appears, the chat box scrolls down with the growing
# answer until the question reaches the top of the box, or, for a question taller than a third of
# the box (a task button's full prompt), until the answer starts a third of the way down; then it
# stays there, so the answer is read from its start. (Gradio's autoscroll, off here, follows the
# answer's end and pushes the question out of sight.) Scrolling by hand stops the following.
# It watches the whole page and looks the chat box up on each change: this script often runs before
# the chat box is on the page (4 of 8 page loads here), and an earlier version, which looked it up
# once at load, then never followed at all: the newest answers stayed below the box's fold.
KEEP_QUESTION_IN_VIEW = """
if (!window.ccFollowChat) {
  window.ccFollowChat = true;
  let asked = 0, following = false;
  const stop = event => { if (event.target.closest && event.target.closest('#cc-chat')) following = false; };
  document.addEventListener('wheel', stop, {passive: true});
  document.addEventListener('touchmove', stop, {passive: true});
  new MutationObserver(() => {
    const chat = document.getElementById('cc-chat');
    if (!chat) return;
    const rows = [...chat.querySelectorAll('.message-row')];
    const questions = rows.filter(row => row.classList.contains('user-row'));
    if (questions.length > asked) following = true;
    asked = questions.length;
    const box = chat.querySelector('.bubble-wrap');
    if (!following || !box || !questions.length) return;
    const question = questions[questions.length - 1], answer = rows[rows.indexOf(question) + 1];
    const top = box.getBoundingClientRect().top;
    let below = question.getBoundingClientRect().top - top - 8;
    if (answer) below = Math.max(below, answer.getBoundingClientRect().top - top - box.clientHeight / 3);
    if (below > 0) box.scrollTop += below;
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}
"""


def max_upload_bytes() -> int:
    """For `launch(max_file_size=...)`: Gradio refuses a bigger upload before it is even stored."""
    from crashchat.video import VideoLimits

    return VideoLimits().max_bytes


@dataclass
class Tab:
    """The tab's components, by what they show (`View` fields name the same things)."""

    session: Any
    model_status: Any
    upload: Any
    preview: Any
    timeline: Any
    status: Any
    analyze_btn: Any
    examples: Any
    verdict: Any
    frames: Any
    sections: dict
    raw: Any
    json_file: Any
    md_file: Any
    chat: Any
    task_btns: dict
    question: Any
    send_btn: Any

    def outputs(self) -> list:
        """What a `View` sets, in `VIEW_FIELDS` order, then the six sections."""
        return [getattr(self, name) for name in VIEW_FIELDS] + [self.sections[t] for t in TASK_IDS]

    def model_controls(self) -> list:
        return [self.analyze_btn, self.send_btn, self.question, *self.task_btns.values()]


VIEW_FIELDS = ("model_status", "status", "preview", "verdict", "timeline", "frames", "raw", "json_file", "md_file",
               "chat", "session")


def build(model: str | None = None, config: TabConfig | None = None) -> None:
    """Lay out the chat tab inside the current `gr.Blocks` and wire its events."""
    cfg = config or TabConfig.from_env(model)
    _load_at_startup_on_zero_gpu(cfg)
    blocked = blocked_message(cfg)
    parts = {"session": gr.State(BrowserSession()),
             "model_status": gr.Markdown(model_status(cfg), elem_id="cc-model-status")}
    with gr.Row():
        with gr.Column(scale=3):
            parts |= _upload_and_timeline(cfg)
        with gr.Column(scale=2):
            parts |= _verdict_and_key_frames()
    parts |= _task_sections("off" if blocked else "waiting")
    parts |= _downloads()
    parts |= _chat(blocked)
    _wire(cfg, Tab(**parts), blocked is not None)


# --- the page, top to bottom ------------------------------------------------------------------------


def _load_at_startup_on_zero_gpu(cfg: TabConfig) -> None:
    """ZeroGPU attaches a GPU only inside `spaces.GPU` calls, whose duration could not cover a
    download; it expects the weights moved to "cuda" at startup, outside those calls."""
    if not zero_gpu() or missing_model_packages():
        return
    from crashchat.weights import ModelLoadError

    try:
        get_model(cfg.model)
    except ModelLoadError as exc:  # the leaderboard tab stays up; each request says why
        print(f"chat tab: the model could not be loaded at startup: {exc}", file=sys.stderr)


def _upload_and_timeline(cfg: TabConfig) -> dict:
    """Left column: the upload box, its preview player, the timeline, the status line, Analyze and
    the example clips (none without the model packages: rendering them needs PyAV)."""
    no_packages = bool(missing_model_packages())
    # A file box, not a video player, takes the upload: a broken file never reaches a player.
    upload = gr.File(label="Dashcam video (mp4, mov, avi, mkv or webm)", file_count="single", height=110,
                     elem_id="cc-upload", interactive=not no_packages)
    parts = {
        "upload": upload,
        "preview": gr.Video(label="Preview", show_label=False, interactive=False, visible=False, height=300,
                            elem_id="cc-video"),
        "timeline": gr.Plot(label="Timeline", show_label=False, elem_id="cc-timeline", format="png"),
        "status": gr.Markdown(upload_view(cfg, None).status, elem_id="cc-upload-status"),
        "analyze_btn": gr.Button("Analyze", variant="primary", interactive=False, elem_id="cc-analyze"),
    }
    clips = [] if no_packages else example_clips(cfg)
    parts["examples"] = gr.Examples([[str(p)] for p in clips], inputs=[upload], visible=bool(clips),
                                    label="Synthetic example clips (rendered by crashchat.synthetic, not real footage)",
                                    example_labels=[p.stem.replace("_", " ") for p in clips] or None)
    return parts


def _verdict_and_key_frames() -> dict:
    """Right column: the verdict and the key frames."""
    verdict = gr.Markdown(elem_id="cc-verdict")
    # captions above, not component labels: a label badge sits on top of the content
    gr.Markdown("**Key frames** at the crash window and the pre-crash moment, when found")
    frames = gr.Gallery(label="Key frames", show_label=False, columns=3, height=220, elem_id="cc-keyframes")
    return {"verdict": verdict, "frames": frames}


def _task_sections(state: str) -> dict:
    """One section per task, in two rows of three, then the raw answers."""
    sections = {}
    for row in (TASK_IDS[:3], TASK_IDS[3:]):
        with gr.Row(equal_height=False):
            for task_id in row:
                sections[task_id] = gr.Markdown(section_markdown(task_id, None, state), elem_id=f"cc-section-{task_id}",
                                                latex_delimiters=NO_MATH)
    with gr.Accordion("Raw answers", open=False):
        raw = gr.JSON(elem_id="cc-raw")
    return {"sections": sections, "raw": raw}


def _downloads() -> dict:
    with gr.Row():
        return {"json_file": gr.DownloadButton("Download report (JSON)", visible=False, elem_id="cc-download-json"),
                "md_file": gr.DownloadButton("Download report (Markdown)", visible=False, elem_id="cc-download-md")}


def _chat(blocked: str | None) -> dict:
    """The conversation, the six task buttons, the question box and Send."""
    gr.Markdown("### Ask about the video")
    off = "Chat is off on this machine: see the note at the top of the tab."
    hint = off if blocked else "Type a question below or press a task button; the answer streams in here."
    chat = gr.Chatbot(show_label=False, height=360, autoscroll=False, elem_id="cc-chat", buttons=["copy"],
                      placeholder=hint, latex_delimiters=NO_MATH)
    gr.HTML(js_on_load=KEEP_QUESTION_IN_VIEW, visible="hidden")
    with gr.Row():
        task_btns = {t.id: gr.Button(t.title, size="sm", interactive=False, elem_id=f"cc-suggest-{t.id}")
                     for t in TASKS}
    with gr.Row():
        question = gr.Textbox(
            placeholder=off if blocked else f"Ask a question (at most {MAX_QUESTION_CHARS:,} characters), e.g. "
                                            "“Why did the car swerve?” or “When does it brake?”",
            max_length=MAX_QUESTION_CHARS, show_label=False, scale=5, interactive=False, elem_id="cc-question")
        send_btn = gr.Button("Send", scale=1, interactive=False, elem_id="cc-send")
    return {"chat": chat, "task_btns": task_btns, "question": question, "send_btn": send_btn}


# --- the wiring ----------------------------------------------------------------------------------------


def _wire(cfg: TabConfig, tab: Tab, blocked: bool) -> None:
    """Each control's event: what it runs, in which queue, after which checks."""
    outputs, model_controls = tab.outputs(), tab.model_controls()
    controls = model_controls + [tab.upload, tab.examples.dataset]
    states = _ControlStates(tab, blocked)
    run_ = _handlers(cfg, tab, states)
    seconds = _durations(cfg)
    private = {"api_visibility": "private"}
    quick = {"queue": False, "show_progress": "hidden", **private}
    queue = {"concurrency_id": GPU_QUEUE, "concurrency_limit": 1, **private}

    def model_request(trigger, fn: Callable, duration: Callable, admit: Callable, inputs: list, outs: list) -> None:
        trigger(states.lock, None, controls, **quick).then(
            gpu(fn, duration), inputs, outs, show_progress_on=[tab.model_status], validator=admit, **queue).then(
            states.unlock, [tab.session], controls, **quick)

    # The upload check shows its progress on its own line; the model controls wait for its verdict.
    # One queued event per change, the last change always run last: a Clear followed at once by a new
    # file are two changes, and the clear's view must never land after the file's.
    tab.upload.change(run_["on_upload"], [tab.upload], outputs + model_controls, show_progress_on=[tab.status],
                      trigger_mode="always_last", **private)
    tab.chat.clear(run_["on_clear"], [tab.session], outputs, show_progress="hidden", **private)
    model_request(tab.analyze_btn.click, run_["on_analyze"], seconds["analysis"], admit_state, [tab.session], outputs)
    for trigger in (tab.question.submit, tab.send_btn.click):
        model_request(trigger, run_["on_question"], seconds["question"], admit_question, [tab.question, tab.session],
                      outputs + [tab.question])
    for task_id, btn in tab.task_btns.items():
        model_request(btn.click, run_["on_task"](task_id), seconds["task"], admit_state, [tab.session], outputs)

    # `/analyze` for gradio_client: a file in, the report JSON out (hidden components carry the types).
    api_file = gr.File(visible=False, label="video")
    api_out = gr.JSON(visible=False, label="report")
    api_btn = gr.Button(visible=False)
    api_btn.click(gpu(run_["api_analyze"], seconds["api"]), [api_file], [api_out], api_name="analyze",
                  validator=admit_file, concurrency_id=GPU_QUEUE, concurrency_limit=1)


class _ControlStates:
    """Which controls are enabled: none while a request runs; after it, the model controls only with
    a readable video on a machine that can run the model."""

    def __init__(self, tab: Tab, blocked: bool):
        self.tab, self.blocked = tab, blocked

    def model_controls(self, ready: bool) -> list:
        return [gr.Button(interactive=ready), gr.Button(interactive=ready), gr.Textbox(interactive=ready),
                *(gr.Button(interactive=ready) for _ in self.tab.task_btns)]

    def lock(self) -> list:
        # the upload and the examples too: a new video mid-run would be overwritten by the run's views
        return [*self.model_controls(False), gr.File(interactive=False), gr.Dataset(visible=False)]

    def unlock(self, state: BrowserSession) -> list:
        ready = state.video is not None and not self.blocked
        return [*self.model_controls(ready), gr.File(interactive=True), gr.Dataset(visible=True)]


def _handlers(cfg: TabConfig, tab: Tab, states: _ControlStates) -> dict[str, Callable]:
    """The event functions: `crashchat.chat.events` generators turned into component values."""
    render = _renderer(tab)

    def on_upload(path):
        yield [*(gr.skip() for _ in tab.outputs()), *states.model_controls(False)]  # off until the verdict
        view = upload_view(cfg, path)
        yield [*render(view), *states.model_controls(view.session.video is not None and not states.blocked)]

    def on_analyze(state, progress=gr.Progress()):
        for view in analysis_views(cfg, state, progress):
            yield render(view)

    def on_question(message, state, progress=gr.Progress()):
        yield [*render(View()), ""]  # clear the box at once
        for view in chat_views(cfg, message, state, progress=progress):
            yield [*render(view), gr.skip()]

    def on_task(task_id: str):
        def ask(state, progress=gr.Progress()):
            for view in chat_views(cfg, "", state, task=task_id, progress=progress):
                yield render(view)
        return ask

    def api_analyze(video_file):
        # the caller gets the one-line reason; the server log no traceback (nothing went wrong here)
        try:
            return analyze_report(cfg, video_file)
        except (ValueError, TimeLimitExceeded) as exc:  # bad video, no GPU, model not loadable, time limit
            raise gr.Error(str(exc), print_exception=False) from None
        except out_of_memory():
            free_gpu_memory()
            raise gr.Error(OUT_OF_MEMORY, print_exception=False) from None

    def on_clear(state):
        return render(clear_chat_view(cfg, state))

    return {"on_upload": on_upload, "on_analyze": on_analyze, "on_question": on_question, "on_task": on_task,
            "api_analyze": api_analyze, "on_clear": on_clear}


def _durations(cfg: TabConfig) -> dict[str, Callable[..., int]]:
    """ZeroGPU durations, from each event function's own arguments: the clip's frames, the tasks asked."""

    def analysis_s(state, *_, **__):
        return request_seconds(cfg, clip_frames(cfg, state.video), analysis_batches(TASK_IDS))

    def question_s(message, state, *_, **__):  # one question, decoded alone
        return request_seconds(cfg, clip_frames(cfg, state.video), [1])

    def task_s(state, *_, **__):
        return request_seconds(cfg, clip_frames(cfg, state.video), [1])

    def api_s(video_file, *_, **__):
        return request_seconds(cfg, clip_frames(cfg, video_file), analysis_batches(TASK_IDS))

    return {"analysis": analysis_s, "question": question_s, "task": task_s, "api": api_s}


def _renderer(tab: Tab) -> Callable[[View], list]:
    """`View` -> the values of `tab.outputs()` (KEEP: left as it is on screen)."""
    def render(view: View) -> list:
        values = []
        for name in VIEW_FIELDS:
            value = getattr(view, name)
            if value is KEEP:
                values.append(gr.skip())
            elif name in ("json_file", "md_file"):
                values.append(gr.DownloadButton(value=value, visible=value is not None))
            elif name == "preview":
                values.append(gr.Video(value=value, visible=value is not None))
            elif name == "raw":
                values.append(raw_view(value))
            else:
                values.append(value)
        sections = view.sections
        values += [gr.skip() if sections is KEEP else sections[t] for t in TASK_IDS]
        return values

    return render


# --- admission: per-session job limit and question length, checked before the queue ---------------------


def session_model_jobs(request: gr.Request) -> int:
    """Model jobs of `request`'s session now in Gradio's queue, running or waiting.

    Read from the queue itself (its events by id, each with its session and concurrency id:
    gradio 6.31's `Queue.event_ids_to_events`, pinned in requirements.txt and tested live in
    `tests/test_chat_browser.py`), so a job that ends, fails or is cancelled stops counting with
    nothing of ours to forget.
    """
    queue = request.request.app.get_blocks()._queue
    return sum(1 for event in list(queue.event_ids_to_events.values())
               if event.session_hash == request.session_hash and event.concurrency_id == GPU_QUEUE)


def jobs_message(running_or_waiting: int) -> str | None:
    """The refusal for a session with this many model jobs queued, or None to admit one more.

    >>> jobs_message(1) is None, jobs_message(2)[:40]
    (True, 'This session already has a model job run')
    """
    if running_or_waiting < MAX_JOBS_PER_SESSION:
        return None
    return ("This session already has a model job running and one waiting (at most one of each); "
            "wait for one to finish, then ask again.")


class Admissions:
    """Admits a session's next model job, counting the jobs it was just admitted that are not in
    Gradio's queue yet (a validator runs before its event is queued, and three requests sent at
    once were all admitted when only the queue was counted). Thread-safe: validators run in threads.

    >>> a = Admissions()
    >>> [a.admit("s", queued=0, now=0.0), a.admit("s", queued=0, now=0.1)]  # neither queued yet
    [None, None]
    >>> a.admit("s", queued=1, now=0.2)[:26]  # the second still on its way: two already
    'This session already has a'
    >>> a.admit("s", queued=0, now=5.0) is None  # both done, a second later: admitted again
    True
    """

    LANDING_S = 1.0
    """How long an admitted job may take to appear in the queue (milliseconds in practice). A
    session whose two jobs both ended within this time of the last admission waits this long."""

    def __init__(self):
        self._lock = threading.Lock()
        self._expected: dict[str, tuple[int, float]] = {}
        """session -> (the queue's count for it once its admitted jobs are in, when the last was admitted)"""

    def admit(self, session: str, queued: int, now: float | None = None) -> str | None:
        """None (admitted, and noted) or the refusal, for a session with `queued` model jobs in the queue."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for key, (_, when) in list(self._expected.items()):
                if now - when > self.LANDING_S:
                    del self._expected[key]
            expected, _ = self._expected.get(session, (0, now))
            jobs = queued if queued >= expected else expected  # the admitted ones not in the queue yet count
            message = jobs_message(jobs)
            if message is None:
                self._expected[session] = (jobs + 1, now)
            return message


ADMISSIONS = Admissions()


# A validator returns one `gr.validate` per input of its event: a bare one for a one-input event
# (a list there would be taken for that input's value, and admitted).


def admit_state(state, request: gr.Request):
    """Validator of Analyze and the task buttons (their one input is the session state)."""
    return admission(request)


def admit_question(message, state, request: gr.Request):
    """Validator of Send and Enter: the question's length, then the session's jobs."""
    return [question_check(message), admission(request)]


def admit_file(video_file, request: gr.Request):
    """Validator of the `/analyze` API."""
    return admission(request)


def admission(request: gr.Request):
    """`gr.validate` for one more model job of `request`'s session."""
    message = ADMISSIONS.admit(request.session_hash, session_model_jobs(request))
    return gr.validate(message is None, message or "")


def question_check(message: str | None):
    """`gr.validate` for a typed question: at most `MAX_QUESTION_CHARS` (the box says so)."""
    n = len((message or "").strip())
    return gr.validate(n <= MAX_QUESTION_CHARS,
                       f"Questions are limited to {MAX_QUESTION_CHARS:,} characters; this one has {n:,}.")
