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
