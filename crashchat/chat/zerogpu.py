"""The chat tab on a Hugging Face ZeroGPU Space.

On ZeroGPU (`SPACES_ZERO_GPU` set, the `spaces` package installed by the Space) a GPU is attached
only while a function decorated with `spaces.GPU` runs, for the `duration` that call asked for
(a shorter ask gets a better place in the queue and spends less of the visitor's daily GPU quota;
a call that runs past it may be aborted). So, here:

- `load_model`: the weights are read once at start-up on the CPU, then moved with `.to("cuda")`.
  `spaces`, imported first, patches torch so that this move is only recorded at start-up and
  replayed on the real GPU inside each call (its documented pattern). Loading straight onto
  "cuda" would make transformers query CUDA memory outside a call.
- `gpu(fn, duration)`: `spaces.GPU(duration=...)` around every function that runs the model,
  `duration` being a callable that takes the function's own arguments and estimates the
  seconds from the clip and the tasks asked (`GpuCost`, `request_seconds`).
- no `torch.compile`: `CrashChat.uses_static_cache` is off when `SPACES_ZERO_GPU` is set.

Off ZeroGPU nothing here imports `spaces`, and `gpu` returns the function unchanged.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crashchat.chat.config import TabConfig
    from crashchat.model import CrashChat

ZERO_GPU_DEVICE = "cuda"
"""Where the model is moved at start-up on ZeroGPU (a recorded move until a `spaces.GPU` call)."""


def zero_gpu() -> bool:
    """True on a Hugging Face ZeroGPU Space (the GPU is attached only inside `spaces.GPU` calls).

    The variable's presence counts, as in `CrashChat.uses_static_cache`; `spaces` must be importable.
    """
    return "SPACES_ZERO_GPU" in os.environ and importlib.util.find_spec("spaces") is not None


def load_model(name: str) -> CrashChat:
    """The model `name`, loaded on the CPU and moved to the GPU the way ZeroGPU expects."""
    import spaces  # noqa: F401 - first: it patches torch before anything can touch CUDA

    from crashchat import loading

    print(f"ZeroGPU: loading {name} on the CPU, then moving it to {ZERO_GPU_DEVICE} "
          "(attached inside each spaces.GPU call)", file=sys.stderr)
    chat = loading.load_model(loading.ModelConfig(name=name, device="cpu"))
    chat.model.to(ZERO_GPU_DEVICE)
    chat.device = ZERO_GPU_DEVICE
    return chat


def gpu(fn: Callable, duration: Callable[..., int]) -> Callable:
    """`spaces.GPU(duration=duration)(fn)` on ZeroGPU, else `fn` itself.

    `duration` is called by `spaces` with `fn`'s own arguments before the GPU is requested.
    """
    if not zero_gpu():
        return fn
    import spaces

    return spaces.GPU(duration=duration)(fn)


@dataclass(frozen=True)
class GpuCost:
    """How many seconds a request holds a ZeroGPU slice (about half an H200): ESTIMATES.

    Not measured on ZeroGPU. Derived from the full-H200 probe (`README`, "Speed"; 7B shapes,
    random weights, bf16, sdpa, dynamic cache): 0.32 s to the first token for 96 frames, 33 ms
    per decode step at batch 1 and 85.5 ms at batch 4; here doubled for a slice, plus a margin.
    Each answer is assumed to run to the length limit, since a call that outlives its duration
    may be aborted.
    """

    start_s: float = 15.0
    """A fresh GPU worker first copies the weights (about 17 GB) onto the GPU."""
    per_frame_s: float = 0.02
    """Processor, vision encoder and one group's video prefill, per sampled frame."""
    step_s: float = 0.1
    """One greedy decode step of one question (dynamic cache, no compile)."""
    step_per_row_s: float = 0.05
    """What each further question decoded in the same batch adds to a step."""
    min_s: int = 20

    def seconds(self, frames: int, batches: Sequence[int], max_new_tokens: int, limit_s: float) -> int:
        """Whole seconds for `frames` sampled frames and one decode pass per group, `batches`
        giving how many questions each pass decodes together; at most the request's time limit
        (the request stops there) plus the worker's start.

        >>> GpuCost().seconds(frames=96, batches=[4, 2], max_new_tokens=256, limit_s=300)
        122
        >>> GpuCost().seconds(frames=96, batches=[1], max_new_tokens=256, limit_s=300)
        43
        >>> GpuCost().seconds(frames=96, batches=[4, 2], max_new_tokens=2048, limit_s=300)
        315
        """
        work = sum(frames * self.per_frame_s + max_new_tokens * (self.step_s + (n - 1) * self.step_per_row_s)
                   for n in batches)
        return math.ceil(max(self.min_s, min(self.start_s + work, self.start_s + limit_s)))


COST = GpuCost()


def analysis_batches(tasks: Sequence[str]) -> list[int]:
    """Questions per decode pass when the pipeline answers `tasks`: one pass per group.

    >>> analysis_batches(["crash_recognition", "crash_localization", "pre_crash_localization",
    ...                   "crash_description", "causal_reasoning", "prevention_reasoning"])
    [4, 2]
    >>> analysis_batches(["crash_localization"])  # recognition comes along (the gate)
    [1, 1]
    """
    from crashchat.pipeline import task_order
    from crashchat.tasks import get_task

    groups = Counter(get_task(t).group for t in task_order(tasks))
    return list(groups.values())


def request_seconds(cfg: TabConfig, frames: int, batches: Sequence[int], cost: GpuCost = COST) -> int:
    """The `duration` to ask `spaces.GPU` for: a clip of `frames` sampled frames
    (`crashchat.chat.resources.clip_frames`), `batches` decode passes; the least for no readable
    video (frames 0: the request only says so)."""
    if not frames:
        return cost.min_s
    return cost.seconds(frames, batches, cfg.max_new_tokens, cfg.time_limit_s)
