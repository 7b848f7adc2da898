"""Settings read from the environment: one reader, one error type, one message shape.

An operator who sets `CRASHCHAT_QUEUE_SIZE=lots` gets `CRASHCHAT_QUEUE_SIZE='lots': expected a
whole number of events (1 or more)` when the app starts (`app.main` prints it as one line and
exits 2), not a traceback, and not at the first user who needs the value. No torch, no Gradio.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """A setting (environment variable or flag) the operator got wrong; the message is one line
    naming the setting, the value and what it expects."""


def from_env(name: str, default: T, parse: Callable[[str], T | None], expect: str) -> T:
    """`name`'s value read by `parse` (unset or blank: `default`); `parse` returns None (or raises
    `ValueError`) for a value it refuses, and the `SettingError` says `expected {expect}`.

    >>> os.environ["X_DEMO"] = " 8 "; from_env("X_DEMO", 1, whole(1), "a whole number (1 or more)")
    8
    >>> os.environ["X_DEMO"] = "0"; from_env("X_DEMO", 1, whole(1), "a whole number (1 or more)")
    Traceback (most recent call last):
    crashchat.settings.SettingError: X_DEMO='0': expected a whole number (1 or more)
    >>> del os.environ["X_DEMO"]; from_env("X_DEMO", 1, whole(1), "a whole number (1 or more)")
    1
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None:
        raise SettingError(f"{name}={raw!r}: expected {expect}")
    return value


def whole(least: int, most: int | None = None) -> Callable[[str], int | None]:
    """A parser of whole numbers from `least` to `most` (no upper bound when None)."""
    def parse(raw: str) -> int | None:
        value = int(raw)
        return value if value >= least and (most is None or value <= most) else None
    return parse


def positive(raw: str) -> float | None:
    """A finite number above zero (`nan`, `inf`, 0 and negatives are refused)."""
    value = float(raw)
    return value if value > 0 and math.isfinite(value) else None


def flag(raw: str) -> bool | None:
    """On or off: 1/true/yes/on or 0/false/no/off, any case."""
    return {"1": True, "true": True, "yes": True, "on": True,
            "0": False, "false": False, "no": False, "off": False}.get(raw.lower())
