"""The converter on tiny checkpoints written in the authors' layout (derived from the tiny native
model by the inverse key mapping): identical logits, unknown keys refused, vision LoRA checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from crashchat import convert
from crashchat.convert import ConvertError
from crashchat.loading import ModelConfig, load_model
from crashchat.model import CrashChat
from crashchat.tiny import build_tiny_random
from crashchat.video import load_video

QUESTION = "What happens in the video?"


def authors_base_key(native: str) -> str:
    """Inverse of `convert.native_base_key` (the hub spelling of the vision encoder)."""
    for new, old in (("model.language_model.", "model."), ("model.vision_model.", "model.vision_encoder."),
                     ("model.projector.", "model.mm_projector.")):
        if native.startswith(new):
            return old + native[len(new):]
    assert native == "lm_head.weight", native
    return native


def write_authors_base(model, processor, folder: Path) -> Path:
    """The tiny native model saved as the authors' remote-code checkpoint (two safetensors shards)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    state = {authors_base_key(k): v.contiguous() for k, v in model.state_dict().items()}
    keys = sorted(state)
    half = len(keys) // 2
    save_file({k: state[k] for k in keys[:half]}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in keys[half:]}, str(folder / "model-00002-of-00002.safetensors"))
    text = model.config.text_config.to_dict()
    text["rope_theta"] = text.pop("rope_parameters")["rope_theta"]
    vision = {k: v for k, v in model.config.vision_config.to_dict().items() if k != "patch_size"}
    vision["model_type"] = "videollama3_vision_encoder"
    config = {**text, "model_type": "videollama3_qwen2", "architectures": ["Videollama3Qwen2ForCausalLM"],
              "auto_map": {"AutoModelForCausalLM": "modeling_videollama3.Videollama3Qwen2ForCausalLM"},
              "vision_encoder_config": vision, "vision_encoder": "DAMO-NLP-SG/SigLIP-NaViT", "torch_dtype": "float32"}
    (folder / "config.json").write_text(json.dumps(config))
    processor.tokenizer.save_pretrained(folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    cfg["auto_map"] = {"AutoProcessor": "processing_videollama3.Videollama3Processor"}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    return folder


def write_authors_adapter(chat: CrashChat, group: str, folder: Path, vision_b: float = 0.0) -> Path:
    """`group`'s adapter as the authors ship it: peft-0.4-style keys in adapter_model.bin, a LoRA on
    the vision encoder (plain-name matching) and the projector in non_lora_trainables.bin."""
    from peft import get_peft_model_state_dict

    folder.mkdir(parents=True)
    state = get_peft_model_state_dict(chat.model, adapter_name=group, save_embedding_layers=False)  # no Hub lookup
    lora, projector = {}, {}
    for key, value in state.items():
        if ".projector." in key:
            projector[key.replace(".projector.", ".mm_projector.")] = value.clone()
        else:
            lora[key.replace(".language_model.", ".")] = value.clone()
    r = next(v for k, v in lora.items() if "lora_A" in k).shape[0]
    prefix = "base_model.model.model.vision_encoder.vision_encoder.encoder.layers.0.self_attn.q_proj"
    lora[f"{prefix}.lora_A.weight"] = torch.randn(r, 32)
    lora[f"{prefix}.lora_B.weight"] = torch.full((32, r), vision_b)
    torch.save(lora, folder / "adapter_model.bin")
    torch.save(projector, folder / "non_lora_trainables.bin")
    cfg = chat.model.peft_config[group]
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout, "bias": "none", "modules_to_save": None, "inference_mode": True,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "base_model_name_or_path": "DAMO-NLP-SG/VideoLLaMA3-7B"}))
    return folder


@pytest.fixture(scope="module")
def clip(crash_clip):
    return load_video(crash_clip, max_frames=8)


def test_base_conversion_gives_identical_logits(tmp_path, clip):
    model, processor = build_tiny_random()
    src = write_authors_base(model, processor, tmp_path / "authors")
    dst = convert.convert_base(src, tmp_path / "native")
    assert convert.is_native_base(dst) and not convert.is_native_base(src)
    assert "auto_map" not in json.loads((dst / "tokenizer_config.json").read_text())

    from transformers import AutoTokenizer, VideoLlama3ForConditionalGeneration

    native = VideoLlama3ForConditionalGeneration.from_pretrained(dst, attn_implementation="sdpa").eval()
    assert native.config.vision_config.patch_size == 14
    tokenizer = AutoTokenizer.from_pretrained(dst)
    assert tokenizer.convert_tokens_to_ids("<|video_pad|>") == native.config.video_token_id
    before = CrashChat(model, processor, "tiny-random", True, "cpu", ())
    after = CrashChat(native, processor, "converted", True, "cpu", ())
    assert torch.equal(before.logits(clip, QUESTION, group="linguistic"), after.logits(clip, QUESTION, group="linguistic"))


def test_base_unknown_key_is_an_error(tmp_path):
    from safetensors.torch import save_file

    model, processor = build_tiny_random()
    src = write_authors_base(model, processor, tmp_path / "authors")
    save_file({"model.mystery.weight": torch.zeros(2)}, str(src / "model-00003-extra.safetensors"))
    with pytest.raises(ConvertError, match=r"model-00003-extra.safetensors: unknown key 'model.mystery.weight'"):
        convert.convert_base(src, tmp_path / "native")
    assert not (tmp_path / "native").exists()


def test_adapters_convert_and_load_with_identical_logits(tmp_path, tiny_crashchat, clip):
    folders = {g: convert.convert_adapter(write_authors_adapter(tiny_crashchat, g, tmp_path / f"authors_{g}"),
                                          tmp_path / f"native_{g}") for g in ("linguistic", "perception")}
    for folder in folders.values():
        assert convert.is_native_adapter(folder)
        cfg = json.loads((folder / "adapter_config.json").read_text())
        assert cfg["modules_to_save"] == ["projector"] and re.fullmatch(cfg["target_modules"],
                                                                       "model.language_model.layers.1.mlp.up_proj")
    loaded = load_model(ModelConfig(name="tiny-random", linguistic=str(folders["linguistic"]),
                                    perception=str(folders["perception"]), device="cpu"))
    for group in ("linguistic", "perception"):
        assert torch.equal(loaded.logits(clip, QUESTION, group=group), tiny_crashchat.logits(clip, QUESTION, group=group))


def test_load_model_converts_authors_adapters_once(tmp_path, tiny_crashchat, clip):
    src = {g: write_authors_adapter(tiny_crashchat, g, tmp_path / f"authors_{g}") for g in ("linguistic", "perception")}
    cfg = ModelConfig(name="tiny-random", linguistic=str(src["linguistic"]), perception=str(src["perception"]),
                      device="cpu", cache_dir=str(tmp_path / "cache"))
    loaded = load_model(cfg)
    assert len(list((tmp_path / "cache" / "adapters").iterdir())) == 2
    assert torch.equal(loaded.logits(clip, QUESTION, group="perception"),
                       tiny_crashchat.logits(clip, QUESTION, group="perception"))


def test_vision_lora_with_nonzero_b_is_refused(tmp_path, tiny_crashchat):
    src = write_authors_adapter(tiny_crashchat, "linguistic", tmp_path / "authors", vision_b=0.5)
    with pytest.raises(ConvertError, match="vision-encoder LoRA with a non-zero B"):
        convert.convert_adapter(src, tmp_path / "native")


def test_unknown_adapter_key_is_an_error(tmp_path, tiny_crashchat):
    src = write_authors_adapter(tiny_crashchat, "linguistic", tmp_path / "authors")
    lora = torch.load(src / "adapter_model.bin", weights_only=True)
    lora["base_model.model.lm_head.lora_A.weight"] = torch.zeros(1)
    torch.save(lora, src / "adapter_model.bin")
    with pytest.raises(ConvertError, match="unknown LoRA key 'base_model.model.lm_head.lora_A.weight'"):
        convert.convert_adapter(src, tmp_path / "native")


def test_cli_converts_and_reports_bad_input_in_one_line(tmp_path, tiny_crashchat, capsys):
    src = write_authors_adapter(tiny_crashchat, "perception", tmp_path / "authors")
    assert convert.main([str(src), str(tmp_path / "out")]) == 0
    assert "wrote native adapter" in capsys.readouterr().out
    (src / "non_lora_trainables.bin").unlink()
    assert convert.main([str(src), str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "non_lora_trainables.bin" in err
    assert convert.main([str(tmp_path / "nowhere")]  + [str(tmp_path / "o")]) == 2


def test_crashchat_and_baseline_load_from_local_authors_folders(tmp_path, tiny_crashchat, clip, monkeypatch):
    """`--model crashchat --base DIR --linguistic DIR --perception DIR` with everything in the authors'
    layout: converted once into the cache, then served; `videollama3` serves the base alone. The
    base's config names the vision encoder (as the authors' merge writes it), whose preprocessor
    config, fetched from a local stand-in for the Hub, sets the floor and normalisation."""
    from hub_stand_in import REVISION, offline_hub, put

    hub = offline_hub(monkeypatch, tmp_path / "hub")
    put(hub, "DAMO-NLP-SG/SigLIP-NaViT", {"preprocessor_config.json": {
        "min_tokens": 9, "image_mean": [0.48, 0.45, 0.40], "image_std": [0.27, 0.26, 0.28]}})
    model, processor = build_tiny_random()
    base = write_authors_base(model, processor, tmp_path / "authors_base")
    adapters = {g: str(write_authors_adapter(tiny_crashchat, g, tmp_path / f"authors_{g}")) for g in ("linguistic", "perception")}
    cache = str(tmp_path / "cache")
    chat = load_model(ModelConfig(name="crashchat", base=str(base), device="cpu", cache_dir=cache, **adapters))
    assert chat.name == "crashchat" and not chat.random_weights and chat.groups == ("linguistic", "perception")
    settings, encoder = chat.settings, f"DAMO-NLP-SG/SigLIP-NaViT@{REVISION[:12]} preprocessor_config.json"
    assert (settings.min_tokens, settings.image_mean, settings.token_compression) == (9, (0.48, 0.45, 0.40), True)
    assert settings.sources["min_tokens"] == settings.sources["image_std"] == encoder
    assert settings.sources["token_compression"].startswith("default (")  # the tiny config does not set it
    video = chat.processor.video_processor
    assert video.size["shortest_edge"] == 9 * 28 * 28 and tuple(video.image_std) == (0.27, 0.26, 0.28)
    assert chat.base.id == str(base) and chat.base.repo is None
    assert convert.is_native_base(tmp_path / "cache" / "native" / str(base).strip("/").replace("/", "--"))
    assert isinstance(chat.generate(clip, QUESTION, group="perception", max_new_tokens=3), str)
    baseline = load_model(ModelConfig(name="videollama3", base=str(base), device="cpu", cache_dir=cache))
    assert baseline.groups == () and not hasattr(baseline.model, "peft_config")
    assert isinstance(baseline.generate(clip, QUESTION, group="perception", max_new_tokens=3), str)
    from crashchat.pipeline import analyze

    results = dict(analyze(baseline, clip, ["crash_recognition", "crash_description"], max_new_tokens=2))
    assert all(r["group"] == "linguistic" and isinstance(r["response"], str) for r in results.values())


# --- loud loading: nothing missing, nothing extra, nothing mis-shaped -------------------------------


def _drop(path: Path, key_part: str) -> str:
    """Remove the first tensor whose key contains `key_part` from a .bin or .safetensors file."""
    from safetensors.torch import load_file, save_file

    if path.suffix == ".bin":
        tensors = torch.load(path, weights_only=True)
    else:
        tensors = load_file(str(path))
    key = next(k for k in sorted(tensors) if key_part in k)
    del tensors[key]
    if path.suffix == ".bin":
        torch.save(tensors, path)
    else:
        save_file(tensors, str(path))
    return key


def test_an_authors_adapter_missing_a_lora_tensor_is_refused(tmp_path, tiny_crashchat):
    src = write_authors_adapter(tiny_crashchat, "linguistic", tmp_path / "authors")
    _drop(src / "adapter_model.bin", "layers.1.mlp.down_proj.lora_B")
    with pytest.raises(ConvertError, match=r"adapter incomplete for a 2-layer base: 1 missing "
                                           r"\(layers\.1\.mlp\.down_proj\.lora_B\)"):
        convert.convert_adapter(src, tmp_path / "native")
    assert not (tmp_path / "native").exists()


def test_a_whole_missing_layer_is_caught_against_the_base(tmp_path, tiny_crashchat):
    """Without the base, layer 1 gone looks like a 1-layer adapter; `--base` knows there are two."""
    src = write_authors_adapter(tiny_crashchat, "perception", tmp_path / "authors")
    lora = torch.load(src / "adapter_model.bin", weights_only=True)
    torch.save({k: v for k, v in lora.items() if ".layers.1." not in k}, src / "adapter_model.bin")
    base = write_authors_base(*build_tiny_random(), tmp_path / "authors_base")
    assert convert.main([str(src), str(tmp_path / "out"), "--base", str(base)]) == 2
    with pytest.raises(ConvertError, match="adapter incomplete for a 2-layer base: 14 missing"):
        convert.convert_adapter(src, tmp_path / "native2", convert.base_config_of(base))


def test_a_mis_shaped_projector_is_caught_against_the_base(tmp_path, tiny_crashchat):
    src = write_authors_adapter(tiny_crashchat, "perception", tmp_path / "authors")
    projector = torch.load(src / "non_lora_trainables.bin", weights_only=True)
    key = next(k for k in projector if k.endswith("readout.2.bias"))
    projector[key] = torch.zeros(7)
    torch.save(projector, src / "non_lora_trainables.bin")
    base = write_authors_base(*build_tiny_random(), tmp_path / "authors_base")
    with pytest.raises(ConvertError, match=r"1 mis-shaped \(base_model\.model\.model\.projector\.readout\.2\.bias \[7\]"):
        convert.convert_adapter(src, tmp_path / "native", convert.base_config_of(base))


@pytest.mark.parametrize("damage", ["missing", "mis-shaped", "unexpected"])
def test_a_damaged_native_adapter_is_refused_at_load(tmp_path, tiny_crashchat, damage):
    """peft itself loads an adapter with half its tensors gone and only warns; we refuse, naming keys."""
    from safetensors.torch import load_file, save_file

    from crashchat.weights import ModelLoadError

    tiny_crashchat.model.save_pretrained(tmp_path / "saved")  # one sub-folder per adapter
    folder = tmp_path / "saved" / "perception"
    file = folder / "adapter_model.safetensors"
    tensors = load_file(str(file))
    key = sorted(k for k in tensors if "lora_A" in k)[0]
    if damage == "missing":
        del tensors[key]
    elif damage == "mis-shaped":
        tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 1)
    else:
        tensors["base_model.model.model.language_model.layers.0.mlp.up_proj.lora_C.weight"] = torch.zeros(2)
    save_file(tensors, str(file))
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelConfig(name="tiny-random", linguistic=str(tmp_path / "saved" / "linguistic"),
                               perception=str(folder), device="cpu"))
    message = str(info.value)
    assert message.startswith("--perception ") and "\n" not in message
    assert damage in message or (damage == "mis-shaped" and "does not fit the base" in message), message


def test_a_base_missing_a_weight_is_refused_at_load(tmp_path):
    from crashchat.weights import ModelLoadError

    model, processor = build_tiny_random()
    model.save_pretrained(tmp_path / "base")
    processor.tokenizer.save_pretrained(tmp_path / "base")
    dropped = _drop(tmp_path / "base" / "model.safetensors", "layers.1.mlp.up_proj")
    with pytest.raises(ModelLoadError, match=rf"weights do not match its config: 1 missing \({re.escape(dropped)}\)"):
        load_model(ModelConfig(name="videollama3", base=str(tmp_path / "base"), device="cpu"))
