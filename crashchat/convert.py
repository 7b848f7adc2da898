"""`python -m crashchat convert SRC OUT [--kind base|adapter]`

The authors' checkpoints -> the native transformers layout:

- base (`DAMO-NLP-SG/VideoLLaMA3-7B`, remote-code `Videollama3Qwen2ForCausalLM`: Qwen2 fields at
  the config's top level plus `vision_encoder_config`, weights in safetensors) -> a directory that
  `VideoLlama3ForConditionalGeneration.from_pretrained` loads with no remote code;
- adapter folder (`KDliang/crashchat/ckpt/<name>`: `adapter_model.bin` or `.safetensors`,
  `adapter_config.json`, `non_lora_trainables.bin` with the projector) -> a native peft adapter
  whose `modules_to_save=["projector"]` carries that projector.

Every key must be known: an unexpected one is an error, never silently dropped. The one exception
is LoRA on the vision encoder's attention, which the authors' plain-name `target_modules`
injected but never trained (the encoder is frozen): those B matrices must be all zero, and then
the layers are a no-op and are dropped. `SRC` is a local folder, a base's short name (`crashchat.bases`)
or a Hub path (`owner/repo`, or `owner/repo/sub/folder` for a base or an adapter in a folder).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from crashchat.bases import PREPROCESSOR_FILES

BASE_PATTERNS = ("*.json", "*.safetensors", "vocab.json", "merges.txt", "tokenizer*")
ADAPTER_PATTERNS = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "non_lora_trainables.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.jinja")
SHARD_BYTES = 5 * 1024**3
SETTING_KEYS = ("use_token_compression", "vision_encoder")
"""Keys of the authors' config.json that set the processor, not the weights (`crashchat.bases`)."""


class ConvertError(ValueError):
    """The source is not in a layout we know; the message names the file and the key."""


# --- layout detection -----------------------------------------------------------------------------


def _config(path: Path, name: str = "config.json") -> dict | None:
    try:
        return json.loads((path / name).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def is_native_base(path: Path) -> bool:
    cfg = _config(Path(path))
    return cfg is not None and cfg.get("model_type") == "video_llama_3"


def is_native_adapter(path: Path) -> bool:
    """A peft adapter that saves its own projector (ours); the authors' keep it in a side file."""
    cfg = _config(Path(path), "adapter_config.json")
    return cfg is not None and "projector" in (cfg.get("modules_to_save") or [])


# --- key mapping ----------------------------------------------------------------------------------

_LLM = re.compile(r"^model\.(embed_tokens|layers|norm)\.(.+)$")
_VISION = re.compile(r"^model\.vision_encoder\.(?:vision_encoder\.)?(.+)$")
_PROJECTOR = re.compile(r"^model\.mm_projector\.(readout\.[02]\.(?:weight|bias))$")


def native_base_key(key: str) -> str:
    """An authors' base key -> its native name.

    >>> native_base_key("model.layers.3.self_attn.q_proj.weight")
    'model.language_model.layers.3.self_attn.q_proj.weight'
    >>> native_base_key("model.vision_encoder.vision_encoder.encoder.layers.0.mlp.fc1.bias")
    'model.vision_model.encoder.layers.0.mlp.fc1.bias'
    >>> native_base_key("model.mm_projector.readout.2.weight")
    'model.projector.readout.2.weight'
    """
    if key == "lm_head.weight":
        return key
    if m := _LLM.match(key):
        return f"model.language_model.{m.group(1)}.{m.group(2)}"
    if m := _VISION.match(key):
        return f"model.vision_model.{m.group(1)}"
    if m := _PROJECTOR.match(key):
        return f"model.projector.{m.group(1)}"
    raise ConvertError(f"unknown key {key!r}")


_LORA = re.compile(r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(?:gate|up|down)_proj)"
                   r"\.lora_([AB])(?:\.default)?\.weight$")
_VISION_LORA = re.compile(r"^base_model\.model\.model\.vision_encoder\..*\.lora_([AB])(?:\.default)?\.weight$")
_NON_LORA = re.compile(r"^(?:base_model\.model\.)?model\.mm_projector\.(readout\.[02]\.(?:weight|bias))$")


def native_adapter_key(key: str) -> str | None:
    """An authors' LoRA key -> its native name; None for a vision-encoder LoRA key (checked, dropped).

    >>> native_adapter_key("base_model.model.model.layers.0.mlp.up_proj.lora_B.weight")
    'base_model.model.model.language_model.layers.0.mlp.up_proj.lora_B.weight'
    """
    if m := _LORA.match(key):
        return f"base_model.model.model.language_model.layers.{m.group(1)}.{m.group(2)}.lora_{m.group(3)}.weight"
    if _VISION_LORA.match(key):
        return None
    raise ConvertError(f"unknown LoRA key {key!r}")


def native_projector_key(key: str) -> str:
    """A `non_lora_trainables.bin` key -> the adapter's projector key (as peft saves modules_to_save)."""
    if m := _NON_LORA.match(key):
        return f"base_model.model.model.projector.{m.group(1)}"
    raise ConvertError(f"unknown key {key!r} (only the projector's four tensors are expected)")


# --- base -----------------------------------------------------------------------------------------


def native_config(authors: dict):
    """`VideoLlama3Config` from the authors' config: Qwen2 fields at the top, `vision_encoder_config`."""
    from transformers import Qwen2Config, VideoLlama3Config, VideoLlama3VisionConfig

    if "vision_encoder_config" not in authors:
        raise ConvertError("config.json: no vision_encoder_config (not an authors' VideoLLaMA3 checkpoint)")
    text_fields = set(Qwen2Config().to_dict()) | {"rope_theta", "rope_scaling"}
    skip = {"model_type", "architectures", "auto_map", "_name_or_path", "transformers_version", "dtype", "torch_dtype"}
    text = Qwen2Config(**{k: v for k, v in authors.items() if k in text_fields and k not in skip})
    vision_fields = set(VideoLlama3VisionConfig().to_dict()) - skip
    vision_src = authors["vision_encoder_config"]
    # The hub config leaves patch_size to the remote code's default (14); the native default is 16.
    vision = VideoLlama3VisionConfig(**{"patch_size": 14, **{k: v for k, v in vision_src.items() if k in vision_fields}})
    return VideoLlama3Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                             tie_word_embeddings=bool(authors.get("tie_word_embeddings", False)))


def _weight_files(src: Path) -> list[Path]:
    files = sorted(src.glob("*.safetensors"))
    if not files:
        raise ConvertError(f"{src}: no *.safetensors weight files")
    return files


def convert_base(src: str | Path, dst: str | Path) -> Path:
    """Write the native base to `dst` (config, safetensors shards with an index, tokenizer files)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file
    from transformers import VideoLlama3ForConditionalGeneration

    src, dst = Path(src), Path(dst)
    authors = _config(src)
    if authors is None:
        raise ConvertError(f"{src}: no readable config.json")
    config = native_config(authors)
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in VideoLlama3ForConditionalGeneration(config).state_dict().items()}
    expected = set(shapes)

    tmp = _staging(dst)
    seen: dict[str, str] = {}
    weight_map = {}
    total = 0
    files = _weight_files(src)
    for i, file in enumerate(files, start=1):
        tensors = {}
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():
                try:
                    new = native_base_key(key)
                except ConvertError as exc:
                    raise ConvertError(f"{file.name}: {exc}") from None
                if new in seen:
                    raise ConvertError(f"{file.name}: {key!r} and {seen[new]!r} both map to {new!r}")
                shape = tuple(fh.get_slice(key).get_shape())
                if new in shapes and shape != shapes[new]:
                    raise ConvertError(f"{file.name}: {key}: shape {list(shape)} does not match the config "
                                       f"({list(shapes[new])})")
                seen[new] = key
                tensors[new] = fh.get_tensor(key).contiguous()
        name = f"model-{i:05d}-of-{len(files):05d}.safetensors"
        save_file(tensors, str(tmp / name), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update({k: name for k in tensors})
    missing = expected - set(seen)
    if config.tie_word_embeddings:
        missing.discard("lm_head.weight")
    unexpected = set(seen) - expected
    if missing or unexpected:
        raise ConvertError(f"{src}: weights do not match the config: {describe_keys(missing, unexpected)}")
    (tmp / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=1))
    copy_tokenizer(src, tmp)
    config.image_token_id, config.video_token_id = _placeholder_ids(tmp)
    config.dtype = authors.get("torch_dtype") or authors.get("dtype") or "bfloat16"
    config.architectures = ["VideoLlama3ForConditionalGeneration"]
    # What the processor settings are read from (`crashchat.bases`), kept so that the converted
    # folder used as `--base` gives the settings its source gives.
    for key in SETTING_KEYS:
        if key in authors:
            setattr(config, key, authors[key])
    config.save_pretrained(tmp)
    for name in PREPROCESSOR_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, tmp / name)
    return _publish(tmp, dst)


def _staging(dst: Path) -> Path:
    """A private folder beside `dst`: a stopped conversion never looks finished, and processes
    converting at once (ranks of one `accelerate launch`) never write into each other's files."""
    import os

    tmp = dst.with_name(f"{dst.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _publish(tmp: Path, dst: Path) -> Path:
    """Move a finished conversion into place (replacing an older one at `dst`)."""
    if dst.exists():
        shutil.rmtree(dst)
    try:
        tmp.rename(dst)
    except OSError:  # another process published the same conversion a moment ago
        if not dst.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _placeholder_ids(folder: Path) -> tuple[int, int]:
    """The native processor's `<|image_pad|>`/`<|video_pad|>` ids in this tokenizer (Qwen2: 151655/6).

    The authors' code used its own placeholder; which token stands in is irrelevant to the
    weights (its embedding is replaced by visual features), but config and tokenizer must agree.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = []
    for token in ("<|image_pad|>", "<|video_pad|>"):
        found = tokenizer.convert_tokens_to_ids(token)
        if found is None or found == tokenizer.unk_token_id:
            raise ConvertError(f"{folder}: the tokenizer has no {token} token")
        ids.append(found)
    return ids[0], ids[1]


def copy_tokenizer(src: Path, dst: Path) -> None:
    """The tokenizer files, minus the remote-code hooks (`auto_map`, `processor_class`)."""
    found = False
    for name in TOKENIZER_FILES:
        if not (src / name).is_file():
            continue
        found = True
        if name == "tokenizer_config.json":
            cfg = json.loads((src / name).read_text(encoding="utf-8"))
            for key in ("auto_map", "processor_class"):
                cfg.pop(key, None)
            (dst / name).write_text(json.dumps(cfg, indent=1, ensure_ascii=False), encoding="utf-8")
        else:
            shutil.copyfile(src / name, dst / name)
    if not found:
        raise ConvertError(f"{src}: no tokenizer files ({', '.join(TOKENIZER_FILES[:4])})")


# --- adapters -------------------------------------------------------------------------------------


def _load_tensors(path: Path) -> dict:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors have many types; all mean "not a tensor file"
        raise ConvertError(f"{path}: not a readable tensor file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise ConvertError(f"{path}: expected a dict of tensors")
    return data


def describe_keys(missing=(), unexpected=(), mismatched=(), first: int = 3) -> str:
    """`2 missing (a, b), 1 unexpected (c)`: the first few keys of each kind, for one-line errors."""
    parts = []
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
        keys = sorted(keys)
        if keys:
            more = ", ..." if len(keys) > first else ""
            parts.append(f"{len(keys)} {what} ({', '.join(keys[:first])}{more})")
    return "; ".join(parts)


def check_adapter_complete(tensors: dict, *, where: str, base_config=None) -> None:
    """Every layer's seven LoRA projections with A and B, and the projector's four tensors.

    With `base_config` (a native `VideoLlama3Config`), the number of layers and every shape are
    checked against the base too; without it, the layers found must run from 0 without a gap.
    """
    from crashchat.weights import LORA_MODULES

    pattern = re.compile(r"^base_model\.model\.model\.language_model\.layers\.(\d+)\.(?:self_attn|mlp)\."
                         r"(\w+)\.lora_([AB])\.weight$")
    found = {}
    for key in tensors:
        if m := pattern.match(key):
            found[(int(m.group(1)), m.group(2), m.group(3))] = key
    layers = base_config.text_config.num_hidden_layers if base_config is not None else (
        max((n for n, _, _ in found), default=-1) + 1)
    module_of = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
                 "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
    wanted = {(n, m, ab) for n in range(layers) for m in LORA_MODULES for ab in "AB"}
    missing = [f"layers.{n}.{module_of[m]}.{m}.lora_{ab}" for n, m, ab in sorted(wanted - set(found))]
    extra = [found[k] for k in sorted(set(found) - wanted)]
    projector = {f"base_model.model.model.projector.readout.{i}.{w}" for i in (0, 2) for w in ("weight", "bias")}
    missing += sorted(projector - set(tensors))
    mismatched = []
    if base_config is not None:
        shapes = _adapter_shapes(base_config, tensors)
        mismatched = [f"{k} {list(tensors[k].shape)} (base: {list(v)})" for k, v in shapes.items()
                      if k in tensors and tuple(tensors[k].shape) != v]
    if missing or extra or mismatched:
        raise ConvertError(f"{where}: adapter incomplete for a {layers}-layer base: "
                           f"{describe_keys(missing, extra, mismatched)}")


def _adapter_shapes(base_config, tensors: dict) -> dict:
    """Expected shape of each LoRA A/B and projector tensor, from the base's layer sizes (meta device)."""
    import torch
    from transformers import VideoLlama3ForConditionalGeneration

    with torch.device("meta"):
        base = VideoLlama3ForConditionalGeneration(base_config)
    shapes = {}
    for key, value in tensors.items():
        if key.startswith("base_model.model.model.projector."):
            name = key.removeprefix("base_model.model.")
            shapes[key] = tuple(base.get_parameter(name).shape)
        elif (m := re.match(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$", key)):
            linear = base.get_submodule(m.group(1))
            rank = value.shape[0] if m.group(2) == "A" else value.shape[1]
            shapes[key] = (rank, linear.in_features) if m.group(2) == "A" else (linear.out_features, rank)
    return shapes


def convert_adapter(src: str | Path, dst: str | Path, base_config=None) -> Path:
    """Write a native peft adapter (LoRA on the LLM + its projector) to `dst`.

    Refuses an incomplete adapter (`check_adapter_complete`), against `base_config` when given.
    """
    import torch
    from safetensors.torch import save_file

    from crashchat.weights import lora_config

    src, dst = Path(src), Path(dst)
    authors = _config(src, "adapter_config.json")
    if authors is None:
        raise ConvertError(f"{src}: no readable adapter_config.json")
    lora_file = next((src / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (src / n).is_file()), None)
    if lora_file is None:
        raise ConvertError(f"{src}: no adapter_model.safetensors or adapter_model.bin")
    if not (src / "non_lora_trainables.bin").is_file():
        raise ConvertError(f"{src}: no non_lora_trainables.bin (the adapter's projector)")

    tensors = {}
    for key, value in _load_tensors(lora_file).items():
        try:
            new = native_adapter_key(key)
        except ConvertError as exc:
            raise ConvertError(f"{lora_file.name}: {exc}") from None
        if new is None:
            if key.endswith(("lora_B.weight", "lora_B.default.weight")) and torch.count_nonzero(value):
                raise ConvertError(f"{lora_file.name}: {key}: vision-encoder LoRA with a non-zero B "
                                   "(the encoder was trained?); refusing to drop it")
            continue
        tensors[new] = value.contiguous()
    if not tensors:
        raise ConvertError(f"{lora_file.name}: no LoRA weights on the language model")
    projector = {}
    for key, value in _load_tensors(src / "non_lora_trainables.bin").items():
        try:
            projector[native_projector_key(key)] = value.contiguous()
        except ConvertError as exc:
            raise ConvertError(f"non_lora_trainables.bin: {exc}") from None
    tensors.update(projector)

    check_adapter_complete(tensors, where=str(src), base_config=base_config)
    r = int(authors.get("r", 64))
    ranks = {v.shape[0] for k, v in tensors.items() if "lora_A" in k}
    if ranks != {r}:
        raise ConvertError(f"{lora_file.name}: LoRA ranks {sorted(ranks)} do not match r={r} in adapter_config.json")
    config = lora_config(r=r, alpha=authors.get("lora_alpha", 16), dropout=authors.get("lora_dropout", 0.05))
    config.base_model_name_or_path = authors.get("base_model_name_or_path")
    config.inference_mode = True
    tmp = _staging(dst)
    save_file(tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(tmp))
    return _publish(tmp, dst)


# --- command line ---------------------------------------------------------------------------------


def base_config_of(folder: Path):
    """The native `VideoLlama3Config` of a base folder, native or in the authors' layout."""
    from transformers import VideoLlama3Config

    config = _config(Path(folder))
    if config is None:
        raise ConvertError(f"--base {folder}: no readable config.json")
    if config.get("model_type") == "video_llama_3":
        return VideoLlama3Config.from_pretrained(folder)
    return native_config(config)


def _kind(src: Path) -> str:
    if (src / "adapter_config.json").is_file():
        return "adapter"
    if (src / "config.json").is_file():
        return "base"
    raise ConvertError(f"{src}: neither config.json (a base) nor adapter_config.json (an adapter)")


def main(argv: Sequence[str], prog: str = "python -m crashchat convert") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="authors' folder, a base's short name (authors-eval, videollama3-7b), or a Hub "
                                    "path: owner/repo or owner/repo/sub/folder (a base or an adapter, told by its files)")
    parser.add_argument("out", type=Path, help="output folder (native layout)")
    parser.add_argument("--kind", choices=("base", "adapter"), help="what SRC holds (default: from its files)")
    parser.add_argument("--base", type=Path, metavar="DIR",
                        help="adapters: check completeness and shapes against this base (native or authors' folder; "
                             "only its config.json is read)")
    args = parser.parse_args(list(argv))

    from crashchat.bases import BASES
    from crashchat.weights import ModelLoadError, snapshot

    src = Path(args.src)
    try:
        if not src.is_dir():
            if args.src in BASES:
                repo, sub, kind = BASES[args.src].repo, BASES[args.src].subfolder or "", "base"
            elif args.src.startswith((".", "/")) or args.src.count("/") < 1:
                raise ConvertError(f"{args.src}: no such folder")
            else:
                parts = args.src.split("/")
                repo, sub = "/".join(parts[:2]), "/".join(parts[2:])
                # a hub folder holds a base (KDliang/crashchat/videollama3_original_model) or an
                # adapter (.../ckpt/<name>): its small json files tell which, before the large ones
                kind = args.kind or (_kind(snapshot(repo, [f"{sub}/*.json"]) / sub) if sub else "base")
            patterns = [f"{sub}/{p}" if sub else p for p in (ADAPTER_PATTERNS if kind == "adapter" else BASE_PATTERNS)]
            src = snapshot(repo, patterns) / sub
        kind = args.kind or _kind(src)
        base_config = base_config_of(args.base) if args.base else None
        done = convert_base(src, args.out) if kind == "base" else convert_adapter(src, args.out, base_config)
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModelLoadError as exc:  # the Hub was unreachable: not the user's input
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote native {kind} to {done}")
    return 0
