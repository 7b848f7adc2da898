"""The authors' frame loader, rebuilt for tests from its description, around the real fps filter.

Their `load_video` runs ``ffmpeg -i VIDEO -vf fps=10:round=down -f rawvideo -pix_fmt rgb24 pipe:``,
labels output frame k with ``np.arange(start_time, start_time + duration + 0.1, 0.1)[k]``
(``start_time``: the video stream's, ``duration``: the container's, both as ffprobe prints them)
and keeps ``np.linspace(0, n - 1, 96, dtype=int)`` of n > 96 outputs. Here the filter is the real
one: libavfilter's ``fps`` in an ``av.filter.Graph`` (buffer -> fps -> buffersink), fed with every
decoded frame the way the ffmpeg command line feeds it: timestamps shifted by minus the file's start
time, end of stream at the last frame's pts plus its duration. Nothing here imports
`crashchat.video`: CrashChat computes the same choice without running the filter, and the tests
compare the two. Which source frame each output is comes from the frame-number barcode that
`crashchat.synthetic` burns into every frame.

The command line itself is not used (CI has no ffmpeg binary). Measured here against Debian's
ffmpeg 5.1 CLI on the same clips: identical for constant-rate clips and for start offsets; for a
variable-frame-rate mp4 the 5.1 CLI ends the stream at the last frame's start (so it drops the
last 0.1 s slot or more), where this graph (FFmpeg 8's libraries) ends it after the last frame's
duration; and where another stream starts before the video, the CLI repeats the first frame for
that gap (its output-side frame-rate sync, not the fps filter).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from crashchat.synthetic import read_frame_number


@dataclass
class AuthorsFrames:
    """What the authors' loader would hand the model for one clip."""

    numbers: list[int]
    """Barcode (= source frame number in presentation order) of each frame kept."""
    labels: np.ndarray
    """Their label of each frame kept (float64 seconds; may be shorter than numbers, see `authors_load`)."""
    filtered: int
    """Frames out of the fps filter before thinning."""
    kept: list[int]
    """Which filter outputs were kept."""
    start_time: float
    duration: float


def _ffprobe_time(value: float) -> float:
    return float(f"{value:f}")  # ffprobe prints seconds with "%f"; the loader parses that text


def run_fps_filter(path, fps: str = "10") -> tuple[list[int], float, float]:
    """Barcodes of the frames out of ``fps=<fps>:round=down``, the stream start and container duration."""
    numbers: list[int] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        source = graph.add_buffer(template=stream)
        fps_node = graph.add("fps", f"fps={fps}:round=down")
        sink = graph.add("buffersink")
        source.link_to(fps_node)
        fps_node.link_to(sink)
        graph.configure()
        # The ffmpeg CLI subtracts the file's start time (microseconds, rescaled half away from zero).
        shift_exact = Fraction(container.start_time or 0, 1_000_000) / Fraction(stream.time_base)
        shift = int(abs(shift_exact) + Fraction(1, 2)) * (1 if shift_exact >= 0 else -1)

        def drain() -> None:
            while True:
                try:
                    frame = graph.pull()
                except (av.BlockingIOError, av.EOFError):
                    return
                numbers.append(read_frame_number(frame.to_ndarray(format="rgb24")))

        for frame in container.decode(stream):
            frame.pts -= shift
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
        tb = stream.time_base
        start = _ffprobe_time(stream.start_time * (tb.numerator / tb.denominator)) if stream.start_time is not None else 0.0
        duration = _ffprobe_time(container.duration / 1_000_000)
    return numbers, start, duration


def authors_load(path, fps: float = 10, max_frames: int = 96) -> AuthorsFrames:
    """The authors' frames and labels for one clip (their labels may run out: see the `labels` field)."""
    numbers, start, duration = run_fps_filter(path, fps=str(fps))
    n = len(numbers)
    step = 1 / fps
    timestamps = np.arange(start, start + duration + step, step)[:n]
    kept = list(range(n))
    if n > max_frames:
        kept = [int(i) for i in np.linspace(0, n - 1, max_frames, dtype=int)]
    labels = np.array([timestamps[i] for i in kept if i < len(timestamps)])
    return AuthorsFrames(numbers=[numbers[i] for i in kept], labels=labels, filtered=n, kept=kept,
                         start_time=start, duration=duration)


def run_fps_filter_on_times(pts, durations, time_base: Fraction, fps: str = "10") -> list[int]:
    """Push tiny frames with these pts and durations through ``fps=<fps>:round=down``.

    Returns, per output frame, the position of the input frame it is (each input carries its
    position in its pixels). Tests the filter's logic on any timeline, no encoding involved.
    """
    graph = av.filter.Graph()
    source = graph.add_buffer(width=16, height=16, format="gray", time_base=time_base)
    fps_node = graph.add("fps", f"fps={fps}:round=down")
    sink = graph.add("buffersink")
    source.link_to(fps_node)
    fps_node.link_to(sink)
    graph.configure()
    out: list[int] = []

    def drain() -> None:
        while True:
            try:
                frame = graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            pixels = frame.to_ndarray()
            out.append(int(pixels[0, 0]) + 256 * int(pixels[0, 1]))

    for i, (pts_i, duration) in enumerate(zip(pts, durations, strict=True)):
        image = np.zeros((16, 16), np.uint8)
        image[0, 0], image[0, 1] = i % 256, i // 256
        frame = av.VideoFrame.from_ndarray(image, format="gray")
        frame.pts, frame.time_base, frame.duration = pts_i, time_base, duration
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return out
