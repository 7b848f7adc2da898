"""Any video-LLM that transformers supports natively, behind the same interface as CrashChat.

`predict --model hf:<hub id or local dir>[@revision]` loads `AutoModelForImageTextToText` + `AutoProcessor`
(no remote code unless `--trust-remote-code`), bf16 + sdpa on a GPU, and asks every split
question with the model's own chat template: the video as that model expects it (the frames
`crashchat.video` picked, with their `VideoMetadata`, so models that read time, such as
Qwen2.5-VL and Qwen3-VL, see true times), then the question without the split's `<video>` tag.
This is how the leaderboard's zero-shot baseline rows are produced (the paper gives no settings
for its own).

The interface `crashchat.pipeline` needs: `prepare(clip)`, `session(prepared, group=...)` yielding
`ask(question, max_new_tokens, **generate_kwargs) -> str`, `tokenizer`, `stop_ids`, `name`,
`label`, `random_weights`, `device`, `groups` (empty: one model answers every task).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from crashchat.records import strip_video_tag
from crashchat.weights import ModelLoadError, hub_error, revision_of

PREFIX = "hf:"
FRAME_POLICIES = ("benchmark", "model-card")
"""`benchmark`: every model sees the paper's frames (`--fps`, `--max-frames`: 10 fps, at most 96);
`model-card`: each family's documented video defaults (`MODEL_CARD_VIDEO`, `model_card_frames`)."""
MODEL_CARD_HF_ONLY = ("--frames model-card applies to hf: models only (CrashChat is evaluated on the "
                      "benchmark's frames, as the authors)")
BENCHMARK_DECODE_FPS = 10.0
"""Families documented by a frame count are decoded at the benchmark's rate, then thinned uniformly."""

MODEL_CARD_VIDEO = {
    # family -> (documented video defaults, where they are documented); the checkpoint's own video
    # processor overrides each value it sets (Qwen3-VL's sets fps 2 itself).
    "qwen2_vl": ({"fps": 2.0, "min_frames": 4, "max_frames": 768},
                 "Qwen2-VL's model card (qwen-vl-utils: 2 fps, 4 to 768 frames)"),
    "qwen2_5_vl": ({"fps": 2.0, "min_frames": 4, "max_frames": 768},
                   "Qwen2.5-VL's model card (qwen-vl-utils: 2 fps, 4 to 768 frames)"),
    "qwen3_vl": ({"fps": 2.0, "min_frames": 4, "max_frames": 768},
                 "Qwen3-VL's model card (2 fps, 4 to 768 frames)"),
    "llava_onevision": ({"num_frames": 32},
                        "LLaVA-OneVision's evaluation (lmms-eval: 32 frames sampled uniformly)"),
}

# Tokens that end an assistant turn in the chat formats of the families we know; the model's own
# generation config and the tokenizer's eos are always added.
_TURN_ENDS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")


def is_generic(name: str) -> bool:
    return name.startswith(PREFIX)


@dataclass
class GenericConfig:
    """Which transformers video-LLM to load and how (`predict --model hf:...`)."""

    source: str
    """A hub id (`Qwen/Qwen3-VL-8B-Instruct`) or a local folder, without the `hf:` prefix."""
    device: str | None = None
    """`cuda`, `cuda:1`, `cpu`; default: cuda when available."""
    trust_remote_code: bool = False
    """Allow the checkpoint's own Python code (only when asked: it runs arbitrary code)."""
    max_pixels: int | None = None
    """Cap on each frame's pixels before the model's processor (None: the frames as decoded)."""
    revision: str | None = None
    """Hub branch, tag or commit (`hf:ID@REVISION`); None: the default branch. The resolved commit
    is what the provenance records."""
    frames: str = "benchmark"
    """Frame policy (`FRAME_POLICIES`): the benchmark's frames, or the family's documented defaults."""

    def __post_init__(self):
        if self.revision is None and "@" in self.source and not Path(self.source).exists():
            self.source, _, self.revision = self.source.rpartition("@")
            if not self.revision.strip():
                raise ValueError(f"--model hf:{self.source}@: the revision after @ is empty")
        if not self.source.strip():
            raise ValueError("--model hf:<hub id or folder>: the id is empty")
        if self.max_pixels is not None and self.max_pixels < 28 * 28:
            raise ValueError(f"--max-pixels must be at least {28 * 28}, got {self.max_pixels}")
        if self.frames not in FRAME_POLICIES:
            raise ValueError(f"--frames {self.frames}: choose from {', '.join(FRAME_POLICIES)}")
        if self.frames == "model-card" and self.max_pixels is not None:
            raise ValueError("--max-pixels and --frames model-card: the model card's policy keeps the processor's "
                             "own pixel limits; drop one")


@dataclass(frozen=True)
class FramePolicy:
    """How the frames an `hf:` model sees are picked, and where each value came from."""

    name: str
    """`benchmark` or `model-card`."""
    fps: float
    """Decoding rate (`crashchat.video.load_video`'s `fps`)."""
    max_frames: int
    """At most this many frames, thinned uniformly (`load_video`'s `max_frames`)."""
    sources: dict[str, str] = field(default_factory=dict)
    """fps, max_frames, min_frames, pixels -> where the value is documented (model-card only)."""


def model_card_frames(family: str, processor) -> FramePolicy:
    """The family's documented video defaults: its checkpoint's video processor config where it sets a
    value, else `MODEL_CARD_VIDEO`; the pixel limits stay the processor's own.

    A family documented by a frame count (LLaVA-OneVision) is decoded at 10 fps and thinned to that
    many frames, spread uniformly over the clip; one documented by a rate (Qwen) is decoded at that
    rate, up to its frame limit. `min_frames` is recorded, not enforced (a clip shorter than
    min_frames / fps gets fewer frames; the processor pads them).
    """
    if family not in MODEL_CARD_VIDEO:
        raise ModelLoadError(f"--frames model-card: no documented video defaults for {family}; "
                             f"known: {', '.join(MODEL_CARD_VIDEO)} (use --frames benchmark)")
    documented, where = MODEL_CARD_VIDEO[family]
    video = processor.video_processor
    values, sources = {}, {}
    for key in ("fps", "num_frames", "min_frames", "max_frames"):
        own = getattr(video, key, None)
        if own is not None and key in documented:
            values[key], sources[key] = own, f"the checkpoint's {type(video).__name__} ({key}={own})"
        elif key in documented:
            values[key], sources[key] = documented[key], where
    size = {k: v for k, v in dict(getattr(video, "size", None) or {}).items() if v is not None}
    sources["pixels"] = f"the checkpoint's {type(video).__name__} size {size}"
    if "num_frames" in values:
        sources["max_frames"] = sources.pop("num_frames")
        sources["fps"] = f"decoded at {BENCHMARK_DECODE_FPS:g} fps, then {values['num_frames']} frames uniformly"
        return FramePolicy("model-card", BENCHMARK_DECODE_FPS, int(values["num_frames"]), sources)
    return FramePolicy("model-card", float(values["fps"]), int(values["max_frames"]), sources)


@dataclass
class GenericPrepared:
    """One clip as the model's processor will receive it (frames already resized if asked)."""

    frames: object
    metadata: object
    clip: object = field(repr=False, default=None)


def _fetch(cfg: GenericConfig) -> tuple[Path, str | None]:
    """A local folder with the checkpoint, and the resolved hub commit (None for a local folder)."""
    path = Path(cfg.source)
    if path.is_dir():
        if cfg.revision:
            raise ModelLoadError(f"--model hf:{cfg.source}@{cfg.revision}: a local folder has no revisions")
        return path, revision_of(path)
    if path.exists() or cfg.source.startswith((".", "/", "~")):
        raise ModelLoadError(f"--model hf:{cfg.source}: no such folder")
    if cfg.source.count("/") != 1:
        raise ModelLoadError(f"--model hf:{cfg.source}: not a local folder, nor a hub id of the form owner/name")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(cfg.source, revision=cfg.revision))
    except Exception as exc:  # offline, unknown repo or revision, gated: one line with advice
        raise hub_error(f"hf:{cfg.source}" + (f"@{cfg.revision}" if cfg.revision else ""), exc) from exc
    return folder, revision_of(folder)


def check_video_support(config, processor, source: str) -> str:
    """The config's model_type if transformers can run it on a video; else `ModelLoadError` naming it."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    family = getattr(config, "model_type", None) or type(config).__name__
    if family not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise ModelLoadError(f"--model hf:{source}: {family} is not an image-text-to-text model in transformers; "
                             "a video-LLM is needed")
    if getattr(processor, "video_processor", None) is None:
        raise ModelLoadError(f"--model hf:{source}: {family} has no video support in its processor (image-only); "
                             "a video-LLM is needed")
    if not getattr(processor, "chat_template", None):
        raise ModelLoadError(f"--model hf:{source}: the processor has no chat template, so the question cannot be "
                             "put as the model expects")
    return family


def load_generic(cfg: GenericConfig) -> GenericVideoLLM:
    """Fetch (once, into the hub cache), check and load a transformers video-LLM."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from crashchat.loading import default_device

    folder, revision = _fetch(cfg)
    device = cfg.device or default_device()
    trust = cfg.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust)
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=trust)
    except (OSError, ValueError, KeyError) as exc:  # no config, unknown type, remote code refused
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"--model hf:{cfg.source}: cannot read its config or processor ({first[:200]})") from None
    family = check_video_support(config, processor, cfg.source)
    policy = model_card_frames(family, processor) if cfg.frames == "model-card" else None  # before the weights
    cuda = device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            folder, dtype=dtype, attn_implementation="sdpa", device_map={"": device}, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"--model hf:{cfg.source}: cannot load its weights ({first[:200]})") from None
    model.eval()
    return GenericVideoLLM(model=model, processor=processor, name=f"{PREFIX}{cfg.source}", device=device,
                           family=family, revision=revision, dtype=str(dtype).removeprefix("torch."),
                           max_pixels=cfg.max_pixels, trust_remote_code=trust, frames=policy)


def chat_text(processor, question: str) -> str:
    """The model's own chat template: the video, then the question without the `<video>` tag."""
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": strip_video_tag(question)}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


@dataclass
class FramePreparer:
    """What a generic model needs of a clip before its own processor: the frames (capped) and their metadata."""

    max_pixels: int | None = None

    def __call__(self, clip) -> GenericPrepared:
        if isinstance(clip, GenericPrepared):
            return clip
        return GenericPrepared(frames=resize_frames(clip.frames, self.max_pixels), metadata=clip.metadata(), clip=clip)


def resize_frames(frames, max_pixels: int | None):
    """Frames scaled down (never up) so that each has at most `max_pixels`, aspect ratio kept."""
    import numpy as np

    if max_pixels is None:
        return frames
    t, h, w, _ = frames.shape
    if h * w <= max_pixels:
        return frames
    scale = (max_pixels / (h * w)) ** 0.5
    nh, nw = max(1, int(h * scale)), max(1, int(w * scale))
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((nw, nh), Image.BICUBIC)) for f in frames])


@dataclass
class GenericVideoLLM:
    """A transformers video-LLM answering CrashChat's questions (no task groups, no adapters)."""

    model: object
    processor: object
    name: str
    device: str
    family: str
    revision: str | None = None
    dtype: str = "float32"
    max_pixels: int | None = None
    trust_remote_code: bool = False
    frames: FramePolicy | None = None
    """The model-card frame policy when asked for (None: the benchmark's frames, as `--fps`/`--max-frames`)."""
    random_weights: bool = False
    groups: tuple[str, ...] = ()
    prompt_format: str = "chat-template"
    """The model's own chat template: the video, then the question without the `<video>` tag."""
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def label(self) -> str:
        return self.name

    @property
    def frame_policy(self) -> str:
        return self.frames.name if self.frames is not None else "benchmark"

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def provenance(self) -> dict:
        """The `model` block of `crashchat.provenance` for outputs made with this model."""
        return {"id": self.name, "backend": "hf", "family": self.family, "revision": self.revision, "base": None,
                "linguistic": None, "perception": None, "dtype": self.dtype, "attention": "sdpa",
                "trust_remote_code": self.trust_remote_code, "random_weights": bool(self.random_weights)}

    @property
    def stop_ids(self) -> list[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids = list(eos) if isinstance(eos, (list, tuple)) else [eos]
        ids.append(self.tokenizer.eos_token_id)
        vocab = self.tokenizer.get_vocab()
        ids += [vocab[t] for t in _TURN_ENDS if t in vocab]
        return list(dict.fromkeys(i for i in ids if i is not None))

    def prepare(self, clip) -> GenericPrepared:
        return self.preparer()(clip)

    def preparer(self, device: str | None = None) -> FramePreparer:
        """`prepare` as a picklable callable (for `predict --workers`); the model's own processor
        runs with each question, so `device` is not used."""
        return FramePreparer(self.max_pixels)

    def chat_text(self, question: str) -> str:
        return chat_text(self.processor, question)

    def inputs(self, prepared: GenericPrepared, question: str) -> dict:
        import torch

        batch = self.processor(text=[self.chat_text(question)], videos=[prepared.frames],
                               video_metadata=[prepared.metadata], do_sample_frames=False, return_tensors="pt")
        dtype = next(self.model.parameters()).dtype
        return {k: (v.to(self.device, dtype) if torch.is_floating_point(v) else v.to(self.device))
                for k, v in batch.items() if isinstance(v, torch.Tensor)}

    def generate(self, clip, question: str, *, group: str | None = None, max_new_tokens: int = 256,
                 **generate_kwargs) -> str:
        """The greedy answer to one question about a clip (`group` is accepted and ignored)."""
        import torch

        inputs = self.inputs(self.prepare(clip), question)
        pad = self.tokenizer.pad_token_id
        kwargs = dict(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, eos_token_id=self.stop_ids,
                      pad_token_id=pad if pad is not None else self.stop_ids[0], **generate_kwargs)
        with self._lock, torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()

    @contextlib.contextmanager
    def session(self, clip, *, group: str | None = None):
        """Several questions about one clip. No prefix is shared: each family lays out its video
        tokens (and, for Qwen, its 3-D positions) its own way, so every question is a full prompt."""
        prepared = self.prepare(clip)

        def ask(question: str, max_new_tokens: int = 256, **generate_kwargs) -> str:
            return self.generate(prepared, question, max_new_tokens=max_new_tokens, **generate_kwargs)

        yield ask
