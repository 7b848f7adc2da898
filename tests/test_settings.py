"""`crashchat.settings`: environment settings read one way, refused in one line."""

from __future__ import annotations

import pytest

from crashchat.settings import SettingError, flag, from_env, positive, whole


def test_unset_or_blank_is_the_default_and_a_value_is_read_without_spaces(monkeypatch):
    monkeypatch.delenv("X_SETTING", raising=False)
    assert from_env("X_SETTING", 7, whole(1), "n") == 7
    monkeypatch.setenv("X_SETTING", "  ")
    assert from_env("X_SETTING", None, whole(0), "n") is None
    monkeypatch.setenv("X_SETTING", " 12 ")
    assert from_env("X_SETTING", 7, whole(1), "n") == 12
    monkeypatch.setenv("X_SETTING", "0.25")
    assert from_env("X_SETTING", 2.0, positive, "n") == 0.25
    monkeypatch.setenv("X_SETTING", "OFF")
    assert from_env("X_SETTING", None, flag, "n") is False


@pytest.mark.parametrize(("parse", "raw"), [
    (whole(1), "0"), (whole(1), "1.5"), (whole(1), "ten"), (whole(0), "-1"), (whole(1, 65535), "65536"),
    (positive, "0"), (positive, "-2"), (positive, "nan"), (positive, "inf"), (positive, "soon"),
    (flag, "maybe"), (flag, "2"),
])
def test_a_refused_value_names_the_variable_the_value_and_what_it_expects(monkeypatch, parse, raw):
    monkeypatch.setenv("X_SETTING", raw)
    with pytest.raises(SettingError) as caught:
        from_env("X_SETTING", None, parse, "what it wants")
    assert str(caught.value) == f"X_SETTING={raw!r}: expected what it wants"
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError keep working


def test_bounds_are_inclusive():
    assert whole(1, 65535)("1") == 1 and whole(1, 65535)("65535") == 65535
    assert whole(0)("0") == 0
