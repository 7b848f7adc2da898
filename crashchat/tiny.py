"""The tiny random CrashChat: VideoLLaMA3's architecture in miniature, built offline in seconds.

For tests and for trying the whole pipeline on a CPU. The same seed gives the same weights; every
output of a model built here says RANDOM WEIGHTS.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from crashchat.tasks import GROUPS

if TYPE_CHECKING:
    from transformers import VideoLlama3ForConditionalGeneration, VideoLlama3Processor

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>"]
VOCAB = 512


def tiny_tokenizer():
    """A byte-level BPE trained on the task prompts and a few answers (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from crashchat.tasks import TASKS

    corpus = [t.prompt for t in TASKS] + [
        "Yes", "No", "1.9 - 4.0 seconds", "2.5 seconds", "ego-car hits a car.", "no collision.",
        "No accident, no cause.", "No accident, no prevention needed.",
        "The driver was speeding and could not stop in time.", "Time 0.0s: user assistant",
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - 16, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def tiny_config(vocab_size: int = VOCAB, video_token_id: int = 4, image_token_id: int = 3):
    """2-layer 32-wide vision tower, 2-layer 64-wide Qwen2: the 7B architecture in miniature."""
    from transformers import Qwen2Config, VideoLlama3Config, VideoLlama3VisionConfig

    vision = VideoLlama3VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14,
    )
    text = Qwen2Config(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1_000_000.0, tie_word_embeddings=False, eos_token_id=2, pad_token_id=0,
    )
    return VideoLlama3Config(
        text_config=text.to_dict(), vision_config=vision.to_dict(),
        image_token_id=image_token_id, video_token_id=video_token_id,
    )


TINY_TOKEN_BUDGET = 1024
TINY_MIN_TOKENS = 4
SEED = 7
"""The tiny model's default seed. Its answers are noise whatever the seed; this one was picked
among the first twelve because, with guided decoding, its recognition answers Yes on the synthetic
example clips, so a CPU demo opens the gate and shows the whole report (timeline, crash window,
key frames). Most seeds answer No to everything, which hides half of the app."""


NAME = "tiny-random"

DEMO_MAX_NEW_TOKENS = 48
"""`tiny-random`'s default answer length, on the command line and in the app: its answers are noise,
so longer ones only take longer (2048 tokens of it took about two minutes on a 2-core CPU)."""


def generation_defaults(model: str) -> dict:
    """What `model` answers with unless told otherwise (the CLI's `--guided`/`--max-new-tokens`, the
    app's `CRASHCHAT_GUIDED`/`CRASHCHAT_MAX_NEW_TOKENS`): the one rule `analyze`, `predict` and the
    chat tab share. `tiny-random` gets guided closed-form answers (its Yes/No and times then parse,
    so a CPU demo shows a verdict and a window) and a short length; other models nothing here
    (each command keeps its own default: the authors' 2048 tokens unguided, the app's 256).

    >>> generation_defaults("tiny-random"), generation_defaults("crashchat")
    ({'guided': True, 'max_new_tokens': 48}, {})
    """
    return {"guided": True, "max_new_tokens": DEMO_MAX_NEW_TOKENS} if model == NAME else {}


def random_weights_note(applied: list[str]) -> str:
    """The one line a command prints about `tiny-random`; `applied`: which of its defaults were used.

    >>> random_weights_note(["guided", "max_new_tokens"])
    'warning: tiny-random: RANDOM WEIGHTS, the answers are meaningless; guided answers and max 48 new tokens by default (--no-guided / --max-new-tokens to change)'
    >>> random_weights_note([])
    'warning: tiny-random: RANDOM WEIGHTS, the answers are meaningless'
    """
    line = f"warning: {NAME}: RANDOM WEIGHTS, the answers are meaningless"
    shown = {"guided": ("guided answers", "--no-guided"),
             "max_new_tokens": (f"max {DEMO_MAX_NEW_TOKENS} new tokens", "--max-new-tokens")}
    if applied:
        line += (f"; {' and '.join(shown[a][0] for a in applied)} by default "
                 f"({' / '.join(shown[a][1] for a in applied)} to change)")
    return line


def build_tiny_random(seed: int = SEED) -> tuple[VideoLlama3ForConditionalGeneration, VideoLlama3Processor]:
    """The tiny random model and its processor: offline, seconds, same weights for the same seed."""
    from transformers import VideoLlama3ForConditionalGeneration

    from crashchat.prompt import build_processor

    tokenizer = tiny_tokenizer()
    assert tokenizer.convert_tokens_to_ids("<|video_pad|>") == 4, "special tokens must come first"
    config = tiny_config()
    config._attn_implementation = "sdpa"
    with seeded(seed):
        model = VideoLlama3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # A small budget and no upscaling keep CPU runs fast; the 7B keeps the evaluation budget.
    return model.eval(), build_processor(tokenizer, token_budget=TINY_TOKEN_BUDGET, min_tokens=TINY_MIN_TOKENS)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch for a block without leaking the seed to the caller's random stream."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def add_random_adapter(model, group: str):
    """A LoRA adapter with random (non-zero) A and B and a perturbed projector copy, seeded per group.

    So that the tiny model's two groups answer differently, as trained adapters would.
    """
    import torch
    from peft import PeftModel, get_peft_model

    from crashchat.weights import lora_config

    cfg = lora_config(r=8, alpha=16, init_lora_weights=False)
    with seeded(GROUPS.index(group) + 1):
        if isinstance(model, PeftModel):
            model.add_adapter(group, cfg)
        else:
            model = get_peft_model(model, cfg, adapter_name=group)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if f"modules_to_save.{group}." in name:
                    param.add_(torch.randn_like(param) * 0.02)
    return model
