"""The chat tab: upload a crash video, get the six-task report on a timeline, ask follow-ups.

`build(model=None)` lays the tab out inside the caller's `gr.Blocks` (`app.py`). The work is done
by plain generator functions of this module (`upload_view`, `analysis_views`, `chat_views`,
`analyze_report`) that yield `View`s; `build` only wires them to components, so the tests drive
the same functions with the tiny random model and no browser.

The model is chosen by `build(model=...)`, else `$CRASHCHAT_MODEL`, else `crashchat`; it loads on
first use (one copy per process, shared by every browser session; on ZeroGPU at startup, as that
hardware requires). The real model needs a GPU: on a CPU-only machine the tab says so and refuses
model work, while the leaderboard tab works.
On a ZeroGPU Space (`SPACES_ZERO_GPU` set and `spaces` importable) the model work runs inside
`spaces.GPU`; everywhere, model events share one queue slot (`concurrency_id="gpu"`) and each
request stops at `$CRASHCHAT_TIME_LIMIT_S` seconds with a message saying so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from crashchat.tasks import TASK_IDS, TASKS, get_task
from crashchat.timeline import Mark, answer_times, key_frames, report_marks, timeline_figure

if TYPE_CHECKING:
    from crashchat.model import CrashChat
    from crashchat.video import Clip, VideoLimits

MODEL_ENV = "CRASHCHAT_MODEL"
TIME_LIMIT_ENV = "CRASHCHAT_TIME_LIMIT_S"
MAX_TOKENS_ENV = "CRASHCHAT_MAX_NEW_TOKENS"
EXAMPLES_ENV = "CRASHCHAT_EXAMPLES_DIR"
GPU_QUEUE = "gpu"  # concurrency id shared by every event that runs the model: one job per GPU
CHAT_TURNS_KEPT = 8  # earlier turns are dropped from the model's context (each re-reads the video)

QUESTIONS = {  # what each task answers, in a user's words (headings of the report sections)
    "crash_recognition": "Was there a crash?",
    "crash_localization": "When did it happen?",
    "pre_crash_localization": "When was the first warning sign?",
    "crash_description": "What happened?",
    "causal_reasoning": "Why did it happen?",
    "prevention_reasoning": "How could it have been prevented?",
}
assert set(QUESTIONS) == set(TASK_IDS), "one heading per task of crashchat.tasks"

MODEL_ABOUT = {
    "crashchat": "VideoLLaMA3-7B with the CrashChat linguistic and perception adapters",
    "videollama3": "VideoLLaMA3-7B alone (the paper's baseline, no CrashChat adapters)",
    "tiny-random": "a 2-layer test model with RANDOM WEIGHTS: its answers are meaningless",
}


# --- configuration and per-session state ---------------------------------------------------------


@dataclass(frozen=True)
class TabConfig:
    """Settings of the chat tab (the app's flags and environment end up here)."""

    model: str = "crashchat"
    """`crashchat`, `videollama3` or `tiny-random` (see `crashchat.loading.ModelConfig`)."""
    time_limit_s: float = 300.0
    """A request (one Analyze, one chat answer) stops after this many seconds, with a message."""
    max_new_tokens: int = 256
    """Answer length limit per task and per chat answer."""
    isolate: bool = True
    """Decode uploads in a child process, so a hostile file cannot crash or hang the app."""
    limits: "VideoLimits | None" = None
    """Upload limits (size, duration, resolution); None: `crashchat.video.VideoLimits()`."""
    examples_dir: Path | None = None
    """Where the synthetic example clips are written; None: `$CRASHCHAT_EXAMPLES_DIR` or the cache."""

    def __post_init__(self):
        from crashchat.loading import MODEL_NAMES

        if self.model not in MODEL_NAMES:
            raise ValueError(f"--model / {MODEL_ENV}: unknown model {self.model!r}; "
                             f"choose from {', '.join(MODEL_NAMES)}")
        if not self.time_limit_s > 0:
            raise ValueError(f"{TIME_LIMIT_ENV} must be a positive number of seconds, got {self.time_limit_s!r}")
        if not self.max_new_tokens >= 1:
            raise ValueError(f"{MAX_TOKENS_ENV} must be at least 1, got {self.max_new_tokens!r}")

    @classmethod
    def from_env(cls, model: str | None = None) -> "TabConfig":
        limit = os.environ.get(TIME_LIMIT_ENV)
        try:
            time_limit = float(limit) if limit else cls.time_limit_s
        except ValueError:
            raise ValueError(f"{TIME_LIMIT_ENV}={limit!r} is not a number of seconds") from None
        tokens = os.environ.get(MAX_TOKENS_ENV)
        try:
            max_new_tokens = int(tokens) if tokens else cls.max_new_tokens
        except ValueError:
            raise ValueError(f"{MAX_TOKENS_ENV}={tokens!r} is not a whole number") from None
        examples = os.environ.get(EXAMPLES_ENV)
        return cls(model=model or os.environ.get(MODEL_ENV) or "crashchat", time_limit_s=time_limit,
                   max_new_tokens=max_new_tokens, examples_dir=Path(examples) if examples else None)

    def video_limits(self) -> "VideoLimits":
        from crashchat.video import VideoLimits

        return self.limits or VideoLimits()


@dataclass
class Session:
    """One browser session: its video, its report and its conversation (kept in a `gr.State`)."""

    video: str | None = None
    report: dict | None = None
    turns: list[tuple[str, str]] = field(default_factory=list)
    """(question, raw answer) pairs: the model's multi-turn context."""
    messages: list[dict] = field(default_factory=list)
    """The chat as shown (`{"role", "content"}` messages)."""
    chat_marks: list[Mark] = field(default_factory=list)
    """Times named by chat answers, drawn on the timeline."""


class _Keep:
    """Marks a `View` field the event leaves as it is on screen."""

    def __repr__(self):
        return "KEEP"


KEEP: Any = _Keep()


@dataclass
class View:
    """What the tab shows; every field is a component's new value, or KEEP."""

    model_status: Any = KEEP
    status: Any = KEEP
    verdict: Any = KEEP
    timeline: Any = KEEP
    frames: Any = KEEP
    sections: Any = KEEP
    """dict task id -> markdown (all six) or KEEP."""
    raw: Any = KEEP
    json_file: Any = KEEP
    md_file: Any = KEEP
    chat: Any = KEEP
    session: Any = KEEP
    error: str | None = None
    """Also shown as a warning toast (bad upload, no GPU, time limit)."""


# --- the model, loaded once per process ------------------------------------------------------------

_MODELS: dict[str, "CrashChat"] = {}
_MODEL_LOCK = threading.Lock()


def zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space (the GPU is attached only inside `spaces.GPU` calls)."""
    return "SPACES_ZERO_GPU" in os.environ and importlib.util.find_spec("spaces") is not None


def gpu_available() -> bool:
    if zero_gpu():
        return True
    import torch

    return torch.cuda.is_available()


def needs_gpu(cfg: TabConfig) -> bool:
    """The real 7B model on a machine without a GPU: the tab refuses model work instead of crawling."""
    return cfg.model != "tiny-random" and not gpu_available()


def no_gpu_message(cfg: TabConfig) -> str:
    return (f"**The real model ({cfg.model}) needs a GPU, and this machine has none.** "
            "Analysis and chat are off here; the Leaderboard tab works as usual. "
            "To try the pipeline on a CPU, start the app with `CRASHCHAT_MODEL=tiny-random python app.py` "
            "(random weights: the answers are meaningless).")


def loaded_model(name: str) -> "CrashChat | None":
    return _MODELS.get(name)


def get_model(name: str) -> "CrashChat":
    """The process-wide model `name`, loaded on first call (later callers wait for that load)."""
    with _MODEL_LOCK:
        if name not in _MODELS:
            from crashchat.loading import ModelConfig, load_model

            _MODELS[name] = load_model(ModelConfig(name=name, device="cuda" if zero_gpu() else None))
        return _MODELS[name]


def model_status(cfg: TabConfig) -> str:
    """One line on the model: which, on what device, random or real, loaded or not yet."""
    if needs_gpu(cfg):
        return no_gpu_message(cfg)
    about = MODEL_ABOUT[cfg.model]
    model = loaded_model(cfg.model)
    if model is None:
        when = ("seconds" if cfg.model == "tiny-random"
                else "minutes the first time: weights are downloaded and converted")
        return (f"**Model:** `{cfg.model}` ({about}). "
                f"Not loaded yet: it loads on the first Analyze or question ({when}).")
    groups = ", ".join(model.groups) if model.groups else "none (base only)"
    text = f"**Model:** `{model.name}` ({about}) · device `{model.device}` · adapters: {groups}"
    if model.random_weights:
        text += " · **RANDOM WEIGHTS**"
    return text


# --- uploads ------------------------------------------------------------------------------------------


class _ClipCache:
    """The last few decoded uploads, so Analyze and chat do not decode a file again."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: OrderedDict[tuple, "Clip"] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, cfg: TabConfig) -> "Clip":
        from crashchat.video import load_video

        stat = Path(path).stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns, cfg.video_limits())
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        clip = load_video(path, limits=cfg.video_limits(), isolate=cfg.isolate)
        with self._lock:
            self._items[key] = clip
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return clip


_CLIPS = _ClipCache()


def open_clip(path: str, cfg: TabConfig) -> "Clip":
    """Decode an upload (cached); raises `VideoError` with a message naming the file, not its temp path."""
    from crashchat.video import VideoError

    if not Path(path).exists():
        raise VideoError(f"{Path(path).name}: the upload is gone from the server; upload it again")
    try:
        return _CLIPS.get(path, cfg)
    except VideoError as exc:
        # Gradio keeps uploads under a random temporary folder: show the user their file name.
        raise VideoError(str(exc).replace(str(path), Path(path).name)) from None


def clip_summary(clip: "Clip") -> str:
    return (f"{Path(clip.path).name}: {clip.duration_s:.1f} s, {clip.width}×{clip.height}, "
            f"{clip.native_fps:.0f} fps; {len(clip.frames)} frames sampled for the model")


# --- rendering a report -------------------------------------------------------------------------------


def verdict_markdown(crash: bool | None, random_weights: bool, running: bool = False) -> str:
    head = {True: "## Verdict: crash detected", False: "## Verdict: no crash detected",
            None: "## Verdict: unclear (the recognition answer could not be read)"}[crash]
    if running:
        head += " (analysis still running…)"
    if random_weights:
        head += ("\n\n> **RANDOM WEIGHTS** (tiny-random model): these answers only show the pipeline working; "
                 "they mean nothing.")
    return head


def section_markdown(task_id: str, result: dict | None, state: str = "waiting") -> str:
    """The report section of one task: its question, then the answer (or waiting/running/skipped)."""
    task = get_task(task_id)
    head = f"### {QUESTIONS[task_id]}\n"
    foot = ""
    if result is None:
        return head + ("_running…_" if state == "running" else "_waiting…_")
    if result["skipped"]:
        return head + "Skipped: no crash was detected, so there is nothing to localize."
    response, parsed = result["response"] or "", result["parsed"]
    foot = f"\n\n<sub>{task.title} · {result['group']} adapter · {result['seconds']:.2f} s</sub>"
    if task.kind == "text":
        return head + (response or "_(empty answer)_") + foot
    if parsed is None:
        return head + f"No {'answer' if task.kind == 'yes_no' else 'time'} could be read from: “{response}”" + foot
    if task.kind == "yes_no":
        body = f"**{parsed}**"
    elif task.kind == "time_range":
        body = f"**{min(parsed):g} – {max(parsed):g} s**"
    else:
        body = f"**{parsed:g} s**"
    return head + body + f" (answer: “{response}”)" + foot


def empty_sections(state: str = "waiting") -> dict[str, str]:
    return {t: section_markdown(t, None, state) for t in TASK_IDS}


def report_figure(duration_s: float, report: dict | None, chat_marks: list[Mark], frame_times=()):
    marks = (report_marks(report) if report else []) + list(chat_marks)
    return timeline_figure(duration_s, marks, frame_times)


def write_downloads(report: dict) -> tuple[str, str]:
    """The report as JSON (as `analyze --json` writes it) and Markdown, in a fresh temp folder."""
    from crashchat.report import report_markdown

    folder = Path(tempfile.mkdtemp(prefix="crashchat-report-"))
    stem = Path(report["video"]["path"]).stem or "video"
    json_path, md_path = folder / f"{stem}.crashchat.json", folder / f"{stem}.crashchat.md"
    json_path.write_text(json.dumps(report, indent=1))
    md_path.write_text(report_markdown(report))
    return str(json_path), str(md_path)


# --- events -------------------------------------------------------------------------------------------


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


OUT_OF_MEMORY = "The GPU ran out of memory on this clip; try a shorter or lower-resolution clip."


def _out_of_memory() -> type[BaseException]:
    import torch

    return torch.OutOfMemoryError


def _free_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the next request (another user's, maybe) starts clean


def _no_progress(fraction: float, desc: str | None = None) -> None:
    pass


def upload_view(cfg: TabConfig, path: str | None) -> View:
    """A new (or cleared) video: check it at once, reset the report and the conversation."""
    from crashchat.video import SUPPORTED_SUFFIXES, VideoError

    session = Session(video=None)
    view = View(verdict="", timeline=None, frames=[], sections=empty_sections(), raw=None, json_file=None,
                md_file=None, chat=[], session=session, model_status=model_status(cfg))
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
    view.status = f"Ready: {clip_summary(clip)}. Click **Analyze**, or ask a question below."
    for note in clip.notes:
        view.status += f"\n\nNote: {note}"
    view.timeline = report_figure(clip.duration_s, None, [], clip.timestamps)
    return view


def _start(cfg: TabConfig, session: Session, progress) -> Iterator[View | tuple["Clip", "CrashChat"]]:
    """Shared first steps of a model request: video check, GPU check, lazy model load.

    Yields Views to show, and finally `(clip, model)`; a View with an error ends the request.
    """
    from crashchat.weights import ModelLoadError
    from crashchat.video import VideoError

    if not session.video:
        yield View(status="Upload a video first (or pick a synthetic example).")
        return
    if needs_gpu(cfg):
        yield View(status=no_gpu_message(cfg), model_status=no_gpu_message(cfg))
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
        yield View(status=f"**The model could not be loaded.** {exc}", model_status=model_status(cfg))
        return
    yield clip, model


def analysis_views(cfg: TabConfig, session: Session, progress: Callable = _no_progress) -> Iterator[View]:
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
        for task_id, result in analyze(model, clip, TASK_IDS, max_new_tokens=cfg.max_new_tokens):
            results[task_id] = result
            sections[task_id] = section_markdown(task_id, result)
            pending = [t for t in order if t not in results]
            if pending:
                sections[pending[0]] = section_markdown(pending[0], None, "running")
            progress(len(results) / len(order), desc=f"{len(results)}/{len(order)} tasks")
            partial = build_report(clip, model, results)
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
    except _out_of_memory():
        _free_gpu_memory()
        yield View(status=f"**{OUT_OF_MEMORY}** The answers so far are shown.", error=OUT_OF_MEMORY)
        return
    report = build_report(clip, model, results)
    session = replace(session, report=report)
    json_path, md_path = write_downloads(report)
    seconds = sum(r["seconds"] for r in results.values())
    yield View(status=f"Done: {clip_summary(clip)}; six tasks in {seconds:.1f} s of model time.",
               verdict=verdict_markdown(report["crash_detected"], model.random_weights),
               timeline=report_figure(clip.duration_s, report, session.chat_marks, clip.timestamps),
               frames=key_frames(clip.frames, clip.timestamps, report_marks(report), clip.duration_s),
               raw=report["tasks"], json_file=json_path, md_file=md_path, session=session)


def chat_views(cfg: TabConfig, message: str, session: Session, group: str | None = None,
               shown: str | None = None, progress: Callable = _no_progress) -> Iterator[View]:
    """One chat turn: route the question (unless `group` is given), stream the answer token by token.

    `shown` is what the chat displays for the question (a suggestion shows its task's title).
    Answers from the perception adapter that name a time are drawn on the timeline.
    """
    from crashchat.routing import route

    message = (message or "").strip()
    if not message:
        return
    messages = list(session.messages) + [{"role": "user", "content": shown or message}]
    session = replace(session, messages=messages)

    def say(text: str) -> View:
        session.messages = messages + [{"role": "assistant", "content": text}]
        return View(chat=list(session.messages), session=session)

    started = None
    for item in _start(cfg, session, progress):
        if isinstance(item, View):
            if item.status is not KEEP:
                yield replace(say(item.status), model_status=item.model_status)
            else:
                yield replace(say("_loading the model…_"), model_status=item.model_status)
        else:
            started = item
    if started is None:
        return
    clip, model = started
    group = group or route(message)
    deadline = Deadline(cfg.time_limit_s)
    answer = ""
    yield replace(say("…"), model_status=model_status(cfg))
    try:
        for chunk in model.stream(clip, message, group=group, history=session.turns[-CHAT_TURNS_KEPT:],
                                  max_new_tokens=cfg.max_new_tokens):
            answer += chunk
            yield say(answer)
            deadline.check()
    except TimeLimitExceeded as exc:
        yield say(f"{answer}\n\n**{exc}**")
        return
    except _out_of_memory():
        _free_gpu_memory()
        yield say(f"{answer}\n\n**{OUT_OF_MEMORY}**")
        return
    answer = answer.strip()
    note = f"\n\n<sub>{group} adapter{' · RANDOM WEIGHTS' if model.random_weights else ''}</sub>"
    view = say((answer or "_(empty answer)_") + note)
    session.turns = session.turns + [(message, answer)]
    mark = chat_mark(answer, group, len(session.turns))
    if mark is not None:
        session.chat_marks = session.chat_marks + [mark]
        view.timeline = report_figure(clip.duration_s, session.report, session.chat_marks, clip.timestamps)
    yield view


def clear_chat_view(cfg: TabConfig, session: Session) -> View:
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


def chat_mark(answer: str, group: str, turn: int) -> Mark | None:
    """The time a perception answer names, as a mark labelled by its turn (`Q3`); else None.

    >>> chat_mark("It starts at 2.5 - 3 seconds.", "perception", 3)
    Mark(kind='chat', label='Q3', start=2.5, end=3.0)
    >>> chat_mark("The car was speeding at 50 km/h.", "linguistic", 1) is None
    True
    """
    times = answer_times(answer) if group == "perception" else None
    return None if times is None else Mark("chat", f"Q{turn}", times[0], times[1])


def analyze_report(cfg: TabConfig, video: str | None) -> dict:
    """The `/analyze` API: a video file in, the report JSON out (as `analyze --json` writes it).

    Raises `ValueError` with a readable message for a bad video, no GPU, or a model that cannot load.
    """
    from crashchat.pipeline import analyze
    from crashchat.report import build_report

    view = None
    for item in _start(cfg, Session(video=video), _no_progress):
        if isinstance(item, View) and item.status is not KEEP:
            raise ValueError(item.status.replace("**", ""))
        view = item
    clip, model = view
    deadline = Deadline(cfg.time_limit_s)
    results = {}
    for task_id, result in analyze(model, clip, TASK_IDS, max_new_tokens=cfg.max_new_tokens):
        results[task_id] = result
        deadline.check()
    return build_report(clip, model, results)


def max_upload_bytes() -> int:
    """For `launch(max_file_size=...)`: Gradio refuses a bigger upload before it is even stored."""
    from crashchat.video import VideoLimits

    return VideoLimits().max_bytes


# --- examples -----------------------------------------------------------------------------------------


def example_clips(cfg: TabConfig) -> list[Path]:
    """The synthetic example clips, rendered once into the examples folder (no third-party footage)."""
    from crashchat.synthetic import EXAMPLES, make_examples
    from crashchat.weights import cache_root

    folder = cfg.examples_dir if cfg.examples_dir is not None else cache_root() / "examples"
    paths = [Path(folder) / name for name, *_ in EXAMPLES]
    if not all(p.is_file() and p.stat().st_size > 0 for p in paths):
        paths = make_examples(folder)
    return paths


# --- the Gradio tab -------------------------------------------------------------------------------------


def _gpu(fn: Callable, cfg: TabConfig) -> Callable:
    """`spaces.GPU` around model work on a ZeroGPU Space; the function itself elsewhere."""
    if not zero_gpu():
        return fn
    import spaces

    return spaces.GPU(duration=int(cfg.time_limit_s) + 30)(fn)


def build(model: str | None = None, config: TabConfig | None = None) -> None:
    """Lay out the chat tab inside the current `gr.Blocks` and wire its events."""
    import gradio as gr

    cfg = config or TabConfig.from_env(model)
    blocked = needs_gpu(cfg)
    if zero_gpu():
        # ZeroGPU attaches a GPU only inside `spaces.GPU` calls, whose duration could not cover a
        # first download; it expects weights placed on "cuda" at startup, outside those calls.
        get_model(cfg.model)

    session = gr.State(Session())
    status_md = gr.Markdown(model_status(cfg), elem_id="cc-model-status")
    with gr.Row():
        with gr.Column(scale=3):
            video = gr.Video(label="Dashcam video", sources=["upload"], elem_id="cc-video", height=320)
            timeline_plot = gr.Plot(label="Timeline: crash window, pre-crash moment, times from chat answers",
                                    elem_id="cc-timeline", format="png")
            upload_md = gr.Markdown(upload_view(cfg, None).status, elem_id="cc-upload-status")
            analyze_btn = gr.Button("Analyze", variant="primary", interactive=not blocked, elem_id="cc-analyze")
            examples = example_clips(cfg)
            gr.Examples([[str(p)] for p in examples], inputs=[video],
                        label="Synthetic example clips (rendered by crashchat.synthetic, not real footage)",
                        example_labels=[p.stem.replace("_", " ") for p in examples])
        with gr.Column(scale=2):
            verdict_md = gr.Markdown(elem_id="cc-verdict")
            frames_gallery = gr.Gallery(label="Key frames (at the crash window and the pre-crash moment, when found)",
                                        columns=3,
                                        height=220, elem_id="cc-keyframes")
    section_mds = {}
    for row in (TASK_IDS[:3], TASK_IDS[3:]):
        with gr.Row(equal_height=False):
            for task_id in row:
                section_mds[task_id] = gr.Markdown(section_markdown(task_id, None), elem_id=f"cc-section-{task_id}")
    with gr.Accordion("Raw answers", open=False):
        raw_json = gr.JSON(elem_id="cc-raw")
    with gr.Row():
        json_btn = gr.DownloadButton("Download report (JSON)", visible=False, elem_id="cc-download-json")
        md_btn = gr.DownloadButton("Download report (Markdown)", visible=False, elem_id="cc-download-md")

    gr.Markdown("### Ask about the video")
    chatbot = gr.Chatbot(label="Chat", height=360, elem_id="cc-chat", buttons=["copy"])
    with gr.Row():
        suggestion_btns = {t.id: gr.Button(t.title, size="sm", interactive=not blocked,
                                           elem_id=f"cc-suggest-{t.id}") for t in TASKS}
    with gr.Row():
        question = gr.Textbox(placeholder="Ask a question, e.g. “Why did the car swerve?” or “When does it brake?”",
                              show_label=False, scale=5, interactive=not blocked, elem_id="cc-question")
        send_btn = gr.Button("Send", scale=1, interactive=not blocked, elem_id="cc-send")

    components = {"model_status": status_md, "status": upload_md, "verdict": verdict_md,
                  "timeline": timeline_plot, "frames": frames_gallery, "raw": raw_json,
                  "json_file": json_btn, "md_file": md_btn, "chat": chatbot, "session": session}
    outputs = list(components.values()) + [section_mds[t] for t in TASK_IDS]

    def render(view: View) -> list:
        if view.error:
            gr.Warning(view.error)
        values = []
        for name in components:
            value = getattr(view, name)
            if value is KEEP:
                values.append(gr.skip())
            elif name in ("json_file", "md_file"):
                values.append(gr.DownloadButton(value=value, visible=value is not None))
            else:
                values.append(value)
        sections = view.sections
        values += [gr.skip() if sections is KEEP else sections[t] for t in TASK_IDS]
        return values

    def on_video(path):
        return render(upload_view(cfg, path))

    def on_analyze(state, progress=gr.Progress()):
        for view in analysis_views(cfg, state, progress):
            yield render(view)

    def on_question(message, state, progress=gr.Progress()):
        yield [*render(View()), ""]  # clear the box at once
        for view in chat_views(cfg, message, state, progress=progress):
            yield [*render(view), gr.skip()]

    def on_suggestion(task_id: str):
        task = get_task(task_id)

        def ask(state, progress=gr.Progress()):
            yield from (render(view) for view in chat_views(cfg, task.prompt, state, group=task.group,
                                                            shown=f"**{task.title}**: {task.prompt}", progress=progress))
        return ask

    def api_analyze(video_file):
        try:
            return analyze_report(cfg, video_file)
        except ValueError as exc:  # bad video, no GPU, model not loadable: one line for the client
            raise gr.Error(str(exc)) from None
        except TimeLimitExceeded as exc:
            raise gr.Error(str(exc)) from None
        except _out_of_memory():
            _free_gpu_memory()
            raise gr.Error(OUT_OF_MEMORY) from None

    def on_clear(state):
        return render(clear_chat_view(cfg, state))

    gpu = {"concurrency_id": GPU_QUEUE, "concurrency_limit": 1}
    # progress shows on one line (the upload check's, the model status's), not over every output
    video.change(on_video, [video], outputs, api_visibility="private", show_progress_on=[upload_md])
    chatbot.clear(on_clear, [session], outputs, api_visibility="private", show_progress="hidden")
    analyze_btn.click(_gpu(on_analyze, cfg), [session], outputs, api_visibility="private",
                      show_progress_on=[status_md], **gpu)
    for src in (question.submit, send_btn.click):
        src(_gpu(on_question, cfg), [question, session], outputs + [question], api_visibility="private",
            show_progress_on=[status_md], **gpu)
    for task_id, btn in suggestion_btns.items():
        btn.click(_gpu(on_suggestion(task_id), cfg), [session], outputs, api_visibility="private",
                  show_progress_on=[status_md], **gpu)

    # `/analyze` for gradio_client: a file in, the report JSON out (hidden components carry the types).
    api_file = gr.File(visible=False, label="video")
    api_out = gr.JSON(visible=False, label="report")
    api_btn = gr.Button(visible=False)
    api_btn.click(_gpu(api_analyze, cfg), [api_file], [api_out], api_name="analyze", **gpu)
