"""Command-line flags derived from a config dataclass: its fields are the flags, its field docstrings the help.

    parser = argparse.ArgumentParser()
    add_flags(parser, TrainConfig)
    cfg = from_flags(TrainConfig, parser.parse_args())

`max_steps: int | None = None` with its docstring becomes `--max-steps MAX_STEPS` (type int,
default None, help the docstring; `none` gives None); a `bool` becomes `--name` / `--no-name`; a `Literal[...]`
gives the choices; a field without a default is a required flag; a field whose type is itself a
dataclass contributes its own fields' flags, flat (`--fps`, not `--data-fps`), as one help group.
A field without a docstring, of a type with no flag form, or whose flag another field already
took is an error when the parser is built: no field can go without its flag, or drift from it.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import types
import typing
from pathlib import Path

SCALARS = (int, float, str, Path)


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal right after it in the class body), on one line.

    Read from the class's source, the only place Python keeps them (tested in `tests/test_flags.py`).
    """
    body = ast.parse(inspect.cleandoc(inspect.getsource(cls))).body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


class HelpFormatter(argparse.HelpFormatter):
    """Shows each optional flag's default after its help (but not None, which means "not given")."""

    def _get_help_string(self, action):
        shown = action.default not in (None, argparse.SUPPRESS) and not action.required
        return action.help + " (default: %(default)s)" if shown and action.help else action.help


def add_flags(parser: argparse.ArgumentParser, cls: type, *, defaults: object = None, _taken: set | None = None):
    """One flag per field of the dataclass `cls` (see the module docstring); `defaults` overrides the defaults."""
    taken = set() if _taken is None else _taken
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        where = f"{cls.__name__}.{f.name}"
        kind = _unwrap_optional(hints[f.name])
        optional = kind is not hints[f.name]
        default = _default(f, defaults)
        if dataclasses.is_dataclass(kind):
            group = parser.add_argument_group(docs.get(f.name, kind.__name__).rstrip("."))
            add_flags(group, kind, defaults=default, _taken=taken)
            continue
        if f.name not in docs:
            raise TypeError(f"{where} has no docstring: every field's docstring is its flag's help")
        if f.name in taken:
            raise TypeError(f"{where}: flag --{f.name.replace('_', '-')} is taken by another field")
        taken.add(f.name)
        flag = "--" + f.name.replace("_", "-")
        help_text = docs[f.name].replace("%", "%%")
        options: dict = {"dest": f.name, "help": help_text}
        if default is dataclasses.MISSING:
            options["required"] = True
        else:
            options["default"] = default
        if kind is bool:
            action = parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                         **{**options, "help": None})
            action.help = help_text  # set after: 3.11's BooleanOptionalAction appends the default itself
        elif typing.get_origin(kind) is typing.Literal:
            choices = typing.get_args(kind)
            parser.add_argument(flag, type=type(choices[0]), choices=choices, **options)
        elif kind in SCALARS:
            parser.add_argument(flag, type=_or_none(kind) if optional else kind, **options)
        else:
            raise TypeError(f"{where}: type {hints[f.name]} has no flag form (bool, int, float, str, Path, Literal)")
    return parser


def from_flags(cls: type, args: argparse.Namespace):
    """An instance of `cls` from the flags that `add_flags(parser, cls)` added (nested dataclasses too)."""
    hints, values = typing.get_type_hints(cls), {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        kind = _unwrap_optional(hints[f.name])
        values[f.name] = from_flags(kind, args) if dataclasses.is_dataclass(kind) else getattr(args, f.name)
    return cls(**values)


def _unwrap_optional(kind):
    """`X | None` -> X (None stays the default, not a value one can type)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return kind


def _or_none(kind: type):
    """`kind`, or None for the text `none` (how a user asks for None on the command line)."""

    def convert(text: str):
        return None if text.strip().lower() == "none" else kind(text)

    convert.__name__ = kind.__name__  # argparse names it in "invalid int value: ..."
    return convert


def _default(f: dataclasses.Field, defaults: object):
    if defaults is not None:
        return getattr(defaults, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING
