"""The loaded CrashChat model and how it answers: one frozen base, one adapter per task group.

`CrashChat.using(group)` switches LoRA and projector together; `generate`/`stream` answer one
question; `session` asks several questions about one clip sharing a single prefill of the video.
Loading lives in `crashchat.loading`, the prompt format in `crashchat.prompt`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crashchat.bases import BaseInfo, ProcessorSettings
from crashchat.prompt import ClipPreparer, Prepared, chat_text, prepare_clip
from crashchat.tasks import GROUPS

if TYPE_CHECKING:  # torch, peft and transformers load in seconds; annotations only need the names
    from peft import PeftModel
    from transformers import VideoLlama3ForConditionalGeneration, VideoLlama3Processor


def _cache_kwarg() -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); the GPU image has 5.17."""
    import inspect

    from transformers import VideoLlama3ForConditionalGeneration

    params = inspect.signature(VideoLlama3ForConditionalGeneration.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@dataclass
class CrashChat:
    """The loaded model: one frozen base, one adapter per task group (or none for the baseline)."""

    model: PeftModel | VideoLlama3ForConditionalGeneration
    """The base with one LoRA adapter (and projector copy) per group, switched by `using`; the bare
    base when `groups` is empty (the `videollama3` baseline)."""
    processor: VideoLlama3Processor
    name: str
    random_weights: bool
    device: str
    groups: tuple[str, ...]
    sources: dict = field(default_factory=dict)
    """Where the weights came from: `base`, `linguistic`, `perception` (hub id or folder; None = none)."""
    base: BaseInfo | None = None
    """Which base: id, short name, hub repo, subfolder and revision (`crashchat.bases`)."""
    settings: ProcessorSettings | None = None
    """What the base's configs set for the processor, with where each value came from."""
    prompt_format: str = "authors-eval"
    """How questions are put: the split's value with its `<video>\n`, after the frames, no system prompt."""
    static_cache: bool | None = None
    """Decode shared-prefix batches with a static key/value cache, which transformers' `generate`
    compiles (CUDA graphs) once per batch size and cache-length bucket. None: on a CUDA device,
    unless on ZeroGPU (no `torch.compile` there) or `CRASHCHAT_STATIC_CACHE=0`."""
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def label(self) -> str:
        """How the model names itself in every output."""
        return f"{self.name} (RANDOM WEIGHTS: answers are meaningless)" if self.random_weights else self.name

    def prepare(self, clip) -> Prepared:
        """Resize, patch and compress the clip's frames once (on the model's GPU when it has one);
        the result serves every question."""
        return prepare_clip(self.processor, clip, self.device)

    def preparer(self, device: str | None = None) -> ClipPreparer:
        """`prepare` as a picklable callable: on the CPU by default (`predict --workers` runs it in
        other processes), or on `device`."""
        return ClipPreparer(self.processor, device)

    def prompt(self, question: str, history: Sequence[tuple[str, str]] = ()) -> str:
        """The chat text with the video placeholder in the first user turn (no system prompt)."""
        return chat_text(self.processor, question, history)

    def prompt_ids(self, prepared: Prepared, question: str, history: Sequence[tuple[str, str]] = ()) -> dict:
        """Token ids and attention mask of the whole prompt (the expanded video included), on the CPU."""
        text = chat_text(self.processor, question, history, prepared)
        return dict(self.tokenizer(text, return_tensors="pt", add_special_tokens=False))

    def inputs(self, prepared: Prepared, question: str, history: Sequence[tuple[str, str]] = ()) -> dict:
        """Model inputs (on the model's device) for one question about a prepared clip."""
        import torch

        ids = self.prompt_ids(prepared, question, history)
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

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def token_budget(self) -> int:
        """Merged visual tokens per clip the processor allows (16384 for the real model, as evaluated)."""
        from crashchat.prompt import PIXELS_PER_MERGED_TOKEN

        return int(self.processor.video_processor.size["longest_edge"]) // PIXELS_PER_MERGED_TOKEN

    def provenance(self) -> dict:
        """The `model` block of `crashchat.provenance` for outputs made with this model."""
        dtype = next(self.model.parameters()).dtype
        base = self.base or BaseInfo(str(self.sources.get("base")))
        return {"id": self.name, "backend": "crashchat", "family": "video_llama_3", "revision": None,
                "base": base.id, "base_repo": base.repo, "base_subfolder": base.subfolder,
                "base_revision": base.revision, "linguistic": self.sources.get("linguistic"),
                "perception": self.sources.get("perception"), "dtype": str(dtype).removeprefix("torch."),
                "attention": "sdpa", "trust_remote_code": False, "random_weights": bool(self.random_weights)}

    @property
    def stop_ids(self) -> list[int]:
        """The end of the assistant turn (`<|im_end|>`) and the tokenizer's eos."""
        tok = self.tokenizer
        stops = [i for i in (tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id) if i is not None]
        return list(dict.fromkeys(stops))

    def uses_static_cache(self) -> bool:
        import os

        from crashchat.loading import static_cache_allowed

        if self.static_cache is not None:
            return self.static_cache
        if not static_cache_allowed():
            return False
        zero_gpu = "SPACES_ZERO_GPU" in os.environ  # ZeroGPU forbids torch.compile (spaces.md)
        return str(self.device).startswith("cuda") and not zero_gpu

    def _generation_kwargs(self, max_new_tokens: int, extra: dict | None = None) -> dict:
        """Greedy, stopping at `stop_ids`; `extra` (a streamer, `min_new_tokens` for benchmarks, a
        logits processor, ...) goes to `generate` as given."""
        stops = self.stop_ids
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stops[0]
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

    def stream(self, clip, question: str, *, group: str, history=(), max_new_tokens: int = 256,
               **generate_kwargs) -> Iterator[str]:
        """Text chunks of the greedy answer as they are decoded (generation runs in a thread).

        `generate_kwargs` go to transformers' `generate` (e.g. a `logits_processor`)."""
        import torch
        from transformers import TextIteratorStreamer

        prepared = self.prepare(clip)
        inputs = self.inputs(prepared, question, history)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def work():
            try:
                with self.using(group), torch.inference_mode():
                    self.model.generate(**inputs, **self._generation_kwargs(max_new_tokens, generate_kwargs),
                                        streamer=streamer)
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
        96-frame clip: its key/value cache is computed once and reused, so a question costs only
        its own tokens plus decoding. The vision encoder (frozen, the same for both groups) runs
        once per clip: its output is kept on the prepared clip and each group applies its own
        projector to it. Yields a `Session`: `ask(question, max_new_tokens=256, **generate_kwargs)
        -> str`, and `ask.batch(questions, ...)` decodes several questions together from the
        shared prefix; greedy answers equal `generate`'s either way.
        """
        with self.sessions([clip], group=group) as ask:
            yield ask

    @contextlib.contextmanager
    def sessions(self, clips: Sequence, *, group: str):
        """`session` for several clips at once: `ask.batch(questions, clips=[i, ...])` decodes
        questions about different clips in one batch (each row continues its own clip's prefix)."""
        import torch

        prepared = [self.prepare(c) for c in clips]
        with self.using(group), torch.inference_mode():
            prefixes = []
            for p in prepared:
                ids = self._prefix_ids(p)
                prefixes.append(Prefix(p, ids, self._prefill(p, ids)))
            yield Session(self, group, prefixes)

    def _prefix_ids(self, prepared: Prepared):
        """Token ids of the shared prefix: `<|im_start|>user\n`, the expanded video, and its newline."""
        text = self.prompt("")
        cut = text.index(self.processor.video_token) + len(self.processor.video_token) + 1
        return self.tokenizer(text[:cut].replace(self.processor.video_token, prepared.placeholder, 1),
                              return_tensors="pt", add_special_tokens=False)["input_ids"].to(self.device)

    def _inner(self):
        """The inner VideoLlama3Model (LoRA layers and the active projector are injected in place)."""
        return (self.model.get_base_model() if self.groups else self.model).model

    def vision_states(self, prepared: Prepared):
        """The vision encoder's output for a clip, computed once and kept on `prepared`.

        The encoder is frozen and carries no LoRA (`crashchat.weights.LORA_TARGET`), so both
        groups see the same states; only the projector after it differs per group.
        """
        import torch

        inner = self._inner()
        dtype = next(inner.vision_model.parameters()).dtype
        key = (str(self.device), str(dtype))
        states = prepared.cache.get(key)
        if states is None:
            video = {k: (v.to(self.device, dtype) if torch.is_floating_point(v) else v.to(self.device))
                     for k, v in prepared.video_inputs.items()}
            with torch.inference_mode():
                states = inner.vision_model(pixel_values=video["pixel_values_videos"], grid_thw=video["video_grid_thw"],
                                            merge_sizes=video["video_merge_sizes"], return_dict=True).last_hidden_state
            prepared.cache.clear()  # one device/dtype at a time
            prepared.cache[key] = states
        return states

    def _prefill(self, prepared: Prepared, prefix_ids):
        """The prefix's key/value cache on the active group: shared vision states, this group's projector.

        The language model alone runs here (no lm_head: a 15k x 152k logits tensor would be
        4.5 GB in bf16 at 7B).
        """
        import torch

        inner = self._inner()
        embeds = inner.get_input_embeddings()(prefix_ids)
        video = inner.projector(self.vision_states(prepared))
        mask = prepared.video_inputs.get("video_compression_mask")
        if mask is not None:
            video = video[mask.to(video.device)]
        where = (prefix_ids == self.model.config.video_token_id).unsqueeze(-1)
        if int(where.sum()) != video.shape[0]:
            raise RuntimeError(f"{int(where.sum())} video tokens in the prompt for {video.shape[0]} video features")
        embeds = embeds.masked_scatter(where, video.to(embeds.dtype))
        out = inner.language_model(inputs_embeds=embeds, attention_mask=torch.ones_like(prefix_ids), use_cache=True)
        return out["cache"] if "cache" in out else out["past_key_values"]  # renamed in 5.2x

    def logits(self, clip, question: str, *, group: str):
        """Next-token logits after the prompt (for tests and checks; float32 on CPU)."""
        import torch

        inputs = self.inputs(self.prepare(clip), question)
        with self.using(group), torch.inference_mode():
            return self.model(**inputs).logits[0, -1].float().cpu()


@dataclass
class Prefix:
    """One clip's shared prompt prefix on a group: its token ids and their key/value cache."""

    prepared: Prepared
    ids: object
    cache: object

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])


def _layer_kv(cache, layer: int):
    """(keys, values) of one layer of a DynamicCache (5.2x `layers[i]`, older `key_cache[i]`)."""
    if hasattr(cache, "layers"):
        return cache.layers[layer].keys, cache.layers[layer].values
    return cache.key_cache[layer], cache.value_cache[layer]


def _num_layers(cache) -> int:
    return len(cache.layers) if hasattr(cache, "layers") else len(cache.key_cache)


STATIC_BUCKET = 4096
"""Static caches are sized in steps of this many tokens, so a compiled decode step is reused
across questions and clips whose prompts differ by a few hundred tokens (one graph per batch
size and bucket, not per prompt length)."""


def static_copy(cache, config, needed: int):
    """A StaticCache holding `cache`'s keys and values, sized `needed` rounded up to `STATIC_BUCKET`."""
    import torch
    from transformers import StaticCache

    capacity = -(-needed // STATIC_BUCKET) * STATIC_BUCKET
    static = StaticCache(config=config, max_cache_len=capacity)
    for layer in range(_num_layers(cache)):
        keys, values = _layer_kv(cache, layer)
        # 5.2x static layers append at their own running length; older ones read cache_position
        static.update(keys, values, layer, {"cache_position": torch.arange(keys.shape[2], device=keys.device)})
    return static


def allow_compiled_graphs(count: int = 64) -> None:
    """Room for one compiled decode graph per (batch size, bucket) before dynamo falls back to eager."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, count)


def stack_caches(caches: Sequence, rows: Sequence[int], width: int):
    """A new DynamicCache whose row r is `caches[rows[r]]`, left-padded with zeros to `width` tokens
    (the padding is masked out by the attention mask, so its values never matter)."""
    import torch
    from transformers import DynamicCache

    out = DynamicCache()
    for layer in range(_num_layers(caches[0])):
        keys, values = [], []
        for i in rows:
            k, v = _layer_kv(caches[i], layer)
            gap = width - k.shape[2]
            keys.append(torch.nn.functional.pad(k, (0, 0, gap, 0)))
            values.append(torch.nn.functional.pad(v, (0, 0, gap, 0)))
        out.update(torch.cat(keys), torch.cat(values), layer)
    return out


class Session:
    """Questions about prepared clips on one group, answered from each clip's shared video prefix.

    Made by `CrashChat.session` (one clip) or `CrashChat.sessions` (several). Calling it answers
    one question about the first clip (the prefix cache is cropped back afterwards); `batch`
    answers several together: each row continues its clip's prefix (shorter prefixes padded on
    the left), shorter questions are padded between the prefix and the question (masked), and
    every row stops at its own end token.
    """

    def __init__(self, chat: CrashChat, group: str, prefixes: list[Prefix]):
        self.chat, self.group, self.prefixes = chat, group, prefixes

    @property
    def prefix_ids(self):
        return self.prefixes[0].ids

    @property
    def cache(self):
        return self.prefixes[0].cache

    def __call__(self, question: str, max_new_tokens: int = 256, **generate_kwargs) -> str:
        return self.batch([question], max_new_tokens=max_new_tokens, **generate_kwargs)[0]

    def _suffix(self, clip: int, question: str):
        """The question's ids after the clip's prefix, or None when they do not continue it."""
        import torch

        prefix = self.prefixes[clip]
        # the ids alone: the clip's pixels are already in the prefix cache, no need to move them again
        ids = self.chat.prompt_ids(prefix.prepared, question)["input_ids"].to(prefix.ids.device)
        if ids.shape[1] > prefix.length and torch.equal(ids[:, :prefix.length], prefix.ids):
            return ids[0, prefix.length:]
        return None

    def batch(self, questions: Sequence[str], max_new_tokens: int = 256, clips: Sequence[int] | None = None,
              **generate_kwargs) -> list[str]:
        """Greedy answers to `questions` (about `clips[i]`, default the first clip), decoded together.

        `generate_kwargs` apply to the batch: per-row logits processors go in as one (see
        `crashchat.guided.PerRow`)."""
        import torch

        chat = self.chat
        chat._activate(self.group)  # a nested call in this thread may have switched adapters
        clips = list(clips) if clips is not None else [0] * len(questions)
        suffixes = [self._suffix(c, q) for c, q in zip(clips, questions, strict=True)]
        kwargs = chat._generation_kwargs(max_new_tokens, generate_kwargs)
        if any(s is None for s in suffixes):
            # a question's first token merged with the prefix's last one: no sharing, one by one
            return [self._alone(c, q, kwargs) for c, q in zip(clips, questions, strict=True)]
        prefixes = [self.prefixes[c] for c in clips]
        head = max(p.length for p in prefixes)
        width = max(len(s) for s in suffixes)
        pad = kwargs["pad_token_id"]
        rows, masks = [], []
        for prefix, suffix in zip(prefixes, suffixes, strict=True):
            left, gap = head - prefix.length, width - len(suffix)
            device = suffix.device
            rows.append(torch.cat([torch.full((left,), pad, device=device), prefix.ids[0],
                                   torch.full((gap,), pad, device=device), suffix]))
            masks.append(torch.cat([torch.zeros(left, dtype=torch.long), torch.ones(prefix.length, dtype=torch.long),
                                    torch.zeros(gap, dtype=torch.long), torch.ones(len(suffix), dtype=torch.long)]
                                   ).to(device))
        input_ids, attention_mask = torch.stack(rows), torch.stack(masks)
        static = chat.uses_static_cache()
        alone = len(questions) == 1 and not static
        cache = self.prefixes[clips[0]].cache if alone else stack_caches([p.cache for p in self.prefixes], clips, head)
        if static:
            allow_compiled_graphs()
            cache = static_copy(cache, chat.model.config, input_ids.shape[1] + kwargs["max_new_tokens"])
        kwargs[_cache_kwarg()] = cache
        try:
            out = chat.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:  # back to the shared video prefix for the next question; a negative count
            # removes tokens in both the 5.17 and the 5.24 `crop` APIs
            if alone and (extra := cache.get_seq_length() - self.prefixes[clips[0]].length) > 0:
                cache.crop(-extra)
        return [chat.tokenizer.decode(row[input_ids.shape[1]:], skip_special_tokens=True).strip() for row in out]

    def _alone(self, clip: int, question: str, kwargs: dict) -> str:
        inputs = self.chat.inputs(self.prefixes[clip].prepared, question)
        out = self.chat.model.generate(**inputs, **kwargs)
        return self.chat.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
