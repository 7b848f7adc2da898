"""Tiny random checkpoints of the video-LLM families `predict --model hf:DIR` must run, built offline.

Each is written to a folder exactly as a hub checkpoint would be (config, safetensors weights,
tokenizer, processor with a chat template), from the family's own config class with 2-layer,
64-wide text and 2-layer, 32-wide vision towers. The chat templates are short stand-ins for the
families' own (which ship inside the real hub repositories, not in transformers): they put the
video where the family's template does, which is all the loader relies on.
"""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision")

_QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_LLAVA_TEMPLATE = (_QWEN_TEMPLATE.replace("<|vision_start|><|video_pad|><|vision_end|>", "<video>\n")
                   .replace("<|vision_start|><|image_pad|><|vision_end|>", "<image>\n"))
_QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]


def _tokenizer(specials: list[str], extra: dict):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from crashchat.tasks import TASKS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([t.prompt for t in TASKS] + ["Yes No 1.9 - 4.0 seconds", "user assistant"], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   extra_special_tokens=extra)


def _qwen_ids(tok) -> dict:
    ids = {s: tok.convert_tokens_to_ids(s) for s in _QWEN_SPECIALS}
    return dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


def _text(tok, **extra) -> dict:
    return dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, bos_token_id=None, **extra)


def _qwen2(tok, v25: bool):
    import transformers as tf

    text = _text(tok, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
    if v25:
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[1], window_size=56)
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
        model_cls, processor_cls = tf.Qwen2_5_VLForConditionalGeneration, tf.Qwen2_5_VLProcessor
    else:
        vision = dict(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2)
        config = tf.Qwen2VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
        model_cls, processor_cls = tf.Qwen2VLForConditionalGeneration, tf.Qwen2VLProcessor
    size = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 64}
    processor = processor_cls(image_processor=tf.Qwen2VLImageProcessor(size=size),
                              video_processor=tf.Qwen2VLVideoProcessor(size=size), tokenizer=tok,
                              chat_template=_QWEN_TEMPLATE)
    return model_cls(config), processor


def _qwen3(tok):
    import transformers as tf

    text = _text(tok, head_dim=16, rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3],
                                                 "mrope_interleaved": True})
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
                  spatial_merge_size=2, temporal_patch_size=2, deepstack_visual_indexes=[0], num_position_embeddings=64)
    config = tf.Qwen3VLConfig(text_config=text, vision_config=vision, **_qwen_ids(tok))
    size = {"shortest_edge": 64 * 64, "longest_edge": 32 * 32 * 64}
    processor = tf.Qwen3VLProcessor(image_processor=tf.Qwen2VLImageProcessor(size=size, patch_size=16),
                                    video_processor=tf.Qwen3VLVideoProcessor(size=size), tokenizer=tok,
                                    chat_template=_QWEN_TEMPLATE)
    return tf.Qwen3VLForConditionalGeneration(config), processor


def _llava_onevision(tok):
    import transformers as tf

    ids = {s: tok.convert_tokens_to_ids(s) for s in ("<image>", "<video>")}
    text = dict(model_type="qwen2", **_text(tok))
    vision = dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=56, patch_size=14)
    config = tf.LlavaOnevisionConfig(text_config=text, vision_config=vision, image_token_index=ids["<image>"],
                                     video_token_index=ids["<video>"], vision_feature_layer=-1,
                                     vision_feature_select_strategy="full", image_grid_pinpoints=[[56, 56]])
    processor = tf.LlavaOnevisionProcessor(
        image_processor=tf.LlavaOnevisionImageProcessor(size={"height": 56, "width": 56}, image_grid_pinpoints=[[56, 56]]),
        video_processor=tf.LlavaOnevisionVideoProcessor(size={"height": 56, "width": 56}), tokenizer=tok,
        chat_template=_LLAVA_TEMPLATE, num_image_tokens=16, vision_feature_select_strategy="full")
    return tf.LlavaOnevisionForConditionalGeneration(config), processor


def _llava_image_only(tok):
    """An image-only family (LLaVA 1.5 layout): its processor has no video support."""
    import transformers as tf

    text = dict(model_type="qwen2", **_text(tok))
    vision = dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2, image_size=56, patch_size=14, projection_dim=32)
    config = tf.LlavaConfig(text_config=text, vision_config=vision, image_token_index=tok.convert_tokens_to_ids("<image>"))
    processor = tf.LlavaProcessor(image_processor=tf.CLIPImageProcessor(size={"shortest_edge": 56},
                                                                        crop_size={"height": 56, "width": 56}),
                                  tokenizer=tok, chat_template=_LLAVA_TEMPLATE, patch_size=14,
                                  vision_feature_select_strategy="full")
    return tf.LlavaForConditionalGeneration(config), processor


def write_family(family: str, folder: str | Path, seed: int = 0) -> Path:
    """A tiny random checkpoint of `family` (or `llava` for an image-only one) written to `folder`."""
    import torch

    folder = Path(folder)
    if family in ("llava_onevision", "llava"):
        tok = _tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
                         {"image_token": "<image>", "video_token": "<video>"})
    else:
        tok = _tokenizer(_QWEN_SPECIALS, {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                          "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"})
    builders = {"qwen2_vl": lambda: _qwen2(tok, False), "qwen2_5_vl": lambda: _qwen2(tok, True),
                "qwen3_vl": lambda: _qwen3(tok), "llava_onevision": lambda: _llava_onevision(tok),
                "llava": lambda: _llava_image_only(tok)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = builders[family]()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
