"""Video input: open a clip, check it against limits, and sample frames the way CrashChat was trained.

    from crashchat.video import load_video
    clip = load_video("dashcam.mp4")            # (T, H, W, 3) uint8 frames + timestamps
    processor(videos=[clip.frames], video_metadata=[clip.metadata()], text=...)

Sampling follows the paper: a 10 fps grid of target times ``k / 10`` s over the clip, uniformly
thinned to at most 96 when the clip is longer than 9.6 s. Each target time gets the decoded frame
whose *real* presentation time is nearest (ties go to the earlier frame). Indexing by
``time * average_fps`` instead mislabels frames of variable-frame-rate dashcam files by up to a
second (measured: ``../shared/reference/video.md``).

Decoding uses decord (fast, applies rotation metadata); when decord is missing or refuses a file,
PyAV decodes packet by packet and skips damaged packets, which rescues files with a corrupt run
in the middle. Cheap checks (suffix, size, container, duration, resolution) run before any decoding,
and every failure becomes one `VideoError` line naming the file. ``isolate=True`` decodes in a
child process with a timeout, so a decoder that crashes or hangs on a hostile file cannot take the
caller down with it.
"""

from __future__ import annotations

import errno
import math
import multiprocessing.connection
import os
import pickle
import re
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # transformers is heavy; only `Clip.metadata` needs it, and imports it then.
    from transformers.video_utils import VideoMetadata

SUPPORTED_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm")
PAPER_FPS = 10.0
PAPER_MAX_FRAMES = 96

# Frame times are compared at 0.1 ms: decord reports float32 seconds, PyAV exact fractions, and
# both must pick the same frame. Two candidates closer than _TIE to equidistant count as a tie.
_TIME_DECIMALS = 4
_TIE = 5e-4


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
    """Frames sampled from one video, with the times the model is told they were taken."""

    path: str
    frames: np.ndarray
    """(T, H, W, 3) uint8 RGB."""
    timestamps: tuple[float, ...]
    """Seconds of each sampled frame on the sampling grid (k / sample_fps)."""
    duration_s: float
    native_fps: float
    width: int
    height: int
    backend: str
    """"decord" or "pyav"."""
    sample_fps: float = PAPER_FPS
    """Rate of the sampling grid the timestamps lie on."""
    notes: tuple[str, ...] = ()
    """What went wrong but was recovered from (decord refused the file, damaged packets skipped)."""

    def metadata(self) -> VideoMetadata:
        """`VideoMetadata` for the transformers VideoLlama3 processor.

        The processor labels frame i ``Time {frames_indices[i] / fps:.1f}s``, so we describe the
        sampling grid: ``fps`` is the grid's rate and ``frames_indices`` the grid positions k,
        which gives exactly ``timestamps[i]``. ``total_num_frames`` is the length of the full
        grid, so ``sampled_fps`` reports the effective rate after thinning. Pass the frames with
        ``do_sample_frames=False`` (the processor's default): they are already sampled.
        """
        from transformers.video_utils import VideoMetadata

        return VideoMetadata(
            total_num_frames=grid_length(self.duration_s, self.sample_fps),
            fps=self.sample_fps,
            width=self.width,
            height=self.height,
            duration=self.duration_s,
            video_backend=self.backend,
            frames_indices=[int(round(t * self.sample_fps)) for t in self.timestamps],
        )


def grid_length(duration_s: float, fps: float) -> int:
    """How many grid times k / fps fall inside [0, duration_s) (at least one).

    >>> grid_length(3.0, 10), grid_length(3.05, 10), grid_length(0.01, 10)
    (30, 31, 1)
    """
    # The small epsilon keeps 3.0 s from growing a 31st point through float noise.
    return max(1, math.ceil(duration_s * fps - 1e-6))


def sample_times(duration_s: float, fps: float = PAPER_FPS, max_frames: int = PAPER_MAX_FRAMES) -> tuple[float, ...]:
    """Target times in seconds: the k / fps grid, uniformly thinned to at most max_frames.

    >>> sample_times(0.35)
    (0.0, 0.1, 0.2, 0.3)
    >>> t = sample_times(20.0); len(t), t[:3], t[-1]
    (96, (0.0, 0.2, 0.4), 19.9)
    """
    n = grid_length(duration_s, fps)
    if n <= max_frames:
        ks = np.arange(n)
    else:
        ks = np.linspace(0, n - 1, max_frames).round().astype(int)
    return tuple(round(int(k) / fps, 6) for k in ks)


class _Picker:
    """Streams frames in presentation order and gives each target time its nearest frame.

    One implementation for both backends, so decord and PyAV choose the same frames.
    """

    def __init__(self, targets: tuple[float, ...]):
        self.targets = targets
        self.chosen: list[tuple[float, Any]] = []
        self._prev: tuple[float, Any] | None = None

    def feed(self, t: float, item: Any) -> None:
        t = round(t, _TIME_DECIMALS)
        while len(self.chosen) < len(self.targets) and t >= self.targets[len(self.chosen)] - _TIE:
            target = self.targets[len(self.chosen)]
            if self._prev is not None and (target - self._prev[0]) <= (t - target) + _TIE:
                self.chosen.append(self._prev)
            else:
                self.chosen.append((t, item))
        self._prev = (t, item)

    def finish(self) -> list[tuple[float, Any]]:
        while self._prev is not None and len(self.chosen) < len(self.targets):
            self.chosen.append(self._prev)
        return self.chosen


def nearest_frames(frame_times: list[float], targets: tuple[float, ...]) -> list[int]:
    """Index of the frame nearest each target time (ties to the earlier frame).

    >>> nearest_frames([0.0, 0.05, 0.3, 0.33, 0.9], (0.0, 0.1, 0.2, 0.3, 0.4, 1.0))
    [0, 1, 2, 2, 3, 4]
    """
    picker = _Picker(targets)
    for i, t in enumerate(frame_times):
        picker.feed(t, i)
    return [i for _, i in picker.finish()]


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
    """Check, decode and sample one video; raises `VideoError` for any unusable file.

    fps sets the sampling grid (paper: 10), max_frames its cap (paper: 96). With isolate=True the
    probe and the decoding run in a child process killed after ``limits.timeout_s``.
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
    header_duration, native_fps, _, _ = probe(path, limits)

    def plan(starts: np.ndarray) -> tuple[float, tuple[float, ...]]:
        duration = _effective_duration(path, header_duration, starts, native_fps, limits)
        return duration, sample_times(duration, fps, max_frames)

    notes: list[str] = []
    try:
        frames, times, targets, duration = _decode_decord(path, plan)
        backend = "decord"
    except ImportError:
        frames = None
        notes.append("decord is not installed; decoded with PyAV")
    except VideoError:
        raise
    except Exception as exc:  # decord raises RuntimeError, DECORDError, IndexError... on bad input
        frames = None
        notes.append(f"decord failed ({_first_line(exc)}); decoded with PyAV")
    else:
        if len(frames) != len(targets):
            notes.append(f"decord returned {len(frames)} of {len(targets)} frames; decoded with PyAV")
            frames = None
        elif (problem := _coverage_problem(targets, times, duration, native_fps)) is not None:
            # decord may stop early on a damaged file; the tolerant PyAV pass gets a second look.
            notes.append(f"decord: {problem}; decoded with PyAV")
            frames = None
    if frames is None:
        frames, times, targets, duration, pyav_notes = _decode_pyav(path, plan)
        backend = "pyav"
        notes.extend(pyav_notes)
        if len(frames) != len(targets):
            raise VideoError(f"{path}: decoded {len(frames)} of {len(targets)} frames (damaged or truncated file)")
        problem = _coverage_problem(targets, times, duration, native_fps)
        if problem is not None:
            raise VideoError(f"{path}: {problem}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoError(f"{path}: the decoder returned frames of shape {frames.shape} and type {frames.dtype}")
    return Clip(path=path, frames=frames, timestamps=targets, duration_s=duration, native_fps=native_fps,
                width=int(frames.shape[2]), height=int(frames.shape[1]), backend=backend, sample_fps=float(fps),
                notes=tuple(notes))


def _effective_duration(path: str, header: float, starts: np.ndarray, native_fps: float, limits: VideoLimits) -> float:
    """The header's duration, stretched to the last frame's end when frames run past it.

    ffmpeg's mp4 muxer derives the duration from decode times, which undercounts a
    variable-frame-rate stream with B-frames (a 2.95 s last frame under a 2.6 s header).
    Both backends use this with the same frame start times, so they sample the same grid.
    """
    if len(starts) == 0:
        return header
    step = float(np.median(np.diff(starts))) if len(starts) > 1 else (1.0 / native_fps if native_fps > 0 else 0.0)
    end = round(float(starts[-1]) + step, _TIME_DECIMALS)
    if end > limits.max_duration_s:
        raise VideoError(f"{path}: frames run to {end:.1f} s, over the {limits.max_duration_s:g} s duration limit")
    return max(header, end)


def _coverage_problem(targets: tuple[float, ...], times: list[float], duration: float,
                      native_fps: float) -> str | None:
    """Why the chosen frames do not stand for their target times, or None when they do.

    A frame may sit a little off its target (a slow or variable frame rate), but not a second
    away: that means the file promised frames it does not hold (truncated, badly damaged).
    """
    tolerance = max(1.0, 2.0 / native_fps) if native_fps > 0 else 1.0
    for target, t in zip(targets, times):
        if abs(t - target) > tolerance:
            return (f"no decodable frame near {target:.1f} s (nearest at {t:.1f} s of a {duration:.1f} s video): "
                    "the file is truncated or damaged")
    return None


def _decode_decord(path: str, plan: Any) -> tuple[np.ndarray, list[float], tuple[float, ...], float]:
    """decord: frame times from its index, then one batched read of the chosen frames."""
    import decord

    # decord's "auto" (0) threads measured 2.7x slower than 2 threads on a 2-core machine.
    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=max(1, min(4, os.cpu_count() or 1)))
    count = len(reader)
    if count == 0:
        raise RuntimeError("no frames")
    # Start times of every frame in presentation order, relative to the stream start.
    starts = reader.get_frame_timestamp(list(range(count)))[:, 0].astype(np.float64).round(_TIME_DECIMALS)
    if not (np.all(np.isfinite(starts)) and starts.min() >= -_TIE and np.all(np.diff(starts) > 0)):
        # AVI (h264 with B-frames) has no presentation times and decord reports AV_NOPTS_VALUE,
        # yet its frame order is right: AVI is constant-rate, so frame i is shown at i / fps.
        fps = reader.get_avg_fps()
        if Path(path).suffix.lower() != ".avi" or not fps > 0:
            raise RuntimeError("no usable frame timestamps")
        starts = (np.arange(count) / fps).round(_TIME_DECIMALS)
    duration, targets = plan(starts)
    picker = _Picker(targets)
    for i, t in enumerate(starts.tolist()):
        picker.feed(t, i)
    chosen = picker.finish()
    frames = reader.get_batch([i for _, i in chosen]).asnumpy()
    return frames, [t for t, _ in chosen], targets, duration


def _is_avi(container: Any) -> bool:
    return "avi" in container.format.name.split(",")


def _pyav_frame_starts(path: str) -> np.ndarray:
    """Presentation times of every video packet, from a demux pass that decodes nothing."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        if _is_avi(container):
            # AVI stores no presentation times (packet times are decode times), but it is
            # constant-rate by design: frame n is shown at n / rate.
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise VideoError(f"{path}: an AVI file without a frame rate")
            count = sum(1 for packet in container.demux(stream) if packet.size)
            return (np.arange(count) / float(rate)).round(_TIME_DECIMALS)
        pts = sorted({packet.pts for packet in container.demux(stream) if packet.pts is not None})
        if not pts:
            return np.zeros(0)
        origin = stream.start_time if stream.start_time is not None else pts[0]
        return np.array([round(float((p - origin) * stream.time_base), _TIME_DECIMALS) for p in pts])


def _decode_pyav(path: str, plan: Any) -> tuple[np.ndarray, list[float], tuple[float, ...], float, list[str]]:
    """PyAV, sequential and tolerant: a packet that fails to decode is counted and skipped.

    Returns the frames, the times of the frames chosen, the target times, the duration and
    notes on what was skipped.
    """
    import av

    damaged = untimed = 0
    try:
        duration, targets = plan(_pyav_frame_starts(path))
        picker = _Picker(targets)
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            by_count = _is_avi(container)
            rate = stream.average_rate or stream.guessed_rate
            origin = stream.start_time
            last_pts = None
            shown = 0
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    damaged += 1
                    continue
                for frame in decoded:
                    if by_count:
                        t = float(shown / rate)
                    elif frame.pts is None or (last_pts is not None and frame.pts <= last_pts):
                        untimed += 1  # no usable time, or out of order after damage: cannot be placed
                        continue
                    else:
                        if origin is None:
                            origin = frame.pts
                        last_pts = frame.pts
                        t = float((frame.pts - origin) * frame.time_base)
                    shown += 1
                    # Kept in YUV: only the chosen frames get converted below.
                    picker.feed(t, frame)
            chosen = picker.finish()
            arrays: dict[int, np.ndarray] = {}
            frames = []
            for _, frame in chosen:
                if id(frame) not in arrays:
                    arrays[id(frame)] = _to_rgb(frame)
                frames.append(arrays[id(frame)])
    except (av.FFmpegError, OSError) as exc:
        if getattr(exc, "errno", None) in (errno.ENOMEM, errno.EAGAIN):
            raise VideoError(f"{path}: ran out of memory or threads while decoding ({_first_line(exc)})") from None
        raise VideoError(f"{path}: not a readable video ({_first_line(exc)})") from None
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded (truncated or damaged file)")
    notes = []
    if damaged:
        notes.append(f"{damaged} damaged packet(s) skipped; nearby frames may show artifacts")
    if untimed:
        notes.append(f"{untimed} frame(s) without a usable timestamp skipped")
    return np.stack(frames), [t for t, _ in chosen], targets, duration, notes


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
    path, target, args, memory_bytes = pickle.load(sys.stdin.buffer)
    try:
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
    """``python -m crashchat.video FILE...``: probe and sample each file, one line per file."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m crashchat.video FILE [FILE...]  (prints what CrashChat would sample)")
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
              f"{len(clip.timestamps)} frames at {clip.timestamps[0]:.1f}..{clip.timestamps[-1]:.1f} s via {clip.backend}"
              + "".join(f"\n  note: {n}" for n in clip.notes))
    return status


if __name__ == "__main__":
    sys.exit(main())
