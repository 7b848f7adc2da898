"""The base weights CrashChat runs on (`--base`), and the processor settings their configs set.

Two bases have short names (`BASES`):
- `authors-eval` (the default): `KDliang/crashchat`, folder `videollama3_original_model`. The
  authors' evaluation merges each LoRA into this model (`tool/merge_and_convert_videollama3_lora.py`
  in their release) and evaluates the merge, so it is the base the paper's numbers came from.
- `videollama3-7b`: `DAMO-NLP-SG/VideoLLaMA3-7B`, the public VideoLLaMA3 release. Whether it holds
  the same bytes as `authors-eval` cannot be checked here (nobody could list either repo).
Both are in the authors' remote-code layout and are converted once (`crashchat.convert`). `--base`
also takes a hub id (`owner/name`), a hub folder (`owner/name/sub/folder`) or a local folder.

Settings that come from configs, not code (`../shared/reference/authors_eval.md`): token
compression runs only when the base's `config.json` says `use_token_compression`; the per-frame
floor of merged tokens (`min_tokens`) and the normalisation (`image_mean`, `image_std`) come from
the vision encoder's preprocessor config, because the authors build their image processor with
`from_pretrained` from the folder the config's `vision_encoder` names (their merge writes
`DAMO-NLP-SG/SigLIP-NaViT` there). `processor_settings` reads each when present, keeps today's
default when absent (compression on, 16, 0.5/0.5), and says where every value came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from crashchat.weights import ADAPTER_REPO, ModelLoadError, hub_error

PREPROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
"""Where a folder's image processor settings are (the first one found is read)."""

VISION_ENCODER = "DAMO-NLP-SG/SigLIP-NaViT"
"""The vision encoder the authors' merge names in every config it evaluates."""


@dataclass(frozen=True)
class HubBase:
    """A base on the Hugging Face Hub: a repo and, when not at its root, the folder holding it."""

    repo: str
    subfolder: str | None = None
    vision_encoder: str | None = None
    """Whose preprocessor config sets the token floor and normalisation, overriding the config's
    `vision_encoder` (None: the config's, else the base's own preprocessor config)."""
    name: str | None = None
    """The short name it was chosen by, if any."""

    @property
    def id(self) -> str:
        """`owner/name` or `owner/name/sub/folder`: how the Hub path is written everywhere."""
        return f"{self.repo}/{self.subfolder}" if self.subfolder else self.repo


BASES = {
    "authors-eval": HubBase(ADAPTER_REPO, "videollama3_original_model", VISION_ENCODER, "authors-eval"),
    "videollama3-7b": HubBase("DAMO-NLP-SG/VideoLLaMA3-7B", None, None, "videollama3-7b"),
}
DEFAULT_BASE = "authors-eval"


def parse_base(text: str | None) -> HubBase | Path:
    """`--base` -> a hub base or a local folder; `ModelLoadError` (one line) for anything else.

    >>> parse_base(None).id, parse_base("videollama3-7b").id
    ('KDliang/crashchat/videollama3_original_model', 'DAMO-NLP-SG/VideoLLaMA3-7B')
    >>> parse_base("owner/repo/sub/dir")
    HubBase(repo='owner/repo', subfolder='sub/dir', vision_encoder=None, name=None)
    """
    if text is None:
        return BASES[DEFAULT_BASE]
    if text in BASES:
        return BASES[text]
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    parts = text.strip("/").split("/")
    if path.exists() or text.startswith((".", "/", "~")) or len(parts) < 2 or not all(parts):
        raise ModelLoadError(f"--base {text}: no such folder, and not a short name ({', '.join(BASES)}), "
                             "a hub id (owner/name) or a hub folder (owner/name/sub/folder)")
    return HubBase("/".join(parts[:2]), "/".join(parts[2:]) or None)


@dataclass(frozen=True)
class BaseInfo:
    """Which base a run used, as recorded in the provenance and the report."""

    id: str
    """As the user would name it: a hub path, a folder, or `tiny-random (built offline)`."""
    name: str | None = None
    """The short name (`authors-eval`, `videollama3-7b`), if it was chosen by one."""
    repo: str | None = None
    subfolder: str | None = None
    revision: str | None = None
    """The hub commit the files came from (None for a local folder)."""

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.name, "repo": self.repo, "subfolder": self.subfolder,
                "revision": self.revision}


# --- settings read from configs -------------------------------------------------------------------

DEFAULTS = {"token_compression": True, "min_tokens": 16, "image_mean": (0.5, 0.5, 0.5), "image_std": (0.5, 0.5, 0.5)}
"""Used when no config sets a value: compression on, the authors' class default floor of 16
merged tokens (4x4), and the native processor's 0.5/0.5 normalisation (SigLIP's)."""
DEFAULT_SOURCE = "default"


@dataclass(frozen=True)
class ProcessorSettings:
    """What the base's configs set for the video processor, and where each value came from."""

    token_compression: bool = DEFAULTS["token_compression"]
    min_tokens: int = DEFAULTS["min_tokens"]
    image_mean: tuple[float, ...] = DEFAULTS["image_mean"]
    image_std: tuple[float, ...] = DEFAULTS["image_std"]
    sources: dict[str, str] = field(default_factory=lambda: dict.fromkeys(DEFAULTS, DEFAULT_SOURCE))
    """Setting -> `<repo or folder> <file>` it was read from, or `default` (with the reason)."""

    def to_json(self) -> dict:
        """`{setting: {"value": ..., "from": ...}}` (inspect's JSON, the report)."""
        return {k: {"value": list(v) if isinstance(v, tuple) else v, "from": self.sources[k]}
                for k, v in ((k, getattr(self, k)) for k in DEFAULTS)}


def processor_settings(folder: Path, where: str, vision_encoder: str | None = None) -> ProcessorSettings:
    """The settings of the base in `folder` (its files as published), `where` naming it in sources.

    Compression: `config.json`'s `use_token_compression`. Floor and normalisation: the preprocessor
    config of `vision_encoder` (given, else the config's `vision_encoder`), a hub id fetched (one
    small file) or a local folder; a base without one uses its own preprocessor config.
    """
    values, sources = dict(DEFAULTS), dict.fromkeys(DEFAULTS, DEFAULT_SOURCE)
    config = _read_json(Path(folder) / "config.json") or {}
    if isinstance(config.get("use_token_compression"), bool):
        values["token_compression"] = config["use_token_compression"]
        sources["token_compression"] = f"{where} config.json"
    else:
        sources["token_compression"] = f"{DEFAULT_SOURCE} ({where} config.json does not set use_token_compression)"
    encoder = vision_encoder or config.get("vision_encoder")
    if isinstance(encoder, str) and encoder.strip():
        found, origin = _encoder_preprocessor(encoder.strip())
    else:
        found, origin = _own_preprocessor(Path(folder), where)
    image = _image_settings(found or {})
    for key in ("min_tokens", "image_mean", "image_std"):
        if key in image:
            values[key], sources[key] = image[key], origin
        else:  # say why the default stands
            sources[key] = f"{DEFAULT_SOURCE} ({origin} does not set it)" if found is not None else \
                f"{DEFAULT_SOURCE} ({origin})"
    return ProcessorSettings(token_compression=values["token_compression"], min_tokens=values["min_tokens"],
                             image_mean=values["image_mean"], image_std=values["image_std"], sources=sources)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _own_preprocessor(folder: Path, where: str) -> tuple[dict | None, str]:
    for name in PREPROCESSOR_FILES:
        found = _read_json(folder / name)
        if found is not None:
            return found, f"{where} {name}"
    return None, f"{where} names no vision encoder and has no {PREPROCESSOR_FILES[0]}"


def _encoder_preprocessor(encoder: str) -> tuple[dict | None, str]:
    """The vision encoder's preprocessor config: a local folder, else one file fetched from the Hub."""
    path = Path(encoder).expanduser()
    if path.is_dir():
        return _own_preprocessor(path, str(path))
    if encoder.startswith((".", "/", "~")) or encoder.count("/") != 1:
        # e.g. a path on the authors' machine, left in a config they published
        return None, f"vision encoder {encoder} is not on this machine nor a hub id"
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from crashchat.weights import revision_of

    what = f"{encoder} ({PREPROCESSOR_FILES[0]}: the token floor and normalisation)"
    try:
        file = Path(hf_hub_download(encoder, PREPROCESSOR_FILES[0]))
    except LocalEntryNotFoundError as exc:  # offline and not cached (a subclass of the next one)
        raise hub_error(what, exc) from exc
    except EntryNotFoundError:  # the repo was reached and has no such file
        return None, f"{encoder} has no {PREPROCESSOR_FILES[0]}"
    except Exception as exc:  # network, auth: the same advice as for every download
        raise hub_error(what, exc) from exc
    revision = revision_of(file.parent)
    found = _read_json(file)
    return found, f"{encoder}{'@' + revision[:12] if revision else ''} {PREPROCESSOR_FILES[0]}"


def _image_settings(config: dict) -> dict:
    """`min_tokens`, `image_mean`, `image_std` where the config (or its image/video section) sets them."""
    out: dict = {}
    sections = [config] + [config[k] for k in ("image_processor", "video_processor") if isinstance(config.get(k), dict)]
    for section in sections:
        value = section.get("min_tokens")
        if "min_tokens" not in out and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out["min_tokens"] = value
        for key in ("image_mean", "image_std"):
            value = section.get(key)
            if key not in out and _triple(value):
                out[key] = tuple(float(x) for x in value)
    return out


def _triple(value) -> bool:
    return (isinstance(value, list) and len(value) == 3
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value))
