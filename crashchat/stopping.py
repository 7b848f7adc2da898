"""A guard that ends an answer once it has degenerated into an exact loop.

A model that falls into a loop ("the car the car the car ...") burns every step it is allowed:
2048 in the authors' evaluation, about a minute per answer for a 7B at batch 1. The guard stops
an answer whose last `window` generated tokens repeat a block of at most `max_period` tokens
exactly (`window` = max(64, 4 x period), so a block repeats at least four times): natural text,
even a list, does not repeat 64 tokens verbatim. The answer keeps everything generated up to that
point, and the stop is recorded with it (`stopped: "repetition"`), so nothing is hidden.

The cut changes the answer's text, and so its score: a loop run to 2048 tokens and the same loop
cut after 64 get different BLEU and ROUGE (brevity and n-gram counts), and the difference is
largest for zero-shot baselines, which loop more than the fine-tuned model. The authors ran no
guard, so `predict` runs without one unless `--repetition-stop` is given (its provenance records
the setting); `analyze` and the app, which answer a person, use it by default.

>>> repeats([5, 6, 7] + [1, 2] * 40)
True
>>> repeats(list(range(100)))
False
"""

from __future__ import annotations

WINDOW = 64
MAX_PERIOD = 32


def repeats(tokens, *, window: int = WINDOW, max_period: int = MAX_PERIOD) -> bool:
    """Whether the tail of `tokens` is an exact loop (see the module docstring)."""
    tokens = list(tokens)
    for period in range(1, max_period + 1):
        span = max(window, 4 * period)
        if len(tokens) < span:
            return False
        tail = tokens[-span:]
        if tail[period:] == tail[:-period]:
            return True
    return False


class RepetitionStop:
    """A transformers `StoppingCriteria` applying `repeats` to each row's generated tokens.

    One instance per `generate` call: it notes the prompt length on its first call, and
    `stopped` says whether it ended the answer (of row 0 for `generate`; `rows` for batches).
    """

    def __init__(self, *, window: int = WINDOW, max_period: int = MAX_PERIOD):
        self.window, self.max_period = window, max_period
        self.start: int | None = None
        self.rows: set[int] = set()

    @property
    def stopped(self) -> bool:
        return 0 in self.rows

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        if self.start is None:
            self.start = input_ids.shape[1] - 1  # called after the first new token
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        generated = input_ids[:, self.start:]
        if generated.shape[1] < self.window:
            return done
        for row in range(input_ids.shape[0]):
            if repeats(generated[row, -(4 * self.max_period + self.window):].tolist(),
                       window=self.window, max_period=self.max_period):
                self.rows.add(row)
                done[row] = True
        return done


def repetition_options(guard: RepetitionStop) -> dict:
    """`generate` arguments that install `guard`."""
    from transformers import StoppingCriteriaList

    return {"stopping_criteria": StoppingCriteriaList([guard])}
