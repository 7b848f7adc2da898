"""The loaded CrashChat model and how it answers: one frozen base, one adapter per task group.

`CrashChat.using(group)` switches LoRA and projector together; `generate`/`stream` answer one
question; `session` asks several questions about one clip sharing a single prefill of the video.
Loading lives in `crashchat.loading`, the prompt format in `crashchat.prompt`.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from crashchat.prompt import Prepared, chat_text, prepare_clip
from crashchat.tasks import GROUPS


def _cache_kwarg() -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); the GPU image has 5.17."""
    import inspect

    from transformers import VideoLlama3ForConditionalGeneration

    params = inspect.signature(VideoLlama3ForConditionalGeneration.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@dataclass
class CrashChat:
    """The loaded model: one frozen base, one adapter per task group (or none for the baseline)."""

    model: object
    processor: object
    name: str
    random_weights: bool
    device: str
    groups: tuple[str, ...]
    sources: dict = field(default_factory=dict)
    """Where the weights came from: `base`, `linguistic`, `perception` (hub id or folder; None = none)."""
    prompt_format: str = "authors-eval"
    """How questions are put: the split's value with its `<video>\n`, after the frames, no system prompt."""
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
        return {"id": self.name, "backend": "crashchat", "family": "video_llama_3", "revision": None,
                "base": self.sources.get("base"), "linguistic": self.sources.get("linguistic"),
                "perception": self.sources.get("perception"), "dtype": str(dtype).removeprefix("torch."),
                "attention": "sdpa", "trust_remote_code": False, "random_weights": bool(self.random_weights)}

    @property
    def stop_ids(self) -> list[int]:
        """The end of the assistant turn (`<|im_end|>`) and the tokenizer's eos."""
        tok = self.tokenizer
        stops = [i for i in (tok.convert_tokens_to_ids("<|im_end|>"), tok.eos_token_id) if i is not None]
        return list(dict.fromkeys(stops))

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
        import torch

        prepared = self.prepare(clip)
        with self.using(group), torch.inference_mode():
            prefix_ids = self._prefix_ids(prepared)
            yield Session(self, group, prepared, prefix_ids, self._prefill(prepared, prefix_ids))

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


class Session:
    """Questions about one prepared clip on one group, answered from its shared video prefix.

    Made by `CrashChat.session`. Calling it answers one question (the prefix cache is cropped back
    afterwards); `batch` answers several together: each row continues the same prefix, shorter
    questions are padded (masked) between the prefix and the question, and every row stops at its
    own end token.
    """

    def __init__(self, chat: CrashChat, group: str, prepared: Prepared, prefix_ids, cache):
        self.chat, self.group, self.prepared = chat, group, prepared
        self.prefix_ids, self.cache, self.length = prefix_ids, cache, prefix_ids.shape[1]

    def __call__(self, question: str, max_new_tokens: int = 256, **generate_kwargs) -> str:
        return self.batch([question], max_new_tokens=max_new_tokens, **generate_kwargs)[0]

    def _ids(self, question: str):
        import torch

        ids = self.chat.inputs(self.prepared, question)["input_ids"]
        shared = ids.shape[1] > self.length and torch.equal(ids[:, :self.length], self.prefix_ids)
        return ids, shared

    def batch(self, questions: Sequence[str], max_new_tokens: int = 256, **generate_kwargs) -> list[str]:
        """Greedy answers to `questions`, decoded together (`generate_kwargs` apply to the batch:
        per-row logits processors go in as one, see `crashchat.pipeline`)."""
        import copy

        import torch

        chat = self.chat
        chat._activate(self.group)  # a nested call in this thread may have switched adapters
        encoded = [self._ids(q) for q in questions]
        kwargs = chat._generation_kwargs(max_new_tokens, generate_kwargs)
        if not all(shared for _, shared in encoded):
            # a question's first token merged with the prefix's last one: no sharing, one by one
            return [self._alone(q, kwargs) for q in questions]
        suffixes = [ids[0, self.length:] for ids, _ in encoded]
        width = max(len(s) for s in suffixes)
        pad = kwargs["pad_token_id"]
        rows, masks = [], []
        for suffix in suffixes:
            gap = width - len(suffix)  # padding sits between the prefix and the question, masked out
            rows.append(torch.cat([self.prefix_ids[0], torch.full((gap,), pad, device=suffix.device), suffix]))
            masks.append(torch.cat([torch.ones(self.length, dtype=torch.long), torch.zeros(gap, dtype=torch.long),
                                    torch.ones(len(suffix), dtype=torch.long)]).to(suffix.device))
        input_ids, attention_mask = torch.stack(rows), torch.stack(masks)
        if len(questions) == 1:
            cache = self.cache
        else:
            cache = copy.deepcopy(self.cache)
            cache.batch_repeat_interleave(len(questions))
        kwargs[_cache_kwarg()] = cache
        try:
            out = chat.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:  # back to the shared video prefix for the next question; a negative count
            # removes tokens in both the 5.17 and the 5.24 `crop` APIs
            if cache is self.cache and (extra := cache.get_seq_length() - self.length) > 0:
                cache.crop(-extra)
        return [chat.tokenizer.decode(row[input_ids.shape[1]:], skip_special_tokens=True).strip() for row in out]

    def _alone(self, question: str, kwargs: dict) -> str:
        inputs = self.chat.inputs(self.prepared, question)
        out = self.chat.model.generate(**inputs, **kwargs)
        return self.chat.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
