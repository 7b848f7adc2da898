"""What every browser session of the tab shares: the model (loaded once per process), decoded
uploads, the example clips, and the GPU checks.

The model loads on first use, and later callers wait for that load. On a Hugging Face ZeroGPU
Space (`SPACES_ZERO_GPU` set and `spaces` importable) the GPU is attached only inside `spaces.GPU`
calls, so the layout loads the model at startup there instead, on the CPU, and moves it as
ZeroGPU expects (`crashchat.chat.zerogpu`).
"""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from crashchat.chat.config import TabConfig
from crashchat.chat.zerogpu import zero_gpu

if TYPE_CHECKING:
    from crashchat.model import CrashChat
    from crashchat.video import Clip

# --- the model ---------------------------------------------------------------------------------------

_MODELS: dict[str, CrashChat] = {}
_MODEL_LOCK = threading.Lock()


MODEL_PACKAGES = ("torch", "transformers", "peft", "av", "matplotlib")
"""What the chat tab's model work needs beyond the leaderboard's packages (the model, video
decoding, the timeline plot); all in `requirements.txt`. Without them the app still starts: the
chat tab says what is missing and how to add it, the leaderboard tab works."""


def missing_model_packages() -> list[str]:
    """The `MODEL_PACKAGES` that cannot be imported here (found without importing them)."""
    missing = []
    for name in MODEL_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a finder that refuses it, a broken half-install
            found = False
        if not found:
            missing.append(name)
    return missing


def gpu_available() -> bool:
    if zero_gpu():
        return True
    if missing_model_packages():
        return False
    import torch

    return torch.cuda.is_available()


def needs_gpu(cfg: TabConfig) -> bool:
    """The real 7B model on a machine without a GPU: the tab refuses model work instead of crawling."""
    return cfg.model != "tiny-random" and not gpu_available()


def loaded_model(name: str) -> CrashChat | None:
    return _MODELS.get(name)


def get_model(name: str) -> CrashChat:
    """The process-wide model `name`, loaded on first call (later callers wait for that load)."""
    with _MODEL_LOCK:
        if name not in _MODELS:
            if zero_gpu():
                from crashchat.chat import zerogpu

                _MODELS[name] = zerogpu.load_model(name)
            else:
                from crashchat.loading import ModelConfig, load_model

                _MODELS[name] = load_model(ModelConfig(name=name))
        return _MODELS[name]


class _NeverRaised(Exception):
    pass


def out_of_memory() -> type[BaseException]:
    """The exception a GPU raises when a clip does not fit (caught per request); without torch
    nothing can raise it."""
    if "torch" in missing_model_packages():
        return _NeverRaised
    import torch

    return torch.OutOfMemoryError


def free_gpu_memory() -> None:
    if "torch" in missing_model_packages():
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the next request (another user's, maybe) starts clean


# --- uploads -----------------------------------------------------------------------------------------


class _ClipCache:
    """The last few decoded uploads, so Analyze and chat do not decode a file again."""

    def __init__(self, size: int = 4):
        self.size = size
        self._items: OrderedDict[tuple, Clip] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, cfg: TabConfig) -> Clip:
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


def open_clip(path: str, cfg: TabConfig) -> Clip:
    """Decode an upload (cached); raises `VideoError` with a message naming the file, not its temp path."""
    from crashchat.video import VideoError

    if not Path(path).exists():
        raise VideoError(f"{Path(path).name}: the upload is gone from the server; upload it again")
    try:
        return _CLIPS.get(path, cfg)
    except VideoError as exc:
        # Gradio keeps uploads under a random temporary folder: show the user their file name.
        raise VideoError(str(exc).replace(str(path), Path(path).name)) from None


def clip_frames(cfg: TabConfig, video: str | None) -> int:
    """Frames the model would see for `video` (the decoded upload is cached); 0 when unreadable:
    the request then stops at once with its message. (What a ZeroGPU duration is estimated from.)"""
    from crashchat.video import VideoError

    if not video:
        return 0
    try:
        return len(open_clip(video, cfg).frames)
    except (VideoError, OSError):
        return 0


# Container and codec pairs every browser plays (Gradio's own list): only these go to the preview
# player, so an upload never meets the player's generic "Video not playable" error, and Gradio
# never converts a large upload with ffmpeg just to preview it.
BROWSER_PLAYABLE = {(".mp4", "h264"), (".mp4", "av1"), (".webm", "vp8"), (".webm", "vp9"), (".webm", "av1")}


def video_codec(path: str) -> str | None:
    """The first video stream's codec (`h264`, `hevc`, ...), read from the header; None if unknown.

    Called only on files the isolated decoder has already read in full.
    """
    import av

    try:
        with av.open(str(path)) as container:
            return container.streams.video[0].codec_context.name
    except (av.FFmpegError, OSError, IndexError, ValueError):
        return None


# --- examples ----------------------------------------------------------------------------------------


def example_clips(cfg: TabConfig) -> list[Path]:
    """The synthetic example clips, rendered once into the examples folder (no third-party footage)."""
    from crashchat.synthetic import EXAMPLES, make_examples
    from crashchat.weights import cache_root

    folder = cfg.examples_dir if cfg.examples_dir is not None else cache_root() / "examples"
    paths = [Path(folder) / name for name, *_ in EXAMPLES]
    if not all(p.is_file() and p.stat().st_size > 0 for p in paths):
        paths = make_examples(folder)
    return paths
