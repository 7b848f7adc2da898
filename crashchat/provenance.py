"""How a prediction file was produced: the `OUT.meta.json` that `predict` writes beside `OUT.jsonl`.

One schema for both sides: `crashchat predict` fills it in, the leaderboard validates it (it
arrives from strangers, so every field is typed and bounded) and shows `describe(meta)` as the
row's "how produced". The paper gives no settings for its zero-shot rows; these files make a
verified row reproducible.

>>> meta = example()
>>> validate(meta)["model"]["id"]
'hf:Qwen/Qwen3-VL-8B-Instruct'
>>> describe(meta)
'zero-shot, Qwen3-VL-8B-Instruct, 96 frames @ 10 fps, greedy, max 2048 tokens'
>>> validate({**meta, "format": "x"})
Traceback (most recent call last):
...
crashchat.provenance.ProvenanceError: format: expected 'crashchat-predict-meta/1', got 'x'
"""

from __future__ import annotations

import json
import math
import types
import typing
import unicodedata
from typing import NoReturn, TypedDict

FORMAT = "crashchat-predict-meta/1"
SUFFIX = ".meta.json"
"""`predict --out preds.jsonl` writes `preds.jsonl.meta.json`; the leaderboard recognises this name."""
MAX_BYTES = 64 * 1024
"""A provenance file is a few kB; anything larger is refused before parsing."""
MAX_TEXT = 300
"""Longest string in any field (ids, versions, device names)."""
MAX_DEPTH = 4


class ProvenanceError(ValueError):
    """A provenance file that does not follow the schema; the message names the field."""


# --- the schema ---------------------------------------------------------------------------------
# One TypedDict per block: they are the schema `validate` checks against (field -> type; `| None`
# fields may be null) and the type of what it returns. Unknown keys are refused so a file cannot
# smuggle data into the store; a missing optional key reads as null.


class ModelInfo(TypedDict):
    id: str                   # `hf:<hub id or dir>`, `crashchat`, `videollama3` or `tiny-random`
    backend: str              # `crashchat` (base + group adapters) or `hf` (any transformers video-LLM)
    family: str | None        # the config's model_type, e.g. `qwen3_vl`, `llava_onevision`, `video_llama_3`
    revision: str | None      # resolved commit hash of the hub repo, null for a local folder
    base: str | None          # CrashChat: the base weights used, as named (hub path or folder)
    base_repo: str | None     # CrashChat: the base's hub repo (null for a local folder)
    base_subfolder: str | None  # CrashChat: its folder in that repo (`videollama3_original_model`)
    base_revision: str | None  # CrashChat: the commit its files came from
    linguistic: str | None    # CrashChat: the adapter per group
    perception: str | None
    dtype: str
    attention: str
    trust_remote_code: bool
    random_weights: bool


class FramesInfo(TypedDict):
    sampler: str              # e.g. `authors-fps-filter`: ffmpeg fps=10:round=down + truncating thinning
    fps: float
    max_frames: int
    max_pixels: int | None    # per-frame pixel cap passed to the processor, null for the model's own
    token_budget: int | None  # VideoLLaMA3: merged visual tokens per clip
    policy: str | None        # `benchmark` (fps, max_frames above) or `model-card` (hf: models' own video defaults)
    token_compression: bool | None  # VideoLLaMA3: as the base's config says (see settings_from)
    min_tokens: int | None    # VideoLLaMA3: per-frame floor of merged tokens
    image_mean: list[float] | None
    image_std: list[float] | None
    settings_from: dict[str, str] | None  # setting -> the config file it was read from, or `default (why)`


class PromptInfo(TypedDict):
    format: str               # `authors-eval` (split question with `<video>\n`) or `chat-template`
    video_tag: bool           # whether the split's literal `<video>\n` stays in the question
    system_prompt: bool


class GenerationInfo(TypedDict):
    do_sample: bool
    num_beams: int
    max_new_tokens: int
    guided: bool              # format-guided decoding for the closed-form tasks
    repetition_stop: bool     # the exact-loop guard was on (predict: off by default, as the authors)


class RunInfo(TypedDict):
    started_at: str           # ISO 8601, UTC
    finished_at: str | None
    device: str               # `NVIDIA H200`, `cpu`
    processes: int
    tasks: list[str]


class AnswersInfo(TypedDict):
    written: int
    skipped: int              # questions not answered (missing or unreadable videos)
    videos_failed: int
    stopped_by_repetition: int | None


class Provenance(TypedDict):
    """A whole `.meta.json` file, as `validate` returns it (every key present)."""

    format: str
    model: ModelInfo
    frames: FramesInfo
    prompt: PromptInfo
    generation: GenerationInfo
    run: RunInfo
    answers: AnswersInfo
    packages: dict[str, str]  # name -> version (crashchat, torch, transformers, peft, ...)


_INVISIBLE_CATEGORIES = ("Cf", "Zl", "Zp", "Co", "Cs", "Cn")


def _check_text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ProvenanceError(f"{where}: expected a string, got {type(value).__name__}")
    if len(value) > MAX_TEXT:
        raise ProvenanceError(f"{where}: longer than {MAX_TEXT} characters")
    bad = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise ProvenanceError(f"{where}: control character U+{ord(bad):04X} not allowed")
    # Format characters (bidi controls, zero-width, soft hyphen...), line separators, unassigned.
    hidden = next((c for c in value if unicodedata.category(c) in _INVISIBLE_CATEGORIES), None)
    if hidden:
        raise ProvenanceError(f"{where}: invisible or bidi character U+{ord(hidden):04X} not allowed")
    return value


def _fields(block: type) -> dict[str, object]:
    """A TypedDict's fields and their types (evaluated: this module's annotations are strings)."""
    return typing.get_type_hints(block)


def _check(value: object, kind: object, where: str) -> object:
    """`value` checked against one schema type; returns it normalised (ints in float fields as floats)."""
    if isinstance(kind, type) and typing.is_typeddict(kind):
        if not isinstance(value, dict):
            raise ProvenanceError(f"{where or 'file'}: expected an object, got {type(value).__name__}")
        fields = _fields(kind)
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ProvenanceError(f"{_join(where, unknown[0])}: unknown field")
        return {k: _check(value.get(k), sub, _join(where, k)) for k, sub in fields.items()}
    optional = isinstance(kind, types.UnionType) and type(None) in kind.__args__
    if value is None and optional:
        return None
    if value is None:
        raise ProvenanceError(f"{where}: missing")
    if isinstance(kind, types.UnionType):  # `X | None`: the X
        (kind,) = (k for k in kind.__args__ if k is not type(None))
    if kind is str:
        return _check_text(value, where)
    if kind is bool:
        if not isinstance(value, bool):
            raise ProvenanceError(f"{where}: expected true or false, got {type(value).__name__}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9:
            raise ProvenanceError(f"{where}: expected a non-negative integer, got {value!r}"[:200])
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ProvenanceError(f"{where}: expected a non-negative finite number, got {value!r}"[:200])
        return float(value)
    if kind == list[str]:
        if not isinstance(value, list) or len(value) > 50:
            raise ProvenanceError(f"{where}: expected a list of at most 50 strings")
        return [_check_text(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind == list[float]:
        if not isinstance(value, list) or len(value) > 8:
            raise ProvenanceError(f"{where}: expected a list of at most 8 numbers")
        return [_check(v, float, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind == dict[str, str]:
        if not isinstance(value, dict) or len(value) > 50:
            raise ProvenanceError(f"{where}: expected an object of at most 50 text: text pairs")
        return {_check_text(k, f"{where} key"): _check_text(v, _join(where, k)) for k, v in value.items()}
    raise AssertionError(f"schema type {kind!r}")  # pragma: no cover - a type the checks above lack


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def validate(meta: object) -> Provenance:
    """The provenance dict, normalised (every schema key present); `ProvenanceError` names the field."""
    if not isinstance(meta, dict):
        raise ProvenanceError(f"file: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ProvenanceError(f"format: expected {FORMAT!r}, got {meta.get('format')!r}"[:200])
    return typing.cast(Provenance, _check(meta, Provenance, ""))  # checked field by field against it


def loads(data: bytes, name: str = "provenance") -> Provenance:
    """Parse and validate the bytes of a `.meta.json` file; errors are one line starting with `name`."""
    if len(data) > MAX_BYTES:
        raise ProvenanceError(f"{name}: {len(data)} bytes exceeds the {MAX_BYTES} byte limit of a provenance file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProvenanceError(f"{name}: not UTF-8 (byte {exc.start})") from None
    if _nesting(text) > MAX_DEPTH + 1:
        raise ProvenanceError(f"{name}: nested deeper than the schema allows")
    try:
        meta = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ProvenanceError(f"{name}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except ValueError as exc:
        raise ProvenanceError(f"{name}: {exc}") from None
    try:
        return validate(meta)
    except ProvenanceError as exc:
        raise ProvenanceError(f"{name}: {exc}") from None


def _no_constant(token: str) -> NoReturn:
    raise ValueError(f"non-finite number {token} not allowed")


def _nesting(text: str) -> int:
    """Bracket depth outside strings, found without recursion (json.loads recurses)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def describe(meta: Provenance) -> str:
    """One short line for the leaderboard's "how produced" column (plain text, shown escaped)."""
    model, frames, gen = meta["model"], meta["frames"], meta["generation"]
    ident = model["id"]
    if model["backend"] == "hf":
        name = ident.removeprefix("hf:").rstrip("/").rsplit("/", 1)[-1]
        kind = "zero-shot"
    else:
        name = {"crashchat": "CrashChat adapters", "videollama3": "VideoLLaMA3 base"}.get(ident, ident)
        kind = "zero-shot" if ident == "videollama3" else "fine-tuned"
    parts = [kind, name, f"{frames['max_frames']} frames @ {frames['fps']:g} fps"
             + (" (model card)" if frames.get("policy") == "model-card" else "")]
    parts.append("greedy" if not gen["do_sample"] and gen["num_beams"] == 1 else "sampled")
    parts.append(f"max {gen['max_new_tokens']} tokens")
    if gen.get("guided"):
        parts.append("guided")
    if model.get("random_weights"):
        parts.append("RANDOM WEIGHTS")
    return ", ".join(parts)


def example() -> Provenance:
    """A complete, valid provenance dict (documentation and tests)."""
    return {
        "format": FORMAT,
        "model": {"id": "hf:Qwen/Qwen3-VL-8B-Instruct", "backend": "hf", "family": "qwen3_vl",
                  "revision": "0123456789abcdef0123456789abcdef01234567", "base": None, "base_repo": None,
                  "base_subfolder": None, "base_revision": None, "linguistic": None,
                  "perception": None, "dtype": "bfloat16", "attention": "sdpa", "trust_remote_code": False,
                  "random_weights": False},
        "frames": {"sampler": "authors-fps-filter", "fps": 10.0, "max_frames": 96, "max_pixels": None,
                   "token_budget": None, "policy": "benchmark", "token_compression": None, "min_tokens": None,
                   "image_mean": None, "image_std": None, "settings_from": None},
        "prompt": {"format": "chat-template", "video_tag": False, "system_prompt": False},
        "generation": {"do_sample": False, "num_beams": 1, "max_new_tokens": 2048, "guided": False,
                       "repetition_stop": False},
        "run": {"started_at": "2026-12-01T00:00:00Z", "finished_at": "2026-12-01T00:25:00Z",
                "device": "NVIDIA H200", "processes": 1, "tasks": ["crash_recognition"]},
        "answers": {"written": 1839, "skipped": 0, "videos_failed": 0, "stopped_by_repetition": 0},
        "packages": {"crashchat": "0.1.0", "torch": "2.11.0", "transformers": "5.17.0"},
    }
