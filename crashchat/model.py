"""CrashChat: native VideoLLaMA3 with one LoRA adapter and projector per task group.

The paper's best model per task group is a different checkpoint: the linguistic tasks come from
the heterogeneous (all six tasks) adapter, the perception tasks from the homogeneous perception
adapter. Both are loaded at once as peft named adapters on one frozen base; each adapter owns a
copy of the projector (`modules_to_save=["projector"]`), so `set_adapter` switches both.

`load_model(ModelConfig(name="tiny-random"))` builds a 2-layer random model offline in seconds,
for tests and for trying the pipeline without a GPU; everything it returns says so.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:  # heavy imports stay lazy: `python -m crashchat --help` must not pay for torch
    import torch
    from transformers import VideoLlama3ForConditionalGeneration, VideoLlama3Processor

MODEL_NAMES = ("crashchat", "videollama3", "tiny-random")
GROUPS = ("linguistic", "perception")

BASE_REPO = "DAMO-NLP-SG/VideoLLaMA3-7B"
ADAPTER_REPO = "KDliang/crashchat"
ADAPTER_SUBFOLDERS = {
    # The paper's best checkpoint per task group (Table "task grouping").
    "linguistic": "ckpt/heterogeneous_multitask",
    "perception": "ckpt/perception_centric_homogeneous_multitask",
}

EVAL_TOKEN_BUDGET = 16384
"""Merged visual tokens per clip at evaluation (the authors' eval scripts; 10240 in training)."""
PIXELS_PER_MERGED_TOKEN = 28 * 28  # a 2x2 merge of 14x14 patches

# The original conversation format: no system prompt, the video first in the first user turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<|video_pad|>\n"
    "{% elif part['type'] == 'image' %}<|image_pad|>\n"
    "{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

LORA_TARGET = (
    # The LLM's projections only: plain names such as "q_proj" would also wrap the vision
    # encoder's attention, which the authors froze.
    r".*language_model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    r"|mlp\.(gate_proj|up_proj|down_proj))"
)


def lora_config(r: int = 64, alpha: int = 16, dropout: float = 0.05, **kwargs):
    """The authors' LoRA settings, with the projector trained (and saved) per adapter."""
    from peft import LoraConfig

    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none", target_modules=LORA_TARGET,
        modules_to_save=["projector"], **kwargs,
    )


class ModelLoadError(RuntimeError):
    """Weights could not be found or fetched; the message is one line meant for the user."""


@dataclass
class ModelConfig:
    """Which weights to load and where to run them."""

    name: str = "crashchat"
    """`crashchat` (base + both adapters), `videollama3` (the base alone for both groups, the
    paper's baseline) or `tiny-random` (2-layer random weights, offline, for tests)."""
    base: str | None = None
    """Hub id or local dir of the base, native or the authors' layout (converted and cached)."""
    linguistic: str | None = None
    """Adapter for the linguistic tasks: a local dir or `hub_id/subfolder`, peft or authors' layout."""
    perception: str | None = None
    """Adapter for the perception (temporal localization) tasks."""
    device: str | None = None
    """`cuda`, `cuda:1`, `cpu`; default: cuda when available."""
    cache_dir: str | None = None
    """Where converted checkpoints go; default `$CRASHCHAT_CACHE` or `~/.cache/crashchat`."""

    def __post_init__(self):
        if self.name not in MODEL_NAMES:
            raise ValueError(f"--model: unknown model {self.name!r}; choose from {', '.join(MODEL_NAMES)}")
        if self.name == "videollama3" and (self.linguistic or self.perception):
            raise ValueError("--model videollama3 runs the base alone; drop --linguistic/--perception")


# --- the tiny random model ----------------------------------------------------------------------

_TINY_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>"]
_TINY_VOCAB = 512


def _tiny_tokenizer():
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
        vocab_size=_TINY_VOCAB - 16, special_tokens=_TINY_SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )


def build_processor(tokenizer, token_budget: int = EVAL_TOKEN_BUDGET, min_tokens: int = 128):
    """A native processor around `tokenizer` with the CrashChat frame budget and chat format.

    `token_budget` is the total of merged tokens over all frames (split per frame by the
    processor); `min_tokens` the floor per frame (the processor's default, 128).
    """
    from transformers import VideoLlama3ImageProcessor, VideoLlama3Processor, VideoLlama3VideoProcessor

    video = VideoLlama3VideoProcessor(
        size={"shortest_edge": min_tokens * PIXELS_PER_MERGED_TOKEN, "longest_edge": token_budget * PIXELS_PER_MERGED_TOKEN},
        # frames arrive already sampled at 10 fps by crashchat.video; at most 96 of them
        do_sample_frames=False, max_frames=96, use_token_compression=True,
    )
    return VideoLlama3Processor(
        image_processor=VideoLlama3ImageProcessor(), tokenizer=tokenizer, video_processor=video,
        chat_template=CHAT_TEMPLATE,
    )


def tiny_config(vocab_size: int = _TINY_VOCAB, video_token_id: int = 4, image_token_id: int = 3):
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


def build_tiny_random(seed: int = 0) -> tuple["VideoLlama3ForConditionalGeneration", "VideoLlama3Processor"]:
    """The tiny random model and its processor: offline, seconds, same weights for the same seed."""
    import torch
    from transformers import VideoLlama3ForConditionalGeneration

    tokenizer = _tiny_tokenizer()
    assert tokenizer.convert_tokens_to_ids("<|video_pad|>") == 4, "special tokens must come first"
    config = tiny_config()
    config._attn_implementation = "sdpa"
    with _seeded(seed):
        model = VideoLlama3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # A small budget and no upscaling keep CPU runs fast; the 7B keeps the evaluation budget.
    return model.eval(), build_processor(tokenizer, token_budget=1024, min_tokens=4)


@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch for a block without leaking the seed to the caller's random stream."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# --- loading --------------------------------------------------------------------------------------


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cache_root(cfg: ModelConfig) -> Path:
    import os

    root = cfg.cache_dir or os.environ.get("CRASHCHAT_CACHE") or Path.home() / ".cache" / "crashchat"
    return Path(root)


def _hub_error(what: str, exc: Exception) -> ModelLoadError:
    kind = type(exc).__name__
    return ModelLoadError(
        f"cannot fetch {what} from the Hugging Face Hub ({kind}); check the network or HF_TOKEN, "
        f"or pass local directories with --base/--linguistic/--perception (or --model tiny-random)"
    )


def resolve_base(cfg: ModelConfig) -> Path:
    """A native base directory: a native dir as given, else the authors' checkpoint converted once."""
    from crashchat import convert

    source = cfg.base or BASE_REPO
    path = Path(source)
    if not path.is_dir():
        if Path(source).exists() or source.startswith((".", "/")):
            raise ModelLoadError(f"--base {source}: not a directory")
        path = _snapshot(source, convert.BASE_PATTERNS)
    return _native(cfg, path, source, "base")


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
        root = _snapshot(repo, [f"{sub}/{p}" for p in convert.ADAPTER_PATTERNS])
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
    target = cache_root(cfg) / folder / source.strip("/").replace("/", "--")
    if not is_native(target):
        print(f"converting {kind} {source} to the native layout in {target} (once)", file=sys.stderr)
        conversion(path, target)
    return target


def _snapshot(repo: str, patterns: Sequence[str]) -> Path:
    """Download only the files we read (the hub repo also holds optimizer states etc.)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, allow_patterns=list(patterns)))
    except Exception as exc:  # network, auth, missing repo: all end in the same advice
        raise _hub_error(repo, exc) from exc


def load_model(cfg: ModelConfig) -> "CrashChat":
    """Load the base once and attach both group adapters (or none for `videollama3`)."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer, VideoLlama3ForConditionalGeneration

    device = cfg.device or default_device()
    adapters = {g: resolve_adapter(cfg, g) for g in GROUPS}  # small downloads first: fail before the 16 GB
    if cfg.name == "tiny-random" and cfg.base is None:
        base, processor = build_tiny_random()
    else:
        base_dir = resolve_base(cfg)
        cuda = device.startswith("cuda")
        if not cuda:
            print(f"warning: running {cfg.name} on {device}: expect minutes per answer (a GPU is advised)",
                  file=sys.stderr)
        # bf16 on GPU as the authors ran it; on CPU the checkpoint's own dtype (bf16 for the 7B:
        # half the memory of float32), loaded straight onto the device
        base = VideoLlama3ForConditionalGeneration.from_pretrained(
            base_dir, dtype=torch.bfloat16 if cuda else "auto", attn_implementation="sdpa", device_map={"": device})
        processor = build_processor(AutoTokenizer.from_pretrained(base_dir))

    if cfg.name == "videollama3":
        model, groups = base, ()
        return _finish(model, processor, cfg, device, groups)
    with warnings.catch_warnings():  # peft calls a transformers property deprecated in 5.2x
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = None
        for group in GROUPS:
            if adapters[group] is not None:
                if model is None:
                    model = PeftModel.from_pretrained(base, adapters[group], adapter_name=group, is_trainable=False)
                else:
                    model.load_adapter(adapters[group], adapter_name=group, is_trainable=False)
            else:  # tiny-random without trained adapters: random but distinct adapters
                model = _add_random_adapter(model if model is not None else base, group)
    return _finish(model, processor, cfg, device, GROUPS)


def _finish(model, processor, cfg: ModelConfig, device: str, groups: tuple[str, ...]) -> "CrashChat":
    model.eval()  # LoRA layers are created in training mode; dropout would change the logits
    model.to(device)
    return CrashChat(model=model, processor=processor, name=cfg.name, random_weights=cfg.name == "tiny-random",
                     device=device, groups=groups)


def _add_random_adapter(model, group: str):
    """A LoRA adapter with random (non-zero) A and B and a perturbed projector copy, seeded per group."""
    import torch
    from peft import PeftModel, get_peft_model

    cfg = lora_config(r=8, alpha=16, init_lora_weights=False)
    with _seeded(GROUPS.index(group) + 1):
        if isinstance(model, PeftModel):
            model.add_adapter(group, cfg)
        else:
            model = get_peft_model(model, cfg, adapter_name=group)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if f"modules_to_save.{group}." in name:
                    param.add_(torch.randn_like(param) * 0.02)
    return model


def _cache_kwarg() -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); the GPU image has 5.17."""
    import inspect

    from transformers import VideoLlama3ForConditionalGeneration

    params = inspect.signature(VideoLlama3ForConditionalGeneration.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


# --- inference ------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Processor outputs of one clip, computed once and reused for every question about it."""

    video_inputs: dict
    """`pixel_values_videos`, `video_grid_thw`, `video_merge_sizes`, `video_compression_mask`."""
    placeholder: str
    """The expanded video text: `Time 0.0s:<|video_pad|>...,Time 0.1s:...`."""
    clip: object = field(repr=False, default=None)


def prepare_clip(processor, clip) -> Prepared:
    """The processor's video inputs and expanded placeholder for a clip (a `Prepared` passes through).

    Shared by inference and training so that both see exactly the same prompt.
    """
    if isinstance(clip, Prepared):
        return clip
    video_inputs = dict(processor.video_processor(
        videos=[clip.frames], video_metadata=[clip.metadata()], return_tensors="pt",
    ))
    metadata = video_inputs.pop("video_metadata", None)
    expanded = dict(video_inputs, video_metadata=metadata if metadata is not None else [clip.metadata()])
    placeholder = processor.replace_video_token(expanded, 0)
    return Prepared(video_inputs=video_inputs, placeholder=placeholder, clip=clip)


def chat_text(processor, question: str, history: Sequence[tuple[str, str]] = (),
              prepared: Prepared | None = None) -> str:
    """The chat text, video in the first user turn (no system prompt), generation prompt at the end.

    With `prepared`, the `<|video_pad|>` token is replaced by that clip's expanded placeholder.
    """
    turns = list(history) + [(question, None)]
    messages = []
    for i, (q, a) in enumerate(turns):
        content = ([{"type": "video"}] if i == 0 else []) + [{"type": "text", "text": q}]
        messages.append({"role": "user", "content": content})
        if a is not None:
            messages.append({"role": "assistant", "content": a})
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text if prepared is None else text.replace(processor.video_token, prepared.placeholder, 1)


@dataclass
class CrashChat:
    """The loaded model: one frozen base, one adapter per task group (or none for the baseline)."""

    model: object
    processor: object
    name: str
    random_weights: bool
    device: str
    groups: tuple[str, ...]
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def label(self) -> str:
        """How the model names itself in every output."""
        return f"{self.name} (RANDOM WEIGHTS: answers are meaningless)" if self.random_weights else self.name

    def prepare(self, clip) -> Prepared:
        """Resize, patch and compress the clip's frames once; the result serves every question."""
        return prepare_clip(self.processor, clip)

    def prompt(self, question: str, history: Sequence[tuple[str, str]] = ()) -> str:
        """The chat text with the video placeholder in the first user turn (no system prompt)."""
        return chat_text(self.processor, question, history)

    def inputs(self, prepared: Prepared, question: str, history: Sequence[tuple[str, str]] = ()) -> dict:
        """Model inputs (on the model's device) for one question about a prepared clip."""
        import torch

        text = chat_text(self.processor, question, history, prepared)
        ids = self.processor.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        out = {"input_ids": ids["input_ids"], "attention_mask": ids["attention_mask"], **prepared.video_inputs}
        dtype = next(self.model.parameters()).dtype
        return {k: (v.to(self.device, dtype) if torch.is_floating_point(v) else v.to(self.device))
                for k, v in out.items()}

    @contextlib.contextmanager
    def using(self, group: str):
        """Run a block on `group`'s adapter and projector (the base alone for `videollama3`)."""
        if group not in GROUPS:
            raise ValueError(f"unknown group {group!r}; expected one of {', '.join(GROUPS)}")
        with self._lock:  # one adapter at a time: a chat stream and a report must not interleave
            self._activate(group)
            yield

    def _activate(self, group: str) -> None:
        if self.groups and self.model.active_adapter != group:
            self.model.set_adapter(group)

    def _generation_kwargs(self, max_new_tokens: int, extra: dict | None = None) -> dict:
        """Greedy, stopping at the end of the assistant turn (`<|im_end|>`) or the tokenizer's eos;
        `extra` (a streamer, `min_new_tokens` for benchmarks, ...) goes to `generate` as given."""
        tok = self.processor.tokenizer
        stops = [i for i in (tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id) if i is not None]
        stops = list(dict.fromkeys(stops))
        pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
        return dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, eos_token_id=stops, pad_token_id=pad,
                    **(extra or {}))

    def generate(self, clip, question: str, *, group: str, history=(), max_new_tokens: int = 256,
                 **generate_kwargs) -> str:
        """The greedy answer to one question about a clip (or a `Prepared` clip).

        `generate_kwargs` go to transformers' `generate` (e.g. a `streamer`, `min_new_tokens`)."""
        import torch

        prepared = self.prepare(clip)
        inputs = self.inputs(prepared, question, history)
        with self.using(group), torch.inference_mode():
            out = self.model.generate(**inputs, **self._generation_kwargs(max_new_tokens, generate_kwargs))
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.processor.tokenizer.decode(new, skip_special_tokens=True).strip()

    def stream(self, clip, question: str, *, group: str, history=(), max_new_tokens: int = 256) -> Iterator[str]:
        """Text chunks of the greedy answer as they are decoded (generation runs in a thread)."""
        import torch
        from transformers import TextIteratorStreamer

        prepared = self.prepare(clip)
        inputs = self.inputs(prepared, question, history)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def work():
            try:
                with self.using(group), torch.inference_mode():
                    self.model.generate(**inputs, **self._generation_kwargs(max_new_tokens), streamer=streamer)
            except BaseException as exc:  # re-raised in the caller's thread below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        for chunk in streamer:
            if chunk:
                yield chunk
        thread.join()
        if errors:
            raise errors[0]

    @contextlib.contextmanager
    def session(self, clip, *, group: str):
        """Ask several questions about one clip on one group, sharing a single prefill of the video.

        Every prompt starts with `<|im_start|>user\n<video>\n`, which is ~15k tokens for a
        96-frame clip: its key/value cache is computed once and cropped back after each answer,
        so a question costs only its own tokens plus decoding. Yields `ask(question,
        max_new_tokens=256, **generate_kwargs) -> str`; answers equal `generate`'s (greedy).
        """
        import torch

        prepared = self.prepare(clip)
        with self.using(group), torch.inference_mode():
            text = self.prompt("")
            cut = text.index(self.processor.video_token) + len(self.processor.video_token) + 1
            prefix = self.inputs(prepared, "")  # video inputs + ids; the ids are cut below
            prefix_ids = self.processor.tokenizer(
                text[:cut].replace(self.processor.video_token, prepared.placeholder, 1),
                return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.device)
            video = {k: v for k, v in prefix.items() if k not in ("input_ids", "attention_mask")}
            # The inner VideoLlama3Model (LoRA layers and the active projector are injected in
            # place): the prefix needs only its cache, and skipping lm_head saves a
            # tokens x vocab logits tensor (15k x 152k in bf16 = 4.5 GB at 7B).
            inner = (self.model.get_base_model() if self.groups else self.model).model
            out = inner(input_ids=prefix_ids, attention_mask=torch.ones_like(prefix_ids), use_cache=True, **video)
            cache = out["cache"] if "cache" in out else out["past_key_values"]  # renamed in 5.2x
            length = prefix_ids.shape[1]

            def ask(question: str, max_new_tokens: int = 256, **generate_kwargs) -> str:
                self._activate(group)  # a nested call in this thread may have switched adapters
                inputs = self.inputs(prepared, question)
                ids = inputs["input_ids"]
                kwargs = self._generation_kwargs(max_new_tokens, generate_kwargs)
                if ids.shape[1] > length and torch.equal(ids[:, :length], prefix_ids):
                    kwargs[_cache_kwarg()] = cache
                    try:
                        out = self.model.generate(input_ids=ids, attention_mask=inputs["attention_mask"], **kwargs)
                    finally:  # back to the shared video prefix for the next question; a negative
                        # count removes tokens in both the 5.17 and the 5.24 `crop` APIs
                        extra = cache.get_seq_length() - length
                        if extra > 0:
                            cache.crop(-extra)
                else:  # the question's tokens merged with the prefix's last one: no sharing
                    out = self.model.generate(**inputs, **kwargs)
                return self.processor.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()

            yield ask

    def logits(self, clip, question: str, *, group: str):
        """Next-token logits after the prompt (for tests and checks; float32 on CPU)."""
        import torch

        inputs = self.inputs(self.prepare(clip), question)
        with self.using(group), torch.inference_mode():
            return self.model(**inputs).logits[0, -1].float().cpu()
