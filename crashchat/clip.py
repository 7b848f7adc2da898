"""What a video is to CrashChat: the `Clip` (picked frames and their labels), the `VideoLimits`
a file must meet before decoding, and `VideoError`, the one-line error for an unusable file.

Plain data; `crashchat.video` makes them, `crashchat.sampling` says which frames and labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from crashchat.sampling import PAPER_FPS, authors_labels

if TYPE_CHECKING:  # transformers is heavy; only `Clip.metadata` needs it, and imports it then.
    from transformers.video_utils import VideoMetadata


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


