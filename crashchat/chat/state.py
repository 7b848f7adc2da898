"""What a browser session keeps (`BrowserSession`, in a `gr.State`) and what an event shows (`View`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crashchat.moments import Mark


@dataclass
class BrowserSession:
    """One browser session: its video, its report and its conversation (kept in a `gr.State`).

    Events never change the `BrowserSession` they are given (`dataclasses.replace` makes a new one):
    Gradio hands the same object to every event of the browser tab.
    """

    video: str | None = None
    """The readable upload the model works on; None until one passed the check."""
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
    """What the tab shows after an event step; every field is a component's new value, or KEEP."""

    model_status: Any = KEEP
    status: Any = KEEP
    """The line under the upload: ready, analysing, done, or the one message saying what went wrong."""
    preview: Any = KEEP
    """The upload's path for the preview player, or None to hide the player."""
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
    """Set when the request could not run or stopped early: the reason, on one line. The status
    line or the chat shows it (never a second copy in a toast); the `/analyze` API raises it."""
