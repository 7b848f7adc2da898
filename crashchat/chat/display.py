"""What the tab shows, as Markdown and figures: the model status line, the verdict, one section per
task, the timeline, the downloads. Pure functions of the config, a clip and a report."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from crashchat.chat.config import GUIDED_ENV, MAX_TOKENS_ENV, TabConfig
from crashchat.chat.resources import loaded_model, missing_model_packages, needs_gpu
from crashchat.cli import AUTHORS_MAX_NEW_TOKENS
from crashchat.guided import GUIDED_KINDS
from crashchat.moments import Mark, report_marks, timeline_figure
from crashchat.tasks import TASK_IDS, get_task

if TYPE_CHECKING:
    from crashchat.video import Clip

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


# In the figure, above the axes: a component label would sit on top of the plot's first marks.
TIMELINE_TITLE = "Timeline: crash window, pre-crash moment, times from chat answers"


TRY_ON_CPU = ("To try the pipeline on this CPU, restart the app with `CRASHCHAT_MODEL=tiny-random python app.py` "
              "(random weights: the answers are meaningless).")


def no_gpu_message(cfg: TabConfig) -> str:
    return (f"**The real model ({cfg.model}) needs a GPU, and this machine has none.** "
            "Analysis and chat are off here; the Leaderboard tab works as usual. " + TRY_ON_CPU)


def no_packages_message(missing: list[str]) -> str:
    return (f"**The model packages are not installed here** (missing: {', '.join(missing)}), so the chat tab is "
            "off; the Leaderboard tab works as usual. To add them: `pip install -r requirements.txt`, then "
            "restart the app.")


def blocked_message(cfg: TabConfig) -> str | None:
    """Why model work cannot run on this machine (the tab then says so and keeps its model controls
    off), or None when it can: the model packages missing, or the real model without a GPU."""
    missing = missing_model_packages()
    if missing:
        return no_packages_message(missing)
    if needs_gpu(cfg):
        return no_gpu_message(cfg)
    return None


UNDECODABLE = "[?]"
"""Shown in place of each run of U+FFFD: bytes of an answer that are not valid UTF-8 text (a
random-weight model emits token pieces that split characters), which raw would read as an
encoding bug of the app."""
UNDECODABLE_NOTE = f"`{UNDECODABLE}`: bytes that do not decode to text"
_REPLACEMENT = re.compile("\ufffd+")
# Markdown and HTML syntax characters (CommonMark lets any ASCII punctuation be backslash-escaped);
# `?`, `,`, `:`, `;`, quotes, `/`, `%` and `@` mean nothing there and stay as they are.
_SYNTAX = re.compile(r"([\\`*_{}\[\]()#+\-.!|~$<>&=^])")


def literal(text: str) -> str:
    r"""`text` (a question someone typed, a model's answer) as Markdown that shows it exactly as it
    is: no markup, links, HTML or math of its own; undecodable bytes as a visible `[?]`.

    >>> literal("**bold** <b>x</b> 1. a \ufffd\ufffd b")
    '\\*\\*bold\\*\\* \\<b\\>x\\</b\\> 1\\. a [?] b'
    """
    escaped = _SYNTAX.sub(r"\\\1", text)
    return _REPLACEMENT.sub(lambda _: UNDECODABLE, escaped)


def has_undecodable(text: str) -> bool:
    return "\ufffd" in text


def raw_view(value):
    """The raw answers for the JSON viewer: U+FFFD written as the escape `\\ufffd` (six characters), as in the
    downloaded JSON, not as the replacement glyph."""
    if isinstance(value, str):
        return value.replace("\ufffd", "\\ufffd")
    if isinstance(value, dict):
        return {k: raw_view(v) for k, v in value.items()}
    if isinstance(value, list):
        return [raw_view(v) for v in value]
    return value


def generation_line(cfg: TabConfig) -> str:
    """How answers are generated: the length limit and whether closed-form answers are guided."""
    guided = (f"**on** for recognition and the two localizations, so their answers always parse "
              f"(`{GUIDED_ENV}=0` turns it off)" if cfg.guided else f"off (`{GUIDED_ENV}=1` turns it on)")
    return (f"Answers: up to {cfg.max_new_tokens} new tokens (`{MAX_TOKENS_ENV}`; the authors' evaluation "
            f"allows {AUTHORS_MAX_NEW_TOKENS}) · format-guided decoding {guided} · an answer stuck in an exact "
            "loop is ended early and marked (repetition guard; `predict` runs without it, as the authors)")


def model_status(cfg: TabConfig) -> str:
    """The model (which, on what device, random or real, loaded or not yet) and how it answers."""
    blocked = blocked_message(cfg)
    if blocked is not None:
        return blocked
    about = MODEL_ABOUT[cfg.model]
    model = loaded_model(cfg.model)
    if model is None:
        when = ("seconds" if cfg.model == "tiny-random"
                else "minutes the first time: weights are downloaded and converted")
        text = (f"**Model:** `{cfg.model}` ({about}). "
                f"Not loaded yet: it loads on the first Analyze or question ({when}).")
    else:
        groups = ", ".join(model.groups) if model.groups else "none (base only)"
        text = f"**Model:** `{model.name}` ({about}) · device `{model.device}` · adapters: {groups}"
        if model.random_weights:
            text += " · **RANDOM WEIGHTS**"
    return f"{text}\n\n{generation_line(cfg)}"


def clip_summary(clip: Clip) -> str:
    return (f"{Path(clip.path).name}: {clip.duration_s:.1f} s, {clip.width}×{clip.height}, "
            f"{clip.native_fps:.0f} fps; {len(clip.frames)} frames sampled for the model")


def verdict_markdown(crash: bool | None, random_weights: bool, running: bool = False) -> str:
    head = {True: "## Verdict: crash detected", False: "## Verdict: no crash detected",
            None: "## Verdict: unclear (the recognition answer could not be read)"}[crash]
    if running:
        head += " (analysis still running…)"
    if random_weights:
        head += ("\n\n> **RANDOM WEIGHTS** (tiny-random model): these answers only show the pipeline working; "
                 "they mean nothing.")
    return head


def section_markdown(task_id: str, result: dict | None, state: str = "waiting", guided: bool = False) -> str:
    """The report section of one task: its question, then the answer (or waiting/running/skipped).

    `guided`: closed-form answers were format-guided, which the section's footnote says. `state`
    of a section without a result: `waiting`, `running`, or `off` where model work cannot run.
    """
    task = get_task(task_id)
    head = f"### {QUESTIONS[task_id]}\n"
    if result is None:
        return head + {"running": "_running…_", "off": "_not run on this machine (see the note at the top)_"}.get(
            state, "_waiting…_")
    if result["skipped"]:
        return head + "Skipped: no crash was detected, so there is nothing to localize."
    raw, parsed = result["response"] or "", result["parsed"]
    response = literal(raw)  # the model's text, shown as it is (no Markdown of its own)
    how = " · guided" if guided and task.kind in GUIDED_KINDS else ""
    how += f" · {UNDECODABLE_NOTE}" if has_undecodable(raw) else ""
    foot = f"\n\n<sub>{task.title} · {result['group']} adapter{how} · {result['seconds']:.2f} s</sub>"
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
    """The timeline: the report's crash window and pre-crash moment, and the times chat answers named."""
    marks = (report_marks(report) if report else []) + list(chat_marks)
    return timeline_figure(duration_s, marks, frame_times, title=TIMELINE_TITLE)


def write_downloads(report: dict) -> tuple[str, str]:
    """The report as JSON (as `analyze --json` writes it) and Markdown, in a fresh temp folder."""
    from crashchat.report import report_markdown

    folder = Path(tempfile.mkdtemp(prefix="crashchat-report-"))
    stem = Path(report["video"]["path"]).stem or "video"
    json_path, md_path = folder / f"{stem}.crashchat.json", folder / f"{stem}.crashchat.md"
    json_path.write_text(json.dumps(report, indent=1))
    md_path.write_text(report_markdown(report))
    return str(json_path), str(md_path)
