"""Flags derived from a config dataclass: types, defaults, help from the field docstrings, nesting, errors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from crashchat.flags import HelpFormatter, add_flags, field_docs, from_flags


@dataclass(frozen=True)
class Inner:
    fps: float = 10.0
    """Frames per second."""
    budget: int | None = 64
    """Tokens per clip (`none`: no limit)."""


@dataclass
class Outer:
    out: Path
    """Run folder."""
    kind: Literal["big", "tiny"] = "big"
    """Which model."""
    steps: int | None = None
    """Stop after this many steps;
    10 % of them warm up."""
    eval: bool = True
    """Evaluate."""
    resume: bool = False
    """Continue."""
    inner: Inner = field(default_factory=lambda: Inner(fps=5.0))
    """Sampling."""


def parse(*argv: str) -> Outer:
    parser = add_flags(argparse.ArgumentParser(formatter_class=HelpFormatter), Outer)
    return from_flags(Outer, parser.parse_args(list(argv)))


def test_every_field_is_a_typed_flag_with_its_default():
    assert parse("--out", "x") == Outer(out=Path("x"), inner=Inner(fps=5.0))  # the factory's default, not the class's
    got = parse("--out", "x", "--kind", "tiny", "--steps", "3", "--no-eval", "--resume", "--fps", "2.5",
                "--budget", "none")
    assert got == Outer(out=Path("x"), kind="tiny", steps=3, eval=False, resume=True, inner=Inner(fps=2.5, budget=None))


@pytest.mark.parametrize("argv", [[], ["--out", "x", "--kind", "huge"], ["--out", "x", "--steps", "many"]])
def test_bad_values_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2 and "error:" in capsys.readouterr().err


def test_help_is_the_docstring_with_the_default():
    parser = add_flags(argparse.ArgumentParser(formatter_class=HelpFormatter), Outer)
    text = " ".join(parser.format_help().split())
    assert "--steps STEPS Stop after this many steps; 10 % of them warm up." in text  # % survives argparse
    assert "--eval, --no-eval Evaluate. (default: True)" in text and "Sampling: --fps FPS" in text
    assert field_docs(Outer)["out"] == "Run folder."


def test_a_field_without_docstring_or_flag_form_is_refused():
    @dataclass
    class Undocumented:
        steps: int = 1

    @dataclass
    class Untyped:
        sizes: list = field(default_factory=list)
        """Sizes."""

    @dataclass
    class Clash:
        fps: float = 1.0
        """Clashes with `Inner.fps`."""
        inner: Inner = field(default_factory=Inner)
        """Sampling."""

    for cls, message in ((Undocumented, "no docstring"), (Untyped, "no flag form"), (Clash, "is taken")):
        with pytest.raises(TypeError, match=message):
            add_flags(argparse.ArgumentParser(), cls)
