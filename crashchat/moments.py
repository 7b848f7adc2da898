"""Where things happen in a clip: the moments a report or a chat answer names, their key frames,
and the timeline plot drawn under the video in the app. (Named for what it holds, moments on a
clip; `crashchat.video.Timeline` is something else: a video stream's frame presentation times.)

Pure functions over plain data (a report dict as `analyze --json` writes it, frame arrays and
their timestamps); no Gradio here, so everything is testable without a browser.

>>> marks = report_marks({"tasks": {
...     "crash_localization": {"parsed": [4.0, 2.5], "skipped": False},
...     "pre_crash_localization": {"parsed": 1.5, "skipped": False}}})
>>> [(m.kind, m.start, m.end) for m in marks]
[('crash', 2.5, 4.0), ('pre_crash', 1.5, None)]
>>> answer_times("The crash happens at 3.5 - 5 seconds.")
(3.5, 5.0)
>>> answer_times("around 2.1 seconds")
(2.1, None)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from crashchat.tasks import parse_time, parse_time_range

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The same range pattern as the paper's parser, but required here: a free-form chat answer with
# two unrelated numbers ("2 cars at 3.1 s") must not become a window.
_RANGE = re.compile(r"\d\s*-\s*\d")

COLORS = {"crash": "#d62728", "pre_crash": "#ff7f0e", "chat": "#1f77b4"}
_LABEL_BOX = {"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 0.5}  # readable over other marks


@dataclass(frozen=True)
class Mark:
    """One moment (`end is None`) or window on the clip's time axis, in seconds."""

    kind: str
    """`crash` (the crash window), `pre_crash` (the first warning sign) or `chat` (an answer)."""
    label: str
    start: float
    end: float | None = None

    def __post_init__(self):
        assert self.kind in COLORS, f"unknown mark kind {self.kind!r}"


def answer_times(answer: str) -> tuple[float, float | None] | None:
    """Times in a model answer: `(start, end)` for a `start - end` range, `(t, None)` for one time.

    A range is returned in order (start <= end); None when the answer names no time.
    """
    if _RANGE.search(answer):
        pair = parse_time_range(answer)
        if pair is not None:
            return (min(pair), max(pair))
    t = parse_time(answer)
    return None if t is None else (t, None)


def report_marks(report: dict) -> list[Mark]:
    """The crash window and the pre-crash moment of a report (those that were answered and parsed)."""
    tasks = report.get("tasks", {})
    marks = []
    crash = tasks.get("crash_localization")
    if crash and not crash.get("skipped") and crash.get("parsed") is not None:
        start, end = (float(x) for x in crash["parsed"])
        # the paper's metric swaps a reversed interval; drawing does the same
        marks.append(Mark("crash", "crash", min(start, end), max(start, end)))
    pre = tasks.get("pre_crash_localization")
    if pre and not pre.get("skipped") and pre.get("parsed") is not None:
        marks.append(Mark("pre_crash", "pre-crash", float(pre["parsed"])))
    return marks


def key_times(marks: Sequence[Mark], duration_s: float) -> list[tuple[str, float]]:
    """`(caption, seconds)` for the frames worth showing: each moment, each window's start and end,
    in time order.

    Times are clamped to the clip (a model may answer past its end); the caption says so.
    """
    out: list[tuple[str, float]] = []
    for mark in marks:
        points = [(mark.label, mark.start)] if mark.end is None else [
            (f"{mark.label} start", mark.start), (f"{mark.label} end", mark.end)]
        for caption, t in points:
            clamped = min(max(t, 0.0), duration_s)
            note = "" if clamped == t else f" (answer {t:g} s is outside the clip)"
            out.append((f"{caption} {clamped:.1f} s{note}", clamped))
    return sorted(out, key=lambda item: item[1])


def nearest_index(timestamps: Sequence[float], t: float) -> int:
    """Index of the sampled frame closest in time to `t`.

    >>> nearest_index([0.0, 0.1, 0.2, 0.3], 0.26)
    3
    """
    assert len(timestamps) > 0, "a clip has at least one frame"
    return int(np.argmin(np.abs(np.asarray(timestamps, dtype=float) - t)))


def key_frames(frames: np.ndarray, timestamps: Sequence[float], marks: Sequence[Mark],
               duration_s: float) -> list[tuple[np.ndarray, str]]:
    """`(frame, caption)` for each key time of `marks`, using the sampled frame nearest to it."""
    return [(frames[nearest_index(timestamps, t)], caption) for caption, t in key_times(marks, duration_s)]


def timeline_figure(duration_s: float, marks: Sequence[Mark] = (), frame_times: Sequence[float] = (),
                    title: str | None = None) -> Figure:
    """A strip plot of the clip: the time axis spans the clip, windows are bands, moments lines.

    `frame_times` (the sampled frames) are drawn as small ticks so a reader sees what the model saw.
    Built on `matplotlib.figure.Figure` directly (not pyplot): no global figure registry to leak.
    """
    from matplotlib.figure import Figure

    duration = max(float(duration_s), 1e-3)
    fig = Figure(figsize=(8.0, 1.9), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0.0, duration)
    ax.set_ylim(0.0, 1.0)
    ax.set_yticks([])
    ax.set_xlabel(f"time (s) — clip length {duration:.1f} s")
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    if len(frame_times):
        ax.vlines(list(frame_times), 0.0, 0.08, color="#999999", linewidth=0.6)
    for i, mark in enumerate(marks):
        color = COLORS[mark.kind]
        start = min(max(mark.start, 0.0), duration)
        y = 0.9 - 0.14 * (i % 5)  # stagger labels so close marks stay readable
        right = start > 0.8 * duration  # labels near the end grow leftwards, inside the axes
        if mark.end is None:
            ax.axvline(start, color=color, linewidth=2.2, linestyle="--" if mark.kind == "chat" else "-")
            ax.text(start, y, f" {mark.label} {mark.start:g} s ", color=color, fontsize=9, va="top",
                    ha="right" if right else "left", bbox=_LABEL_BOX)
        else:
            end = min(max(mark.end, 0.0), duration)
            ax.axvspan(start, max(end, start + duration * 0.004), color=color, alpha=0.3, linewidth=0)
            ax.text(start, y, f" {mark.label} {mark.start:g}–{mark.end:g} s ", color=color, fontsize=9, va="top",
                    ha="right" if right else "left", bbox=_LABEL_BOX)
        if mark.start > duration or (mark.end or 0.0) > duration:
            ax.text(duration, y - 0.13, "answer past the clip end ▶", color=color, fontsize=8, ha="right", va="top")
    if not marks:
        ax.text(duration / 2, 0.5, "no crash window or pre-crash moment to show", ha="center", va="center",
                color="#666666", fontsize=9)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    return fig
