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
import unicodedata
from typing import Any

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
# field -> type, or a nested schema. `str?` and `int?` may be null. Unknown keys are refused so a
# file cannot smuggle data into the store; a missing optional key reads as null.

_STR, _OSTR, _INT, _OINT, _FLOAT, _OFLOAT, _BOOL = "str", "str?", "int", "int?", "float", "float?", "bool"

SCHEMA: dict[str, Any] = {
    "format": _STR,
    "model": {
        "id": _STR,              # `hf:<hub id or dir>`, `crashchat`, `videollama3` or `tiny-random`
        "backend": _STR,         # `crashchat` (base + group adapters) or `hf` (any transformers video-LLM)
        "family": _OSTR,         # the config's model_type, e.g. `qwen3_vl`, `llava_onevision`, `video_llama_3`
        "revision": _OSTR,       # resolved commit hash of the hub repo, null for a local folder
        "base": _OSTR,           # CrashChat: the base weights used, as named (hub path or folder)
        "base_repo": _OSTR,      # CrashChat: the base's hub repo (null for a local folder)
        "base_subfolder": _OSTR,  # CrashChat: its folder in that repo (`videollama3_original_model`)
        "base_revision": _OSTR,  # CrashChat: the commit its files came from
        "linguistic": _OSTR,     # CrashChat: the adapter per group
        "perception": _OSTR,
        "dtype": _STR,
        "attention": _STR,
        "trust_remote_code": _BOOL,
        "random_weights": _BOOL,
    },
    "frames": {
        "sampler": _STR,         # e.g. `authors-fps-filter`: ffmpeg fps=10:round=down + truncating thinning
        "fps": _FLOAT,
        "max_frames": _INT,
        "max_pixels": _OINT,     # per-frame pixel cap passed to the processor, null for the model's own
        "token_budget": _OINT,   # VideoLLaMA3: merged visual tokens per clip
        "policy": _OSTR,         # `benchmark` (fps, max_frames above) or `model-card` (hf: models' own video defaults)
        "token_compression": "bool?",  # VideoLLaMA3: as the base's config says (see settings_from)
        "min_tokens": _OINT,     # VideoLLaMA3: per-frame floor of merged tokens
        "image_mean": "list[float]?",
        "image_std": "list[float]?",
        "settings_from": "dict[str,str]?",  # setting -> the config file it was read from, or `default (why)`
    },
    "prompt": {
        "format": _STR,          # `authors-eval` (split question with `<video>\n`) or `chat-template`
        "video_tag": _BOOL,      # whether the split's literal `<video>\n` stays in the question
        "system_prompt": _BOOL,
    },
    "generation": {
        "do_sample": _BOOL,
        "num_beams": _INT,
        "max_new_tokens": _INT,
        "guided": _BOOL,         # format-guided decoding for the closed-form tasks
        "repetition_stop": _BOOL,  # the exact-loop guard was on (predict: off by default, as the authors)
    },
    "run": {
        "started_at": _STR,      # ISO 8601, UTC
        "finished_at": _OSTR,
        "device": _STR,          # `NVIDIA H200`, `cpu`
        "processes": _INT,
        "tasks": "list[str]",
    },
    "answers": {
        "written": _INT,
        "skipped": _INT,         # questions not answered (missing or unreadable videos)
        "videos_failed": _INT,
        "stopped_by_repetition": _OINT,
    },
    "packages": "dict[str,str]",  # name -> version (crashchat, torch, transformers, peft, ...)
}

_INVISIBLE_CATEGORIES = ("Cf", "Zl", "Zp", "Co", "Cs", "Cn")


def _check_text(value: Any, where: str) -> str:
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


def _check(value: Any, kind: Any, where: str) -> Any:
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            raise ProvenanceError(f"{where or 'file'}: expected an object, got {type(value).__name__}")
        unknown = sorted(set(value) - set(kind))
        if unknown:
            raise ProvenanceError(f"{_join(where, unknown[0])}: unknown field")
        return {k: _check(value.get(k), sub, _join(where, k)) for k, sub in kind.items()}
    if value is None and kind.endswith("?"):
        return None
    if value is None:
        raise ProvenanceError(f"{where}: missing")
    base = kind.rstrip("?")
    if base == "str":
        return _check_text(value, where)
    if base == "bool":
        if not isinstance(value, bool):
            raise ProvenanceError(f"{where}: expected true or false, got {type(value).__name__}")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10**9:
            raise ProvenanceError(f"{where}: expected a non-negative integer, got {value!r}"[:200])
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ProvenanceError(f"{where}: expected a non-negative finite number, got {value!r}"[:200])
        return float(value)
    if base == "list[str]":
        if not isinstance(value, list) or len(value) > 50:
            raise ProvenanceError(f"{where}: expected a list of at most 50 strings")
        return [_check_text(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if base == "list[float]":
        if not isinstance(value, list) or len(value) > 8:
            raise ProvenanceError(f"{where}: expected a list of at most 8 numbers")
        return [_check(v, _FLOAT, f"{where}[{i}]") for i, v in enumerate(value)]
    if base == "dict[str,str]":
        if not isinstance(value, dict) or len(value) > 50:
            raise ProvenanceError(f"{where}: expected an object of at most 50 name: version pairs")
        return {_check_text(k, f"{where} key"): _check_text(v, _join(where, k)) for k, v in value.items()}
    raise AssertionError(f"schema kind {kind!r}")  # pragma: no cover - a typo in SCHEMA


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def validate(meta: Any) -> dict:
    """The provenance dict, normalised (every schema key present); `ProvenanceError` names the field."""
    if not isinstance(meta, dict):
        raise ProvenanceError(f"file: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ProvenanceError(f"format: expected {FORMAT!r}, got {meta.get('format')!r}"[:200])
    return _check(meta, SCHEMA, "")


def loads(data: bytes, name: str = "provenance") -> dict:
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


def _no_constant(token: str):
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


def describe(meta: dict) -> str:
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


def example() -> dict:
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
