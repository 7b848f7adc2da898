"""Which frames and labels: ffmpeg's fps filter, the authors' labels and thinning, on frame times.

The paper's numbers were produced by the authors' loader, so CrashChat picks exactly its frames.
That loader pipes the whole clip through ffmpeg's ``fps=10:round=down`` filter, labels output
frame k ``start_time + k / 10`` s and, past 96 frames, keeps ``np.linspace(0, n - 1, 96,
dtype=int)`` of them. Here that choice is computed from the demuxed presentation times alone
(`Timeline`, integers, nothing decoded): `select` gives the `Selection` that `crashchat.video`
then decodes. Pure functions of plain numbers; no decoder is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

PAPER_FPS = 10.0
PAPER_MAX_FRAMES = 96
SAMPLER = "authors-fps-filter"
"""How frames are picked, as recorded in outputs: ffmpeg's fps filter (round=down), labels
start + k / fps, truncating thinning to max_frames (the authors' loader)."""


def fps_filter(pts: Sequence[int], end_pts: int, time_base: Fraction, fps: Fraction, origin: int = 0) -> list[int]:
    """For every frame ffmpeg's ``fps=<fps>:round=down`` filter outputs, which input frame it is.

    ``pts`` are the input frames' presentation times in ``time_base`` units, in the order they
    reach the filter; ``end_pts`` the end of the stream (the last frame's pts plus its duration:
    what the buffer source reports at EOF); ``origin`` is subtracted from every time first (the
    ffmpeg command line subtracts the file's start time). Returns input positions, one per
    output frame.

    The filter (libavfilter ``vf_fps.c``) puts each input frame in output slot
    ``floor(t * fps)``, starts at the first frame's slot, and fills every slot up to the EOF
    slot (exclusive) with the latest frame whose slot is not after it: frames sharing a slot
    give way to the last one, and a gap repeats the frame before it.

    >>> fps_filter(range(90), 90, Fraction(1, 30), Fraction(10))[:4]  # 30 fps: the last of each 3
    [2, 5, 8, 11]
    >>> fps_filter([0, 5, 30], 31, Fraction(1, 100), Fraction(10))  # a gap repeats; 0.31 s ends in slot 3
    [1, 1, 1]
    """
    if len(pts) == 0:
        return []
    num = time_base.numerator * fps.numerator
    den = time_base.denominator * fps.denominator

    def slot(t: int) -> int:
        return (t - origin) * num // den  # floor: AV_ROUND_DOWN rounds toward minus infinity

    picks: list[int] = []
    next_slot = slot(pts[0])
    for i in range(len(pts)):
        # Frame i fills every slot before the next frame's (or the end's).
        limit = slot(pts[i + 1]) if i + 1 < len(pts) else slot(end_pts)
        while next_slot < limit:
            picks.append(i)
            next_slot += 1
    return picks


def thin(n: int, max_frames: int) -> list[int]:
    """Which of n frames the authors keep: all up to max_frames, else an even spread (truncated).

    >>> thin(5, 96)
    [0, 1, 2, 3, 4]
    >>> thin(200, 96)[:5], thin(200, 96)[-1]
    ([0, 2, 4, 6, 8], 199)
    """
    if n <= max_frames:
        return list(range(n))
    return [int(k) for k in np.linspace(0, n - 1, max_frames, dtype=int)]


def authors_labels(start_time: float, duration: float, n: int, fps: float = PAPER_FPS) -> np.ndarray:
    """The label of each of the n fps-filter outputs, as the authors compute it (float64 seconds).

    ``np.arange(start_time, start_time + duration + step, step)[:n]`` with ``step = 1 / fps``:
    output k is labelled ``start_time + k * step`` up to numpy's float rounding. When frames run
    past the container's duration (an undercounting header) the arange is shorter than n; the
    authors' loader would then misalign, and we continue the same grid.

    >>> [round(float(t), 6) for t in authors_labels(1.23, 2.0, 3)]
    [1.23, 1.33, 1.43]
    """
    step = 1 / fps
    labels = np.arange(start_time, start_time + duration + step, step)[:n]
    if len(labels) < n:
        # Same start and step, so numpy yields the same values for the first len(labels) entries.
        labels = np.arange(start_time, start_time + (n + 1) * step, step)[:n]
    return labels




def frame_rate(fps: float | Fraction) -> Fraction:
    """The fps filter's rate as ffmpeg reads "fps=<number>" (av_d2q with a 1001000 bound): 30000/1001 stays exact.

    >>> frame_rate(29.97002997002997)
    Fraction(30000, 1001)
    """
    return Fraction(fps).limit_denominator(1_001_000)


@dataclass(frozen=True)
class Timeline:
    """The video stream's frames in presentation order, as the demuxer lists them (nothing decoded)."""

    pts: tuple[int, ...]
    """Presentation times in time_base units, increasing."""
    end_pts: int
    """The last frame's pts plus its duration: where the stream ends for ffmpeg's fps filter."""
    time_base: Fraction
    origin: int
    """The file's start time in time_base units: the ffmpeg command line subtracts it from every
    timestamp before filtering (its default, without ``-copyts``)."""
    start_time: float
    """The video stream's start time in seconds, as ffprobe prints it (6 decimals)."""
    container_duration: float
    """The container's duration in seconds, as ffprobe prints it (6 decimals)."""
    avi: bool = False
    """An AVI file: it stores no presentation times, so frame n is timed n / rate."""

    def seconds(self, pts: int) -> float:
        """A time in seconds from the file's start (what the fps filter sees)."""
        return float((pts - self.origin) * self.time_base)


@dataclass(frozen=True)
class Selection:
    """Which frames the authors' loader shows the model, and their labels."""

    filtered: int
    """Frames out of the fps filter for the whole clip."""
    kept: tuple[int, ...]
    """The fps-filter outputs kept after thinning."""
    slots: tuple[int, ...]
    """The filter's output slot of each kept frame (``floor(t * fps)`` on the filter's clock)."""
    positions: tuple[int, ...]
    """Each kept frame's position in the timeline."""
    labels: np.ndarray
    """The authors' label of each kept frame (float64 seconds)."""


def select(timeline: Timeline, fps: float | Fraction = PAPER_FPS, max_frames: int = PAPER_MAX_FRAMES) -> Selection:
    """The authors' frames for a timeline: fps filter, labels, thinning."""
    rate = frame_rate(fps)
    picks = fps_filter(timeline.pts, timeline.end_pts, timeline.time_base, rate, timeline.origin)
    kept = thin(len(picks), max_frames)
    first = (timeline.pts[0] - timeline.origin) * timeline.time_base * rate // 1 if timeline.pts else 0
    labels = authors_labels(timeline.start_time, timeline.container_duration, len(picks), float(rate))
    return Selection(filtered=len(picks), kept=tuple(kept), slots=tuple(int(first) + k for k in kept),
                     positions=tuple(picks[k] for k in kept), labels=labels[kept] if kept else labels[:0])



class SlotPicker:
    """Keeps, for each wanted output slot of the fps filter, the frame the filter puts there.

    That is the latest frame whose slot is not after the wanted one (see `fps_filter`); frames
    arrive in presentation order, and only the chosen ones are kept.
    """

    def __init__(self, wanted: Sequence[int]):
        self.wanted = wanted
        self.chosen: list[Any] = []
        self._last: Any = None

    def feed(self, slot: int, item: Any) -> None:
        while self._last is not None and len(self.chosen) < len(self.wanted) and self.wanted[len(self.chosen)] < slot:
            self.chosen.append(self._last)
        self._last = item

    def finish(self, end_slot: int) -> list[Any]:
        self.feed(end_slot, None)
        return self.chosen
