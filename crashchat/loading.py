"""Load CrashChat: the frozen VideoLLaMA3 base and one peft adapter (with its projector) per task group.

The paper's best model per task group is a different checkpoint: the linguistic tasks come from
the heterogeneous (all six tasks) adapter, the perception tasks from the homogeneous perception
adapter. Both are loaded at once as peft named adapters on one frozen base; each adapter owns a
copy of the projector (`modules_to_save=["projector"]`), so `set_adapter` switches both.
Authors'-layout checkpoints are converted once into the cache (`crashchat.convert`). Which base
(`--base`, default the authors' evaluation base) and the processor settings its configs set are
`crashchat.bases`.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crashchat.bases import BaseInfo, HubBase, ProcessorSettings, parse_base, processor_settings
from crashchat.settings import flag, from_env
from crashchat.tasks import GROUPS
from crashchat.weights import ADAPTER_REPO, ADAPTER_SUBFOLDERS, ModelLoadError, cache_root, revision_of, snapshot

if TYPE_CHECKING:
    from crashchat.model import CrashChat

MODEL_NAMES = ("crashchat", "videollama3", "tiny-random")
TINY_BASE = "tiny-random (built offline)"
STATIC_CACHE_ENV = "CRASHCHAT_STATIC_CACHE"


def static_cache_allowed() -> bool:
    """`CRASHCHAT_STATIC_CACHE=0` turns the static-cache decode off (`CrashChat.static_cache`);
    unset or 1: used where it helps. Anything else is a `SettingError` (checked with the flags,
    `ModelConfig`, and at the app's start, `TabConfig`; read again at each decode)."""
    return from_env(STATIC_CACHE_ENV, True, flag, "1 (where it helps, the default) or 0 (off)")


@dataclass
class ModelConfig:
    """Which weights to load and where to run them."""

    name: str = "crashchat"
    """`crashchat` (base + both adapters), `videollama3` (the base alone for both groups, the
    paper's baseline) or `tiny-random` (2-layer random weights, offline, for tests)."""
    base: str | None = None
    """`authors-eval` (default: the base the authors evaluated on), `videollama3-7b`, a hub id or
    `hub_id/subfolder`, or a local dir; native or the authors' layout (converted and cached)."""
    linguistic: str | None = None
    """Adapter for the linguistic tasks: a local dir or `hub_id/subfolder`, peft or authors' layout."""
    perception: str | None = None
    """Adapter for the perception (temporal localization) tasks."""
    device: str | None = None
    """`cuda`, `cuda:1`, `cpu`; default: cuda when available."""
    cache_dir: str | None = None
    """Where converted checkpoints go; default `crashchat.weights.cache_root()`."""

    def __post_init__(self):
        if self.name not in MODEL_NAMES:
            raise ValueError(f"--model: unknown model {self.name!r}; choose from {', '.join(MODEL_NAMES)}")
        if self.name == "videollama3" and (self.linguistic or self.perception):
            raise ValueError("--model videollama3 runs the base alone; drop --linguistic/--perception")
        static_cache_allowed()


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class ResolvedBase:
    """A base ready to load, and what a run records about it."""

    native: Path
    """The native folder `from_pretrained` loads (the published folder, or its conversion)."""
    files: Path
    """The base's files as published, whose configs set the processor settings."""
    info: BaseInfo
    vision_encoder: str | None = None
    """The vision encoder whose preprocessor config to read, when the base's choice fixes it."""

    def settings(self) -> ProcessorSettings:
        return processor_settings(self.files, self.info.id, self.vision_encoder)


def base_files(choice: HubBase | Path, patterns, given: str) -> tuple[Path, BaseInfo]:
    """The base's published folder (a hub folder downloaded with only `patterns`) and its record."""
    if isinstance(choice, Path):
        return choice, BaseInfo(id=given, revision=revision_of(choice))
    sub = choice.subfolder
    root = snapshot(choice.repo, [f"{sub}/{p}" for p in patterns] if sub else list(patterns))
    folder = root / sub if sub else root
    if not folder.is_dir():
        raise ModelLoadError(f"--base {choice.id}: the hub repo {choice.repo} has no folder {sub}")
    return folder, BaseInfo(id=choice.id, name=choice.name, repo=choice.repo, subfolder=sub,
                            revision=revision_of(root))


def resolve_base(cfg: ModelConfig) -> ResolvedBase:
    """The base `cfg` names (default `authors-eval`): downloaded if on the Hub, converted once if in
    the authors' layout."""
    from crashchat import convert

    choice = parse_base(cfg.base)
    files, info = base_files(choice, convert.BASE_PATTERNS, cfg.base or "")
    vision = choice.vision_encoder if isinstance(choice, HubBase) else None
    return ResolvedBase(_native(cfg, files, info.id, "base"), files, info, vision)


def resolve_adapter(cfg: ModelConfig, group: str) -> Path | None:
    """A native peft adapter dir for `group`; authors' folders are converted once into the cache."""
    if cfg.name == "videollama3":
        return None
    source = getattr(cfg, group)
    if source is None and cfg.name == "tiny-random":
        return None
    from crashchat import convert

    source = source or f"{ADAPTER_REPO}/{ADAPTER_SUBFOLDERS[group]}"
    path = Path(source)
    if not path.is_dir():
        if source.startswith((".", "/")) or source.count("/") < 2:
            raise ModelLoadError(f"--{group} {source}: no such directory (and not a hub_id/subfolder path)")
        repo, sub = "/".join(source.split("/")[:2]), "/".join(source.split("/")[2:])
        root = snapshot(repo, [f"{sub}/{p}" for p in convert.ADAPTER_PATTERNS])
        path = root / sub
        if not path.is_dir():
            raise ModelLoadError(f"--{group} {source}: the hub repo has no folder {sub}")
    return _native(cfg, path, source, "adapter")


def _native(cfg: ModelConfig, path: Path, source: str, kind: str) -> Path:
    """`path` if it is already native, else its conversion, made once and kept in the cache."""
    from crashchat import convert

    is_native, conversion, folder = {
        "base": (convert.is_native_base, convert.convert_base, "native"),
        "adapter": (convert.is_native_adapter, convert.convert_adapter, "adapters"),
    }[kind]
    if is_native(path):
        return path
    target = cache_root(cfg.cache_dir) / folder / source.strip("/").replace("/", "--")
    if not is_native(target):
        print(f"converting {kind} {source} to the native layout in {target} (once)", file=sys.stderr)
        conversion(path, target)
    return target


def load_model(cfg: ModelConfig) -> CrashChat:
    """Load the base once and attach both group adapters (or none for `videollama3`)."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer, VideoLlama3ForConditionalGeneration

    from crashchat.prompt import build_processor
    from crashchat.tiny import add_random_adapter, build_tiny_random

    device = cfg.device or default_device()
    adapters = {g: resolve_adapter(cfg, g) for g in GROUPS}  # small downloads first: fail before the 16 GB
    sources = _sources(cfg)
    if cfg.name == "tiny-random" and cfg.base is None:
        base, processor = build_tiny_random()
        info, settings = BaseInfo(TINY_BASE), tiny_settings()
    else:
        resolved = resolve_base(cfg)
        base_dir, info = resolved.native, resolved.info
        settings = resolved.settings()  # may fetch the vision encoder's preprocessor config (one small file)
        cuda = device.startswith("cuda")
        if not cuda and "SPACES_ZERO_GPU" not in os.environ:  # ZeroGPU: loaded on the CPU, moved per request
            print(f"warning: running {cfg.name} on {device}: expect minutes per answer (a GPU is advised)",
                  file=sys.stderr)
        # bf16 on GPU as the authors ran it; on CPU the checkpoint's own dtype (bf16 for the 7B:
        # half the memory of float32), loaded straight onto the device
        base, loading = VideoLlama3ForConditionalGeneration.from_pretrained(
            base_dir, dtype=torch.bfloat16 if cuda else "auto", attn_implementation="sdpa", device_map={"": device},
            output_loading_info=True)
        _check_base_loaded(loading, base_dir)
        processor = build_processor(AutoTokenizer.from_pretrained(base_dir), settings=settings)
    sources["base"] = info.id

    if cfg.name == "videollama3":
        return _finish(base, processor, cfg, device, (), sources, info, settings)
    with warnings.catch_warnings():  # peft calls a transformers property deprecated in 5.2x
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = None
        for group in GROUPS:
            if adapters[group] is not None:
                try:
                    if model is None:
                        model = PeftModel.from_pretrained(base, adapters[group], adapter_name=group, is_trainable=False)
                    else:
                        model.load_adapter(adapters[group], adapter_name=group, is_trainable=False)
                except RuntimeError as exc:  # torch's size mismatch when copying a tensor
                    first = str(exc).strip().splitlines()[0][:300]
                    raise ModelLoadError(f"--{group} {adapters[group]}: does not fit the base ({first})") from None
                check_adapter_loaded(model, group, adapters[group])
            else:  # tiny-random without trained adapters: random but distinct adapters
                model = add_random_adapter(model if model is not None else base, group)
    return _finish(model, processor, cfg, device, GROUPS, sources, info, settings)


def tiny_settings() -> ProcessorSettings:
    """The tiny random model's processor settings (a small floor keeps CPU runs fast)."""
    from crashchat.tiny import TINY_MIN_TOKENS

    return ProcessorSettings(min_tokens=TINY_MIN_TOKENS, sources={
        "token_compression": "default", "min_tokens": "tiny-random's own (small clips, fast CPU runs)",
        "image_mean": "default", "image_std": "default"})


def _check_base_loaded(info: dict, folder: Path) -> None:
    """Every weight of the base came from its files, with the right shape (transformers only warns)."""
    from crashchat.convert import describe_keys

    missing, unexpected = set(info.get("missing_keys") or ()), set(info.get("unexpected_keys") or ())
    mismatched = {str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or ()}
    if missing or unexpected or mismatched:
        raise ModelLoadError(f"--base {folder}: weights do not match its config: "
                             f"{describe_keys(missing, unexpected, mismatched)}")


def check_adapter_loaded(model, group: str, folder: Path) -> None:
    """The adapter's file holds exactly the tensors its config asks for, with their shapes.

    peft loads an adapter with tensors missing and only warns: the missing LoRA layers would then
    keep their initial values (B = 0, a silent no-op), so a damaged download would run as a
    weaker model without a word.
    """
    from peft.utils import get_peft_model_state_dict

    from crashchat.convert import describe_keys

    # save_embedding_layers=False: what peft's "auto" decides for our LoRA (no embedding layer is
    # targeted, the vocabulary is never resized), without asking the Hub for the base's config.json
    state = get_peft_model_state_dict(model, adapter_name=group, save_embedding_layers=False)
    expected = {k: tuple(v.shape) for k, v in state.items()}
    stored = _tensor_shapes(Path(folder))
    mismatched = {k for k in set(expected) & set(stored) if expected[k] != stored[k]}
    problems = describe_keys(set(expected) - set(stored), set(stored) - set(expected), mismatched)
    if problems:
        raise ModelLoadError(f"--{group} {folder}: adapter does not match the model: {problems}")


def _tensor_shapes(folder: Path) -> dict[str, tuple]:
    """Key -> shape of a peft adapter's weights file, read without loading safetensors data."""
    safetensors, binary = folder / "adapter_model.safetensors", folder / "adapter_model.bin"
    if safetensors.is_file():
        from safetensors import safe_open

        with safe_open(str(safetensors), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    if binary.is_file():
        import torch

        return {k: tuple(v.shape) for k, v in torch.load(binary, map_location="meta", weights_only=True).items()}
    raise ModelLoadError(f"{folder}: no adapter_model.safetensors or adapter_model.bin")


def _sources(cfg: ModelConfig) -> dict:
    """What each part was loaded from, as the user would name it (provenance)."""
    tiny = cfg.name == "tiny-random"
    base = cfg.base or TINY_BASE
    adapters = {}
    for group in GROUPS:
        given = getattr(cfg, group)
        if cfg.name == "videollama3":
            adapters[group] = None
        elif given:
            adapters[group] = given
        else:
            adapters[group] = "random (tiny-random)" if tiny else f"{ADAPTER_REPO}/{ADAPTER_SUBFOLDERS[group]}"
    return {"base": base, **adapters}


def _finish(model, processor, cfg: ModelConfig, device: str, groups: tuple[str, ...], sources: dict,
            base: BaseInfo, settings: ProcessorSettings) -> CrashChat:
    from crashchat.model import CrashChat

    model.eval()  # LoRA layers are created in training mode; dropout would change the logits
    model.to(device)
    return CrashChat(model=model, processor=processor, name=cfg.name, random_weights=cfg.name == "tiny-random",
                     device=device, groups=groups, sources=sources, base=base, settings=settings)
