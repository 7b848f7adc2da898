"""Video input: open a clip, check it against limits, and pick its frames as the authors' loader did.

    from crashchat.video import load_video
    clip = load_video("dashcam.mp4")            # (T, H, W, 3) uint8 frames + their labels
    processor(videos=[clip.frames], video_metadata=[clip.metadata()], text=...)

The paper's numbers were produced by the authors' loader, so we pick exactly its frames. It pipes
the whole clip through ffmpeg's ``fps=10:round=down`` filter, labels output frame k
``start_time + k / 10`` s (``start_time``: the video stream's start, not always 0), and when the
filter gives more than 96 frames keeps ``np.linspace(0, n - 1, 96, dtype=int)`` of them
(truncation, not rounding). We do not run the filter: `fps_filter` replays libavfilter's algorithm
on the frames' presentation times (integers, so nothing is lost to float rounding), and only the
chosen frames are decoded. For a 30 fps clip that is source frames 2, 5, 8, ...: the *last*
frame of each 0.1 s slot. The tests compare this, frame by frame and label by label, with the
real filter run through PyAV (``tests/video_oracle.py``).

Decoding uses decord (fast, applies rotation metadata); when decord is missing or refuses a file,
PyAV decodes packet by packet and skips damaged packets, which rescues files with a corrupt run
in the middle. Both pick from the same demuxed frame list, so they return the same frames. Cheap
checks (suffix, size, container, duration, resolution) run before any decoding, and every failure
becomes one `VideoError` line naming the file. ``isolate=True`` decodes in a child process with a
timeout, so a decoder that crashes or hangs on a hostile file cannot take the caller down with it.
"""

from __future__ import annotations

import errno
import multiprocessing.connection
import os
import pickle
import re
import subprocess
import sys
import time
import traceback
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # transformers is heavy; only `Clip.metadata` needs it, and imports it then.
    from transformers.video_utils import VideoMetadata

SUPPORTED_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
PAPER_FPS = 10.0
PAPER_MAX_FRAMES = 96
SAMPLER = "authors-fps-filter"
"""How frames are picked, as recorded in outputs: ffmpeg's fps filter (round=down), labels
start + k / fps, truncating thinning to max_frames (the authors' loader)."""

_LABEL_DECIMALS = 6  # Clip.timestamps and source_times; ffprobe prints times with 6 decimals too
_DECORD_TIME_TOLERANCE = 1e-3  # decord reports float32 seconds; 600 s in float32 is exact to 6e-5 s


class _UseFallback(Exception):
    """Skip decord for this file (the message says why)."""


class VideoError(ValueError):
    """A video that cannot be used; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class VideoLimits:
    """What a video may be before we try to decode it (defaults suit dashcam clips)."""

    max_bytes: int = 2 * 1024**3
    """Largest file accepted, in bytes."""
    max_duration_s: float = 600.0
    """Longest clip accepted, in seconds (the paper's clips are under a minute)."""
    min_side: int = 16
    """Smallest width or height, in pixels (the vision encoder's patches are 14 px)."""
    max_side: int = 4096
    """Largest width or height, in pixels (96 frames of 4096x2160 RGB are already 2.5 GB)."""
    timeout_s: float = 120.0
    """With ``isolate=True``: the decoding child is killed after this many seconds."""
    max_memory_bytes: int = 12 * 1024**3
    """With ``isolate=True``: the decoding child's address-space limit (96 4K frames need ~6 GB)."""

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_duration_s", "min_side", "max_side", "timeout_s", "max_memory_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"VideoLimits.{name} must be positive, got {getattr(self, name)!r}")
        if self.min_side > self.max_side:
            raise ValueError(f"VideoLimits.min_side ({self.min_side}) exceeds max_side ({self.max_side})")


@dataclass(frozen=True, eq=False)  # identity equality: comparing frame arrays field-wise is ambiguous
class Clip:
    """Frames picked from one video, with the times the model is told they were taken.

    Plain values only (besides ``frames``), so that a clip pickles across the isolated child's pipe.
    """

    path: str
    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB."""
    timestamps: tuple[float, ...]
    """The authors' label of each frame: ``start_time + k / sample_fps`` for fps-filter output k,
    rounded to 6 decimals (the processor prints them with one)."""
    duration_s: float
    """Where the clip ends, in seconds on the labels' axis: the container's duration, or the end of
    the last frame when frames run past it."""
    native_fps: float
    width: int
    height: int
    backend: str
    """"decord" or "pyav"."""
    sample_fps: float = PAPER_FPS
    """Rate of ffmpeg's fps filter: labels step by 1 / sample_fps."""
    notes: tuple[str, ...] = ()
    """What went wrong but was recovered from (decord refused the file, damaged packets skipped),
    and where the authors' loader would have behaved differently."""
    start_time: float = 0.0
    """The video stream's start time in seconds, as ffprobe prints it (6 decimals): label 0."""
    container_duration_s: float | None = None
    """The container's (format) duration in seconds as ffprobe prints it; the authors' labels are
    ``np.arange(start_time, start_time + container_duration_s + 0.1, 0.1)``. None for a clip
    built by hand."""
    filtered_frames: int = 0
    """How many frames ffmpeg's fps filter outputs for the whole clip (before thinning)."""
    filter_indices: tuple[int, ...] = ()
    """Which fps-filter outputs were kept, k per frame (all of them up to max_frames)."""
    source_indices: tuple[int, ...] = ()
    """Each frame's position among the video's frames in presentation order (0-based)."""
    source_times: tuple[float, ...] = ()
    """Each frame's real presentation time in seconds, as stored in the file (6 decimals)."""

    def labels(self) -> list[float]:
        """The labels exactly as the authors' loader computes them (unrounded floats).

        They decide what the prompt prints (``Time {label:.1f}s``): rounding 0.25000000000000006
        to one decimal gives 0.3, rounding its 6-decimal form 0.25 gives 0.2.
        """
        if self.container_duration_s is None or not self.filter_indices:
            return [float(t) for t in self.timestamps]  # a hand-built clip: its timestamps are all we have
        grid = authors_labels(self.start_time, self.container_duration_s, self.filtered_frames, self.sample_fps)
        return [float(grid[k]) for k in self.filter_indices]

    def metadata(self) -> VideoMetadata:
        """`VideoMetadata` for the transformers VideoLlama3 processor.

        The processor prints frame i as ``Time {metadata.timestamps[i]:.1f}s``. Plain
        `VideoMetadata` derives timestamps as ``frames_indices[i] / fps``, which cannot give
        ``start_time + k / 10`` exactly (or at all, for a start time such as 1.23 s), so the
        metadata carries the authors' labels themselves (`LabelledMetadata`); ``fps`` and
        ``frames_indices`` still describe the fps filter's output and which of it was kept.
        Pass the frames with ``do_sample_frames=False`` (CrashChat's processor does): they are
        already picked.
        """
        return _labelled_metadata_class()(
            total_num_frames=self.filtered_frames or len(self.frames),
            fps=self.sample_fps,
            width=self.width,
            height=self.height,
            duration=self.container_duration_s if self.container_duration_s is not None else self.duration_s,
            video_backend=self.backend,
            frames_indices=list(self.filter_indices) if self.filter_indices else list(range(len(self.frames))),
            labels=self.labels(),
        )


def __getattr__(name: str) -> Any:
    if name == "LabelledMetadata":
        return _labelled_metadata_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _labelled_metadata_class() -> type:
    """`LabelledMetadata`: transformers' VideoMetadata whose timestamps are given labels.

    Importing transformers costs seconds (and the isolated decoding child never needs it), so the
    class is built on first use and registered in this module, where pickle finds it by name.
    """
    cls = globals().get("LabelledMetadata")
    if cls is None:
        from dataclasses import field, make_dataclass

        from transformers.video_utils import VideoMetadata

        def timestamps(self) -> list[float]:
            return list(self.labels)

        cls = make_dataclass(
            "LabelledMetadata", [("labels", list, field(default_factory=list))], bases=(VideoMetadata,),
            namespace={"timestamps": property(timestamps, doc="The authors' labels of the frames, in seconds."),
                       "__doc__": "VideoMetadata whose timestamps are given labels, not frames_indices / fps.",
                       "__module__": __name__})
        globals()["LabelledMetadata"] = cls
    return cls


# ---------------------------------------------------------------------------------------------
# Which frames: ffmpeg's fps filter, the authors' labels and thinning.


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


def _frame_rate(fps: float | Fraction) -> Fraction:
    # How ffmpeg reads "fps=<number>" (av_d2q with a 1001000 bound): 30000/1001 stays exact.
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
    rate = _frame_rate(fps)
    picks = fps_filter(timeline.pts, timeline.end_pts, timeline.time_base, rate, timeline.origin)
    kept = thin(len(picks), max_frames)
    first = (timeline.pts[0] - timeline.origin) * timeline.time_base * rate // 1 if timeline.pts else 0
    labels = authors_labels(timeline.start_time, timeline.container_duration, len(picks), float(rate))
    return Selection(filtered=len(picks), kept=tuple(kept), slots=tuple(int(first) + k for k in kept),
                     positions=tuple(picks[k] for k in kept), labels=labels[kept] if kept else labels[:0])


def check_file(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> Path:
    """File-system checks only: exists, is a file, known suffix, not empty, not over max_bytes."""
    p = Path(path)
    if not p.exists():
        raise VideoError(f"{p}: no such file")
    if p.is_dir():
        raise VideoError(f"{p}: is a directory, not a video file")
    if p.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise VideoError(f"{p}: unsupported file type {repr(p.suffix) if p.suffix else '(no suffix)'}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    size = p.stat().st_size
    if size == 0:
        raise VideoError(f"{p}: the file is empty (0 bytes)")
    if size > limits.max_bytes:
        raise VideoError(f"{p}: {size / 1024**2:.1f} MiB exceeds the {limits.max_bytes / 1024**2:.1f} MiB limit")
    return p


def _first_line(exc: BaseException) -> str:
    """The informative part of a decoder's message: no log prefixes, errno or repeated file name."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    line = re.sub(r"^(\[\d\d:\d\d:\d\d\] \S+:\d+: )+", "", line)  # decord's "[hh:mm:ss] file.cc:123: "
    line = re.sub(r"^\[Errno -?\d+\] ", "", line)  # PyAV's FFmpegError prefix
    line = re.sub(r": '[^']*'$", "", line)  # PyAV appends the file name we already print
    return line[:160]


def probe(path: str | os.PathLike, limits: VideoLimits = VideoLimits()) -> tuple[float, float, int, int]:
    """(duration_s, fps, width, height) from the container header, after checking the limits.

    Reads no frames, so it is cheap and safe to run on anything; raises `VideoError`.
    Width and height are as stored: a clip with 90-degree rotation metadata is returned by
    `load_video` upright, i.e. with the two swapped (the side limits do not care).
    """
    import av

    p = check_file(path, limits)
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                kinds = sorted({s.type for s in container.streams}) or ["no"]
                raise VideoError(f"{p}: no video stream (the file has {', '.join(kinds)} streams only)")
            stream = container.streams.video[0]
            duration = _stream_duration(container, stream)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            width, height = stream.codec_context.width, stream.codec_context.height
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise VideoError(f"{p}: not a readable video ({_first_line(exc)})") from None
    if duration is None:
        raise VideoError(f"{p}: the container does not say how long the video is")
    if duration <= 0:
        raise VideoError(f"{p}: the video stream has no frames")
    if duration > limits.max_duration_s:
        raise VideoError(f"{p}: {duration:.1f} s exceeds the {limits.max_duration_s:g} s duration limit")
    if min(width, height) < limits.min_side:
        raise VideoError(f"{p}: {width}x{height} is below the minimum side of {limits.min_side} px")
    if max(width, height) > limits.max_side:
        raise VideoError(f"{p}: {width}x{height} exceeds the maximum side of {limits.max_side} px")
    fps = float(rate) if rate else 0.0
    return float(duration), fps, int(width), int(height)


def _stream_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        # Matroska/WebM keep the duration on the container, counted from its start time.
        return (container.duration - (container.start_time or 0)) / 1e6
    if stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    return None


def load_video(path: str | os.PathLike, *, fps: float = PAPER_FPS, max_frames: int = PAPER_MAX_FRAMES,
               limits: VideoLimits = VideoLimits(), isolate: bool = False) -> Clip:
    """Check, decode and pick the frames of one video; raises `VideoError` for any unusable file.

    fps is the rate of ffmpeg's fps filter (paper: 10), max_frames the thinning cap (paper: 96).
    With isolate=True the probe and the decoding run in a child process killed after
    ``limits.timeout_s``.
    """
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    if not max_frames >= 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames!r}")
    p = check_file(path, limits)
    if isolate:
        return run_isolated(p, limits.timeout_s, _load, (str(p), fps, max_frames, limits),
                            memory_bytes=limits.max_memory_bytes)
    return _load(str(p), fps, max_frames, limits)


def _load(path: str, fps: float, max_frames: int, limits: VideoLimits) -> Clip:
    _, native_fps, _, _ = probe(path, limits)
    timeline = read_timeline(path)
    end_s = float(timeline.end_pts * timeline.time_base)
    if end_s > limits.max_duration_s:
        raise VideoError(f"{path}: frames run to {end_s:.1f} s, over the {limits.max_duration_s:g} s duration limit")
    selection = select(timeline, fps, max_frames)
    if selection.filtered == 0:
        raise VideoError(f"{path}: shorter than one {1 / fps:g} s frame slot, so ffmpeg's fps filter gives no frame")

    notes: list[str] = []
    frames = None
    try:
        if Path(path).suffix.lower() == ".avi":
            # AVI has no presentation times: decord seeks in it by guesswork and, for h264 with
            # B-frames, returned a neighbouring frame for the last slots in 5-85 % of runs (measured).
            raise _UseFallback("AVI is decoded with PyAV: decord's frame seeking in AVI is unreliable")
        frames = _decode_decord(path, timeline, selection)
        backend = "decord"
        chosen_pts = [timeline.pts[i] for i in selection.positions]
    except _UseFallback as why:
        notes.append(str(why))
    except ImportError:
        notes.append("decord is not installed; decoded with PyAV")
    except VideoError:
        raise
    except Exception as exc:  # decord raises RuntimeError, DECORDError, IndexError... on bad input
        notes.append(f"decord failed ({_first_line(exc)}); decoded with PyAV")
    if frames is None:
        tolerance = max(1.0, 2.0 / native_fps) if native_fps > 0 else 1.0
        frames, chosen_pts, selection, pyav_notes = _decode_pyav(path, timeline, selection, fps, max_frames, tolerance)
        backend = "pyav"
        notes.extend(pyav_notes)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) != len(selection.kept):
        raise VideoError(f"{path}: the decoder returned frames of shape {frames.shape} and type {frames.dtype} "
                         f"for {len(selection.kept)} chosen frames")
    notes.extend(_differences_from_the_authors(timeline, selection, fps))
    return Clip(
        path=path, frames=frames, timestamps=tuple(round(float(t), _LABEL_DECIMALS) for t in selection.labels),
        duration_s=max(timeline.container_duration, round(end_s, _LABEL_DECIMALS)), native_fps=native_fps,
        width=int(frames.shape[2]), height=int(frames.shape[1]), backend=backend, sample_fps=float(fps),
        notes=tuple(notes), start_time=timeline.start_time, container_duration_s=timeline.container_duration,
        filtered_frames=selection.filtered, filter_indices=selection.kept,
        source_indices=tuple(bisect_left(timeline.pts, t) for t in chosen_pts),
        source_times=tuple(round(float(t * timeline.time_base), _LABEL_DECIMALS) for t in chosen_pts),
    )


def _differences_from_the_authors(timeline: Timeline, selection: Selection, fps: float) -> list[str]:
    """Where the authors' loader would not have shown these frames with these labels."""
    notes = []
    step = 1 / float(_frame_rate(fps))
    span = len(np.arange(timeline.start_time, timeline.start_time + timeline.container_duration + step, step))
    if selection.filtered > span:
        notes.append(f"frames run past the container's {timeline.container_duration:.2f} s; labels after it continue "
                     f"the {step:g} s grid (the authors' loader runs out of labels there)")
    lead = timeline.seconds(timeline.pts[0])
    if lead >= step:
        notes.append(f"the video starts {lead:.2f} s after the file does; ffmpeg's command line would also show its "
                     "first frame for that gap (not reproduced)")
    return notes


def read_timeline(path: str) -> Timeline:
    """The video stream's frames in presentation order, from one demuxing pass that decodes nothing.

    Packets without a time, and those the demuxer marks for discarding (cut by an edit list),
    are not frames the decoder shows, so they are left out.
    """
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            # ffprobe prints times as `ts * av_q2d(time_base)` with "%f"; the authors parse that.
            start_time = 0.0
            if stream.start_time is not None and stream.time_base:
                start_time = float(f"{stream.start_time * (stream.time_base.numerator / stream.time_base.denominator):f}")
            container_duration = float(f"{container.duration / 1_000_000:f}") if container.duration else 0.0
            if _is_avi(container):
                # AVI stores no presentation times (packet times are decode times), but it is
                # constant-rate by design: frame n is shown at n / rate.
                rate = stream.average_rate or stream.guessed_rate
                if not rate:
                    raise VideoError(f"{path}: an AVI file without a frame rate")
                count = sum(1 for packet in container.demux(stream) if packet.size)
                return Timeline(pts=tuple(range(count)), end_pts=count, time_base=1 / Fraction(rate), origin=0,
                                start_time=start_time, container_duration=container_duration, avi=True)
            time_base = Fraction(stream.time_base)
            durations: dict[int, int] = {}
            for packet in container.demux(stream):
                if packet.pts is not None and not packet.is_discard:
                    durations[packet.pts] = packet.duration or 0
            # The ffmpeg command line shifts every timestamp by minus the file's start time
            # (microseconds, rescaled to the stream's time base, rounded half away from zero).
            origin = _rescale_us(container.start_time or 0, time_base)
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
        raise VideoError(f"{path}: not a readable video ({_first_line(exc)})") from None
    if not durations:
        raise VideoError(f"{path}: the video stream has no timed frames")
    pts = tuple(sorted(durations))
    return Timeline(pts=pts, end_pts=pts[-1] + durations[pts[-1]], time_base=time_base, origin=origin,
                    start_time=start_time, container_duration=container_duration)


def _rescale_us(us: int, time_base: Fraction) -> int:
    """av_rescale_q(us, 1/1000000, time_base): to time_base units, rounded half away from zero."""
    exact = Fraction(us, 1_000_000) / time_base
    magnitude = int(abs(exact) + Fraction(1, 2))
    return magnitude if exact >= 0 else -magnitude


def _decode_decord(path: str, timeline: Timeline, selection: Selection) -> np.ndarray:
    """decord: check that its frame list is the demuxer's, then one batched read of the chosen frames."""
    import decord

    # decord's "auto" (0) threads measured 2.7x slower than 2 threads on a 2-core machine.
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=max(1, min(4, os.cpu_count() or 1)))
    count = len(reader)
    if count != len(timeline.pts):
        raise RuntimeError(f"it lists {count} frames, the demuxer {len(timeline.pts)}")
    if not timeline.avi:  # decord has no times for AVI (it reports AV_NOPTS_VALUE)
        times = reader.get_frame_timestamp(list(range(count)))[:, 0].astype(np.float64)
        expected = np.array([float((t - timeline.pts[0]) * timeline.time_base) for t in timeline.pts])
        off = np.abs((times - times[0]) - expected)
        if not np.all(off <= _DECORD_TIME_TOLERANCE):
            i = int(np.argmax(off))
            raise RuntimeError(f"its frame {i} is at {times[i] - times[0]:.3f} s, the demuxer's at {expected[i]:.3f} s")
    return reader.get_batch(list(selection.positions)).asnumpy()


def _is_avi(container: Any) -> bool:
    return "avi" in container.format.name.split(",")


class _SlotPicker:
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


def _decode_pyav(path: str, timeline: Timeline, selection: Selection, fps: float, max_frames: int,
                 tolerance: float) -> tuple[np.ndarray, list[int], Selection, list[str]]:
    """PyAV, sequential and tolerant: a packet that fails to decode is counted and skipped.

    Picks from the frames that actually decoded, as ffmpeg would. When damage changed where the
    stream starts or ends (so the fps filter's output count), a second pass picks again. A run of
    missing frames longer than ``tolerance`` seconds is an error (truncated or badly damaged).
    Returns the frames, their pts, the selection used and notes on what was skipped.
    """
    chosen, decoded, notes = _pyav_pass(path, timeline, selection.slots, fps)
    if decoded.pts != timeline.pts or decoded.end_pts != timeline.end_pts:
        _check_missing(path, timeline, decoded, tolerance)
        replanned = select(decoded, fps, max_frames)
        if replanned.slots != selection.slots:
            chosen, decoded, notes = _pyav_pass(path, timeline, replanned.slots, fps)
        selection = replanned
    if len(chosen) != len(selection.slots):
        raise VideoError(f"{path}: decoded {len(chosen)} of {len(selection.slots)} frames (damaged or truncated file)")
    arrays: dict[int, np.ndarray] = {}
    for _, frame in chosen:
        if id(frame) not in arrays:
            arrays[id(frame)] = _to_rgb(frame)
    return np.stack([arrays[id(frame)] for _, frame in chosen]), [t for t, _ in chosen], selection, notes


def _pyav_pass(path: str, timeline: Timeline, wanted: Sequence[int], fps: float) -> tuple[list, Timeline, list[str]]:
    """Decode every frame; keep those the fps filter puts in the wanted slots, and list what decoded."""
    import av

    rate = _frame_rate(fps)
    num = timeline.time_base.numerator * rate.numerator
    den = timeline.time_base.denominator * rate.denominator
    picker = _SlotPicker(wanted)
    damaged = untimed = 0
    decoded: list[int] = []
    last_duration = 0
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    damaged += 1
                    continue
                for frame in frames:
                    if timeline.avi:
                        pts, duration = len(decoded), 1  # AVI: timed by frame count, as in read_timeline
                    elif frame.pts is None or (decoded and frame.pts <= decoded[-1]):
                        untimed += 1  # no usable time, or out of order after damage: cannot be placed
                        continue
                    else:
                        pts, duration = frame.pts, frame.duration or 0
                    decoded.append(pts)
                    last_duration = duration
                    picker.feed((pts - timeline.origin) * num // den, (pts, frame))  # kept in YUV until chosen
    except (av.FFmpegError, OSError) as exc:
        if getattr(exc, "errno", None) in (errno.ENOMEM, errno.EAGAIN):
            raise VideoError(f"{path}: ran out of memory or threads while decoding ({_first_line(exc)})") from None
        raise VideoError(f"{path}: not a readable video ({_first_line(exc)})") from None
    if not decoded:
        raise VideoError(f"{path}: no frame could be decoded (truncated or damaged file)")
    end_pts = decoded[-1] + last_duration
    chosen = picker.finish((end_pts - timeline.origin) * num // den)
    notes = []
    if damaged:
        notes.append(f"{damaged} damaged packet(s) skipped; nearby frames may show artifacts")
    if untimed:
        notes.append(f"{untimed} frame(s) without a usable timestamp skipped")
    return chosen, Timeline(pts=tuple(decoded), end_pts=end_pts, time_base=timeline.time_base, origin=timeline.origin,
                            start_time=timeline.start_time, container_duration=timeline.container_duration,
                            avi=timeline.avi), notes


def _check_missing(path: str, listed: Timeline, decoded: Timeline, tolerance: float) -> None:
    """Raise when the frames that failed to decode span more than tolerance seconds in a row."""
    present = set(decoded.pts)
    run_start = None
    for i, t in enumerate(listed.pts + (None,)):
        if t is not None and t not in present:
            run_start = i if run_start is None else run_start
            continue
        if run_start is not None:
            first = listed.seconds(listed.pts[run_start])
            end = listed.seconds(t) if t is not None else listed.seconds(listed.end_pts)
            if end - first > tolerance:
                where = f"from {first:.1f} s to {end:.1f} s" if t is not None else f"after {first:.1f} s"
                raise VideoError(f"{path}: no decodable frame {where} of a {listed.seconds(listed.end_pts):.1f} s video: "
                                 "the file is truncated or damaged")
            run_start = None


def _to_rgb(frame: Any) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")
    # PyAV hands out frames as stored; apply the display rotation as decord does.
    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
    if rotation:
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    return image


# ---------------------------------------------------------------------------------------------
# Guarded decoding in a child process.


# A fresh interpreter (subprocess), not multiprocessing: spawn and forkserver re-import the
# caller's __main__ in the child (a Gradio app, or `<stdin>`, which fails), and plain fork is
# unsafe once torch threads or CUDA exist. The child imports only this module; the frames come
# back over a dedicated pipe so that a library printing to stdout cannot corrupt them.
_CHILD_CODE = "import sys; from crashchat.video import _child_main; _child_main(int(sys.argv[1]))"


def _child_main(fd: int) -> None:
    """Entry point of the decoding child: (path, target, args, memory) pickled on stdin, answers on fd."""
    conn = multiprocessing.connection.Connection(fd)
    path, memory_bytes = "the video", None
    try:
        path, target, args, memory_bytes = pickle.load(sys.stdin.buffer)
        if memory_bytes:
            import resource

            # The decoders are loaded first, so the limit bounds decoding, not library loading.
            import av  # noqa: F401
            try:
                import decord  # noqa: F401
            except ImportError:
                pass  # load_video falls back to PyAV and says so in the clip's notes
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        clip = target(*args)
    except VideoError as exc:
        conn.send(("error", str(exc)))
    except MemoryError:
        conn.send(("error", f"{path}: decoding needs more than {memory_bytes / 1024**3:.1f} GiB of memory "
                            "(VideoLimits.max_memory_bytes)"))
    except BaseException:  # noqa: BLE001 - reported to the parent, which re-raises it
        conn.send(("crash", traceback.format_exc()))
    else:
        frames = np.ascontiguousarray(clip.frames)
        header = {k: getattr(clip, k) for k in Clip.__dataclass_fields__ if k != "frames"}
        conn.send(("ok", header, frames.shape, frames.dtype.str))
        conn.send_bytes(frames.reshape(-1))
    finally:
        conn.close()


def run_isolated(path: str | os.PathLike, timeout_s: float, target: Any, args: tuple,
                 memory_bytes: int | None = None) -> Clip:
    """Run ``target(*args) -> Clip`` in a child Python process; frames come back through a pipe.

    A timeout kills the child; a child that dies (segfault, abort, out of memory) or hangs
    becomes a `VideoError` naming the file. memory_bytes caps the child's address space. target must be picklable (a module-level function).
    POSIX only (the answer pipe is passed by file descriptor).
    """
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    read_fd, write_fd = os.pipe()
    deadline = time.monotonic() + timeout_s
    try:
        child = subprocess.Popen([sys.executable, "-c", _CHILD_CODE, str(write_fd)], pass_fds=(write_fd,),
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    finally:
        os.close(write_fd)  # ours must go, so that the child's death shows up as EOF
    receiver = multiprocessing.connection.Connection(read_fd)
    try:
        try:
            child.stdin.write(pickle.dumps((str(path), target, args, memory_bytes)))
            child.stdin.close()
        except BrokenPipeError:
            pass  # the child is already gone; the EOF below reports how
        if not receiver.poll(max(deadline - time.monotonic(), 0)):
            raise VideoError(f"{path}: decoding took longer than {timeout_s:g} s and was stopped")
        message = receiver.recv()
        if message[0] == "error":
            raise VideoError(message[1])
        if message[0] == "crash":
            raise RuntimeError(f"decoding {path} failed in the child process:\n{message[1]}")
        _, header, shape, dtype = message
        frames = np.empty(shape, dtype=np.dtype(dtype))
        if not receiver.poll(max(deadline - time.monotonic(), 0)):
            raise VideoError(f"{path}: decoding took longer than {timeout_s:g} s and was stopped")
        receiver.recv_bytes_into(frames.reshape(-1))
        return Clip(frames=frames, **header)
    except (EOFError, ConnectionError):
        try:
            code = child.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        raise VideoError(f"{path}: the decoder process died ({how})") from None
    finally:
        receiver.close()
        if child.poll() is None:
            child.kill()
        child.wait()


def main(argv: list[str] | None = None) -> int:
    """``python -m crashchat.video FILE...``: what CrashChat would pick from each file, one line per file."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m crashchat.video FILE [FILE...]  (prints which frames CrashChat would pick)")
        return 0 if argv else 2
    status = 0
    for name in argv:
        try:
            clip = load_video(name, isolate=True)
        except VideoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        print(f"{clip.path}: {clip.duration_s:.2f} s, {clip.width}x{clip.height} @ {clip.native_fps:.2f} fps, "
              f"{len(clip.timestamps)} of {clip.filtered_frames} frames at {clip.sample_fps:g} fps, labelled "
              f"{clip.timestamps[0]:.1f}..{clip.timestamps[-1]:.1f} s, via {clip.backend}"
              + "".join(f"\n  note: {n}" for n in clip.notes))
    return status


if __name__ == "__main__":
    # Run as `python -m crashchat.video`, this file is the module `__main__`, and the isolated child
    # could not unpickle `__main__._load` (nor `__main__.VideoLimits`). The importable module's
    # `main` hands the child names it can import.
    from crashchat.video import main as _main

    sys.exit(_main())
