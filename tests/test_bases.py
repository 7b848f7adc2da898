"""Which base CrashChat runs on, and the processor settings read from its configs (`crashchat.bases`).

Configs are built both ways (a setting present, absent); the hub bases are served by a local stand-in
for the Hub (`tests/hub_stand_in.py`: huggingface_hub's own cache layout, offline), so the real
download, conversion and loading code runs on tiny random weights without the network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hub_stand_in import REVISION, offline_hub, put

from crashchat.bases import BASES, DEFAULT_BASE, HubBase, ProcessorSettings, parse_base, processor_settings
from crashchat.weights import ModelLoadError

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def test_short_names_hub_paths_and_folders(tmp_path):
    assert DEFAULT_BASE == "authors-eval" and parse_base(None) == BASES["authors-eval"]
    assert parse_base(None).id == "KDliang/crashchat/videollama3_original_model"
    assert parse_base("videollama3-7b") == HubBase("DAMO-NLP-SG/VideoLLaMA3-7B", None, None, "videollama3-7b")
    assert parse_base("DAMO-NLP-SG/VideoLLaMA3-7B") == HubBase("DAMO-NLP-SG/VideoLLaMA3-7B")
    assert parse_base("KDliang/crashchat/videollama3_original_model").subfolder == "videollama3_original_model"
    assert parse_base(str(tmp_path)) == tmp_path
    for bad in (str(tmp_path / "missing"), "./nowhere", "just-a-name", "a//b"):
        with pytest.raises(ModelLoadError) as info:
            parse_base(bad)
        assert str(info.value).startswith(f"--base {bad}: ") and "\n" not in str(info.value)


def _folder(path: Path, **files) -> Path:
    path.mkdir(parents=True)
    for name, content in files.items():
        (path / name.replace("__", ".")).write_text(json.dumps(content))
    return path


def test_settings_present_come_from_their_configs(tmp_path):
    encoder = _folder(tmp_path / "siglip", preprocessor_config__json={
        "min_tokens": 9, "image_mean": CLIP_MEAN, "image_std": CLIP_STD})
    base = _folder(tmp_path / "base", config__json={"use_token_compression": False, "vision_encoder": str(encoder)})
    settings = processor_settings(base, "my-base")
    assert (settings.token_compression, settings.min_tokens) == (False, 9)
    assert settings.image_mean == tuple(CLIP_MEAN) and settings.image_std == tuple(CLIP_STD)
    assert settings.sources == {"token_compression": "my-base config.json",
                                **dict.fromkeys(("min_tokens", "image_mean", "image_std"),
                                                f"{encoder} preprocessor_config.json")}
    # a vision encoder given with the base's choice wins over the config's
    other = _folder(tmp_path / "other", preprocessor_config__json={"min_tokens": 25})
    assert processor_settings(base, "my-base", vision_encoder=str(other)).min_tokens == 25


def test_settings_absent_keep_the_defaults_and_say_why(tmp_path):
    bare = _folder(tmp_path / "bare", config__json={"model_type": "videollama3_qwen2"})
    settings = processor_settings(bare, "bare")
    assert settings == ProcessorSettings(sources=settings.sources)  # compression on, 16, 0.5/0.5
    assert (settings.token_compression, settings.min_tokens, settings.image_mean) == (True, 16, (0.5, 0.5, 0.5))
    assert settings.sources["token_compression"] == "default (bare config.json does not set use_token_compression)"
    assert settings.sources["min_tokens"] == "default (bare names no vision encoder and has no preprocessor_config.json)"
    # the base's own processor config (the HF remote-code layout keeps one), setting the floor only
    own = _folder(tmp_path / "own", config__json={}, preprocessor_config__json={"min_tokens": 4})
    settings = processor_settings(own, "own")
    assert settings.min_tokens == 4 and settings.sources["min_tokens"] == "own preprocessor_config.json"
    assert settings.sources["image_mean"] == "default (own preprocessor_config.json does not set it)"
    # a path from the machine a config was written on
    stale = _folder(tmp_path / "stale", config__json={"vision_encoder": "/home/someone/SigLIP-NaViT"})
    assert processor_settings(stale, "stale").sources["min_tokens"] == (
        "default (vision encoder /home/someone/SigLIP-NaViT is not on this machine nor a hub id)")


def test_the_settings_reach_the_processor(tmp_path):
    from crashchat.prompt import PIXELS_PER_MERGED_TOKEN, build_processor, with_token_budget
    from crashchat.tiny import tiny_tokenizer

    settings = ProcessorSettings(token_compression=False, min_tokens=9, image_mean=tuple(CLIP_MEAN),
                                 image_std=tuple(CLIP_STD))
    processor = build_processor(tiny_tokenizer(), settings=settings)
    video = processor.video_processor
    assert video.use_token_compression is False and video.size["shortest_edge"] == 9 * PIXELS_PER_MERGED_TOKEN
    assert list(video.image_mean) == CLIP_MEAN and list(processor.image_processor.image_std) == CLIP_STD
    rebudgeted = with_token_budget(processor, 10240).video_processor  # training's budget, nothing else
    assert rebudgeted.size["longest_edge"] == 10240 * PIXELS_PER_MERGED_TOKEN
    assert (rebudgeted.use_token_compression, rebudgeted.size["shortest_edge"], list(rebudgeted.image_mean)) == (
        False, 9 * PIXELS_PER_MERGED_TOKEN, CLIP_MEAN)


def test_an_unreachable_vision_encoder_is_one_line(tmp_path, monkeypatch):
    offline_hub(monkeypatch, tmp_path / "hub")  # empty: nothing cached, nothing fetched
    base = _folder(tmp_path / "base", config__json={"vision_encoder": "DAMO-NLP-SG/SigLIP-NaViT"})
    with pytest.raises(ModelLoadError) as info:
        processor_settings(base, "base")
    assert str(info.value).startswith("cannot fetch DAMO-NLP-SG/SigLIP-NaViT (preprocessor_config.json")
    assert "\n" not in str(info.value)


def test_conversion_keeps_what_the_settings_are_read_from(tmp_path):
    from test_convert import write_authors_base

    from crashchat import convert
    from crashchat.tiny import build_tiny_random

    src = write_authors_base(*build_tiny_random(), tmp_path / "authors")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "use_token_compression": False,
                                                 "vision_encoder": str(tmp_path / "siglip")}))
    _folder(tmp_path / "siglip", preprocessor_config__json={"min_tokens": 9})
    (src / "preprocessor_config.json").write_text(json.dumps({"min_tokens": 4}))
    native = convert.convert_base(src, tmp_path / "native")
    before, after = processor_settings(src, "x"), processor_settings(native, "x")
    assert before == after and (after.token_compression, after.min_tokens) == (False, 9)
    assert (native / "preprocessor_config.json").is_file()


# --- the hub bases, through a local stand-in for the Hub --------------------------------------------


@pytest.fixture()
def hub(tmp_path, monkeypatch, tiny_crashchat):
    """KDliang/crashchat (the evaluation base and both adapters, authors' layout), the public
    VideoLLaMA3-7B and SigLIP-NaViT's preprocessor config, all tiny, offline."""
    from test_convert import write_authors_adapter, write_authors_base

    from crashchat.tiny import build_tiny_random
    from crashchat.weights import ADAPTER_SUBFOLDERS

    cache = offline_hub(monkeypatch, tmp_path / "hub")
    base = write_authors_base(*build_tiny_random(), tmp_path / "authors_base")
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "use_token_compression": True}))
    files = {"videollama3_original_model": base}
    for group, folder in ADAPTER_SUBFOLDERS.items():
        files[folder] = write_authors_adapter(tiny_crashchat, group, tmp_path / f"authors_{group}")
    put(cache, "KDliang/crashchat", files)
    put(cache, "DAMO-NLP-SG/VideoLLaMA3-7B", {".": base}, revision="f" * 40)
    put(cache, "DAMO-NLP-SG/SigLIP-NaViT", {"preprocessor_config.json": {"min_tokens": 16, "image_mean": [0.5] * 3,
                                                                         "image_std": [0.5] * 3}})
    return cache


def test_crashchat_loads_the_authors_evaluation_base_by_default(hub, tmp_path):
    from crashchat.loading import ModelConfig, load_model

    chat = load_model(ModelConfig(name="crashchat", device="cpu", cache_dir=str(tmp_path / "cc")))
    assert chat.base.to_json() == {"id": "KDliang/crashchat/videollama3_original_model", "name": "authors-eval",
                                   "repo": "KDliang/crashchat", "subfolder": "videollama3_original_model",
                                   "revision": REVISION}
    encoder = f"DAMO-NLP-SG/SigLIP-NaViT@{REVISION[:12]} preprocessor_config.json"
    assert chat.settings.sources == {"token_compression": "KDliang/crashchat/videollama3_original_model config.json",
                                     "min_tokens": encoder, "image_mean": encoder, "image_std": encoder}
    block = chat.provenance()
    assert (block["base"], block["base_repo"], block["base_subfolder"], block["base_revision"]) == (
        "KDliang/crashchat/videollama3_original_model", "KDliang/crashchat", "videollama3_original_model", REVISION)
    assert (tmp_path / "cc" / "native" / "KDliang--crashchat--videollama3_original_model").is_dir()


def test_base_chooses_the_public_videollama3_by_its_short_name(hub, tmp_path):
    from crashchat.loading import ModelConfig, load_model

    baseline = load_model(ModelConfig(name="videollama3", base="videollama3-7b", device="cpu",
                                      cache_dir=str(tmp_path / "cc")))
    assert baseline.base.to_json() == {"id": "DAMO-NLP-SG/VideoLLaMA3-7B", "name": "videollama3-7b",
                                       "repo": "DAMO-NLP-SG/VideoLLaMA3-7B", "subfolder": None, "revision": "f" * 40}
    # no vision encoder fixed by the choice: the config's (SigLIP-NaViT, as the authors' merge writes it)
    assert baseline.settings.sources["min_tokens"].startswith("DAMO-NLP-SG/SigLIP-NaViT@")


def test_predict_provenance_and_the_report_name_the_base_and_its_settings(hub, tmp_path):
    from mini_split import write_mini_split

    from crashchat import predict, provenance
    from crashchat.report import build_report
    from crashchat.video import load_video

    split, videos = write_mini_split(tmp_path / "m")
    out = tmp_path / "p.jsonl"
    assert predict.main(["--split-dir", str(split), "--videos-dir", str(videos), "--out", str(out), "--device", "cpu",
                         "--cache-dir", str(tmp_path / "cc"), "--max-new-tokens", "3", "--limit", "1",
                         "--tasks", "crash_recognition", "--no-progress"]) == 0
    meta = provenance.loads(out.with_name("p.jsonl.meta.json").read_bytes())
    assert meta["model"]["base_repo"] == "KDliang/crashchat" and meta["model"]["base_revision"] == REVISION
    assert meta["model"]["base_subfolder"] == "videollama3_original_model"
    frames = meta["frames"]
    assert (frames["token_compression"], frames["min_tokens"], frames["image_mean"]) == (True, 16, [0.5] * 3)
    assert frames["settings_from"]["token_compression"] == "KDliang/crashchat/videollama3_original_model config.json"
    assert frames["settings_from"]["min_tokens"].startswith("DAMO-NLP-SG/SigLIP-NaViT@")
    assert meta["generation"]["repetition_stop"] is False and frames["policy"] == "benchmark"

    from crashchat.loading import ModelConfig, load_model

    chat = load_model(ModelConfig(name="crashchat", device="cpu", cache_dir=str(tmp_path / "cc")))
    clip = load_video(videos / "videos" / "c0.mp4", max_frames=4)
    report = build_report(clip, chat, {})
    assert report["model"]["base"]["revision"] == REVISION
    assert report["model"]["processor"]["min_tokens"] == {"value": 16, "from": frames["settings_from"]["min_tokens"]}


def test_convert_takes_the_short_name_and_tells_a_base_folder_from_an_adapter_folder(hub, tmp_path, capsys):
    from crashchat import convert

    assert convert.main(["authors-eval", str(tmp_path / "a")]) == 0
    assert convert.main(["KDliang/crashchat/videollama3_original_model", str(tmp_path / "b")]) == 0
    assert convert.main(["KDliang/crashchat/ckpt/heterogeneous_multitask", str(tmp_path / "c")]) == 0
    assert convert.is_native_base(tmp_path / "a") and convert.is_native_base(tmp_path / "b")
    assert convert.is_native_adapter(tmp_path / "c")
    assert capsys.readouterr().out.splitlines()[-1].startswith("wrote native adapter to ")
