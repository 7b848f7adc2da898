"""What VideoLLaMA3 sees: the processor's frame budget, the chat format, and the prompt text.

Shared by inference and training so that both build exactly the same input for the same clip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from crashchat.bases import ProcessorSettings

EVAL_TOKEN_BUDGET = 16384
"""Merged visual tokens per clip at evaluation (the authors' eval scripts; 10240 in training)."""
TRAIN_TOKEN_BUDGET = 10240
"""Merged visual tokens per clip in training (the authors' training scripts)."""
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


def build_processor(tokenizer, token_budget: int = EVAL_TOKEN_BUDGET, min_tokens: int | None = None,
                    settings: ProcessorSettings | None = None):
    """A native processor around `tokenizer` with the CrashChat frame budget and chat format.

    `token_budget` is the total of merged tokens over all frames (split per frame by the
    processor). `settings` are what the base's configs set (`crashchat.bases`: token compression,
    the per-frame floor, the normalisation; defaults when None); `min_tokens` overrides the floor.
    The floor is 16 (4x4) by default, as the authors' image processor, not transformers' 128,
    which would upscale small frames (320x240) differently.
    """
    from transformers import VideoLlama3ImageProcessor, VideoLlama3Processor, VideoLlama3VideoProcessor

    settings = settings or ProcessorSettings()
    floor = settings.min_tokens if min_tokens is None else min_tokens
    norm = {"image_mean": list(settings.image_mean), "image_std": list(settings.image_std)}
    video = VideoLlama3VideoProcessor(
        size={"shortest_edge": floor * PIXELS_PER_MERGED_TOKEN, "longest_edge": token_budget * PIXELS_PER_MERGED_TOKEN},
        # frames arrive already sampled at 10 fps by crashchat.video; at most 96 of them
        do_sample_frames=False, max_frames=96, use_token_compression=settings.token_compression, **norm,
    )
    return VideoLlama3Processor(
        image_processor=VideoLlama3ImageProcessor(**norm), tokenizer=tokenizer, video_processor=video,
        chat_template=CHAT_TEMPLATE,
    )


def with_token_budget(processor, token_budget: int):
    """The same processor (tokenizer, compression, floor, normalisation) with another clip budget."""
    video = processor.video_processor
    settings = ProcessorSettings(token_compression=bool(video.use_token_compression),
                                 min_tokens=int(video.size["shortest_edge"]) // PIXELS_PER_MERGED_TOKEN,
                                 image_mean=tuple(video.image_mean), image_std=tuple(video.image_std))
    return build_processor(processor.tokenizer, token_budget, settings=settings)


@dataclass
class Prepared:
    """Processor outputs of one clip, computed once and reused for every question about it."""

    video_inputs: dict
    """`pixel_values_videos`, `video_grid_thw`, `video_merge_sizes`, `video_compression_mask`."""
    placeholder: str
    """The expanded video text: `Time 0.0s:<|video_pad|>...,Time 0.1s:...`."""
    clip: object = field(repr=False, default=None)
    cache: dict = field(repr=False, default_factory=dict)
    """Work done once per clip and reused (the vision encoder's output, see `CrashChat.vision_states`)."""


def prepare_clip(processor, clip, device: str | None = None) -> Prepared:
    """The processor's video inputs and expanded placeholder for a clip (a `Prepared` passes through).

    With `device` (e.g. the model's `cuda`), resizing, normalising and patching run there: the
    frames are moved once and the patches stay on it.
    """
    if isinstance(clip, Prepared):
        return clip
    extra = {"device": device} if device and str(device) != "cpu" else {}
    video_inputs = dict(processor.video_processor(
        videos=[clip.frames], video_metadata=[clip.metadata()], return_tensors="pt", **extra,
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
class ClipPreparer:
    """`prepare_clip` with its processor bound: picklable, so decoding workers can run it (on the CPU)."""

    processor: object
    device: str | None = None

    def __call__(self, clip) -> Prepared:
        return prepare_clip(self.processor, clip, self.device)
