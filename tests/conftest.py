"""Shared fixtures: the authors' test split from ../shared (never copied into the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def split_dir() -> Path:
    """The real test split: `CRASHCHAT_TEST_SPLIT_DIR`, else `../shared/data/crashchat`."""
    path = Path(os.environ.get("CRASHCHAT_TEST_SPLIT_DIR", REPO.parent / "shared/data/crashchat"))
    if not path.is_dir():
        pytest.skip(f"the shared test split is not at {path}")
    return path


@pytest.fixture(scope="session")
def split(split_dir):
    """The real test split, read once (`leaderboard.split.Split`); tests must not modify it."""
    from leaderboard.split import load_split

    return load_split(split_dir)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny-model ops gain nothing from intra-op threads; on a busy CPU two threads ran 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def crash_clip(tmp_path_factory) -> Path:
    """A 3 s, 10 fps, 64x64 synthetic h264 dashcam clip; the cars collide at 1.8 s (`synthetic.crash_time`)."""
    from crashchat.synthetic import write_clip

    return write_clip(tmp_path_factory.mktemp("clips") / "crash_synthetic.mp4", seconds=3.0, scene="crash")


@pytest.fixture(scope="session")
def normal_clip(tmp_path_factory) -> Path:
    """A 3 s, 10 fps, 64x64 synthetic h264 clip where nothing happens (the left car overtakes)."""
    from crashchat.synthetic import write_clip

    return write_clip(tmp_path_factory.mktemp("clips") / "normal_synthetic.mp4", seconds=3.0, scene="normal")


@pytest.fixture(scope="session")
def tiny_crashchat():
    """The tiny random CrashChat (2-layer VideoLLaMA3 + two random adapters) on CPU, loaded once."""
    from crashchat.loading import ModelConfig, load_model

    return load_model(ModelConfig(name="tiny-random", device="cpu"))
