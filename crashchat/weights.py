"""Where CrashChat's weights come from: the adapters' hub ids, the download, the cache, the LoRA settings.

(Which base, and what its configs set: `crashchat.bases`.)

A small module of its own because both loading (`crashchat.loading`) and conversion
(`crashchat.convert`) need it, and neither should import the other.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

ADAPTER_REPO = "KDliang/crashchat"
"""The authors' release: the adapters, and the base they evaluated on (`crashchat.bases`)."""
ADAPTER_SUBFOLDERS = {
    # The paper's best checkpoint per task group (Table "task grouping").
    "linguistic": "ckpt/heterogeneous_multitask",
    "perception": "ckpt/perception_centric_homogeneous_multitask",
}

LORA_TARGET = (
    # The LLM's projections only: plain names such as "q_proj" would also wrap the vision
    # encoder's attention, which the authors froze.
    r".*language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    r"|mlp\.(gate_proj|up_proj|down_proj))"
)
LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""The seven projections of each LLM layer that carry LoRA (in LORA_TARGET's order)."""


class ModelLoadError(RuntimeError):
    """Weights could not be found, fetched or loaded; the message is one line meant for the user."""


def cache_root(explicit: str | os.PathLike | None = None) -> Path:
    """The one cache rule: `explicit`, else `$CRASHCHAT_CACHE`, else `$XDG_CACHE_HOME/crashchat`,
    else `~/.cache/crashchat` (converted weights, the downloaded split, example clips).

    >>> import os; os.environ["CRASHCHAT_CACHE"] = "/tmp/cc"; str(cache_root()), str(cache_root("/x"))
    ('/tmp/cc', '/x')
    >>> del os.environ["CRASHCHAT_CACHE"]
    """
    if explicit:
        return Path(explicit)
    if os.environ.get("CRASHCHAT_CACHE"):
        return Path(os.environ["CRASHCHAT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crashchat"


def lora_config(r: int = 64, alpha: int = 16, dropout: float = 0.05, **kwargs):
    """The authors' LoRA settings, with the projector trained (and saved) per adapter."""
    from peft import LoraConfig

    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none", target_modules=LORA_TARGET,
        modules_to_save=["projector"], **kwargs,
    )


def hub_error(what: str, exc: Exception) -> ModelLoadError:
    kind = type(exc).__name__
    return ModelLoadError(
        f"cannot fetch {what} from the Hugging Face Hub ({kind}); check the network or HF_TOKEN, "
        f"or pass local directories with --base/--linguistic/--perception (or --model tiny-random)"
    )


def snapshot(repo: str, patterns: Sequence[str] | None = None) -> Path:
    """Download only the files we read (the hub repo also holds optimizer states etc.)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, allow_patterns=list(patterns) if patterns else None))
    except Exception as exc:  # network, auth, missing repo: all end in the same advice
        raise hub_error(repo, exc) from exc


def revision_of(path: str | os.PathLike) -> str | None:
    """The commit hash of a hub snapshot folder (`.../snapshots/<hash>/...`), None for other folders.

    >>> revision_of("/c/models--o--r/snapshots/0123456789abcdef0123456789abcdef01234567/sub")
    '0123456789abcdef0123456789abcdef01234567'
    >>> revision_of("/home/me/model") is None
    True
    """
    parts = Path(path).parts
    for i, part in enumerate(parts[:-1]):
        if part == "snapshots":
            candidate = parts[i + 1]
            if len(candidate) == 40 and all(c in "0123456789abcdef" for c in candidate):
                return candidate
    return None
