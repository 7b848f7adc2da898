"""Video input: open a clip, check it against limits, and decode the frames the authors' loader picks.

    from crashchat.video import load_video
    clip = load_video("dashcam.mp4")            # (T, H, W, 3) uint8 frames + their labels
    processor(videos=[clip.frames], video_metadata=[clip.metadata()], text=...)

The paper's numbers were produced by the authors' loader (ffmpeg's ``fps=10:round=down``
filter, labels ``start_time + k / 10``, thinning to 96), so we pick exactly its frames: one
demuxing pass lists the frames' presentation times (`read_timeline`), `crashchat.sampling`
replays the filter on them, and only the chosen frames are decoded. For a 30 fps clip that is
source frames 2, 5, 8, ...: the *last* frame of each 0.1 s slot. The tests compare this, frame by
frame and label by label, with the real filter run through PyAV (``tests/video_oracle.py``).

Decoding uses decord (fast, applies rotation metadata); when decord is missing or refuses a file,
PyAV decodes packet by packet and skips damaged packets, which rescues files with a corrupt run
in the middle. Both pick from the same demuxed frame list, so they return the same frames. Cheap
checks (suffix, size, container, duration, resolution) run before any decoding, and every failure
becomes one `VideoError` line naming the file. ``isolate=True`` decodes in a child process with a
timeout (`crashchat.isolation`), so a decoder that crashes or hangs on a hostile file cannot take
the caller down with it.

The types (`Clip`, `VideoLimits`, `VideoError`) live in `crashchat.clip` and the frame picking in
`crashchat.sampling`; both are importable from here as before.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from bisect import bisect_left
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from crashchat.clip import Clip, VideoError, VideoLimits
from crashchat.isolation import run_isolated
from crashchat.sampling import (
    PAPER_FPS,
    PAPER_MAX_FRAMES,
    SAMPLER,
    Selection,
    SlotPicker,
    Timeline,
    authors_labels,
    fps_filter,
    frame_rate,
    select,
    thin,
)

__all__ = [  # the public names, the re-exported ones included (`from crashchat.video import Clip`)
    "PAPER_FPS", "PAPER_MAX_FRAMES", "SAMPLER", "SUPPORTED_SUFFIXES", "Clip", "Selection", "Timeline",
    "VideoError", "VideoLimits", "authors_labels", "check_file", "fps_filter", "load_video", "main", "probe",
    "read_timeline", "run_isolated", "select", "thin",
]

SUPPORTED_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")

_LABEL_DECIMALS = 6  # Clip.timestamps and source_times; ffprobe prints times with 6 decimals too
_DECORD_TIME_TOLERANCE = 1e-3  # decord reports float32 seconds; 600 s in float32 is exact to 6e-5 s


class _UseFallback(Exception):
    """Skip decord for this file (the message says why)."""



def __getattr__(name: str) -> Any:
    if name == "LabelledMetadata":  # built on first use (it needs transformers): see crashchat.clip
        from crashchat import clip

        return clip.LabelledMetadata
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    step = 1 / float(frame_rate(fps))
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

    rate = frame_rate(fps)
    num = timeline.time_base.numerator * rate.numerator
    den = timeline.time_base.denominator * rate.denominator
    picker = SlotPicker(wanted)
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
# Command line.


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
