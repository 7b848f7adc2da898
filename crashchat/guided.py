"""Format-guided decoding: closed-form answers that always parse, on request.

A transformers `LogitsProcessor` that lets the model pick only tokens that keep its answer a
prefix of a well-formed one, and the end token only once the answer is complete:

| task kind    | answer form                  | bounds                               |
| ------------ | ---------------------------- | ------------------------------------ |
| `yes_no`     | `Yes` or `No`                |                                      |
| `time`       | `t seconds`                  | 0 <= t <= clip duration              |
| `time_range` | `a - b seconds`              | 0 <= a < b <= clip duration          |

Times have at most one decimal (`12.5`), as the split's answers do. Free-text tasks are never
guided. Among the allowed tokens the model's own ranking decides (greedy stays greedy), so this
changes *what is measured*: off by default for benchmark runs, recorded in every output when on.
Works with any tokenizer: the check runs on the decoded text of each token, so it does not care
how a vocabulary splits digits.

>>> answer_prefix_ok("time_range", "1.5 - 2", 3.0), answer_prefix_ok("time_range", "2.5 - 1", 3.0)
(True, False)
>>> answer_complete("time_range", "1.5 - 1.5 seconds", 3.0), answer_complete("time_range", "1.5 - 1.6 seconds", 3.0)
(False, True)
>>> answer_complete("time", "2.4 seconds", 3.0), answer_complete("yes_no", "Ye", 3.0)
(True, False)
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

GUIDED_KINDS = ("yes_no", "time", "time_range")
_ALPHABET = frozenset("0123456789. -secondsYesNo")
_NUMBER = re.compile(r"(0|[1-9]\d{0,3})(\.(\d)?)?")


def _number_ok(text: str, low: float, high: float, complete: bool) -> bool:
    """`text` is a number with at most one decimal in [low, high], or (unless `complete`) a prefix of one.

    >>> _number_ok("1", 5.0, 12.0, False), _number_ok("1", 5.0, 9.0, False), _number_ok("0", 0.5, 9.0, False)
    (True, False, True)
    """
    lo, hi = math.ceil(low * 10 - 1e-6) / 10, math.floor(high * 10 + 1e-6) / 10  # the 0.1 s grid
    if lo > hi:
        return False
    if not text:
        return not complete
    match = _NUMBER.fullmatch(text)
    if not match:
        return False
    whole = int(match.group(1))
    if match.group(3) is not None:  # "12.5": nothing can follow
        return lo <= float(text) <= hi
    if complete:
        return match.group(2) is None and lo <= whole <= hi
    # every completion lies in one of these 0.1-grid intervals: a decimal after the integer part,
    # or more integer digits (never after a leading 0, at most four in all)
    spans = [(whole, whole + 0.9)]
    if match.group(2) is None and whole != 0:
        spans += [(whole * 10**k, whole * 10**k + 10**k - 0.1) for k in range(1, 5 - len(match.group(1)))]
    return any(a <= hi + 1e-9 and b >= lo - 1e-9 for a, b in spans)


def _split_number(text: str) -> tuple[str, str]:
    """The leading run of number characters, and the rest."""
    i = 0
    while i < len(text) and (text[i].isdigit() or text[i] == "."):
        i += 1
    return text[:i], text[i:]


def _literal_ok(rest: str, literal: str, complete: bool) -> bool:
    return rest == literal if complete else literal.startswith(rest)


def _check(kind: str, text: str, duration: float, complete: bool) -> bool:
    if kind == "yes_no":
        return text in ("Yes", "No") if complete else any(w.startswith(text) for w in ("Yes", "No"))
    first, rest = _split_number(text)
    if kind == "time":
        if not rest:
            return not complete and _number_ok(first, 0.0, duration, False)
        return _number_ok(first, 0.0, duration, True) and _literal_ok(rest, " seconds", complete)
    if kind == "time_range":
        latest_start = duration - 0.1  # room for an end after the start: no dead ends
        if not rest:
            return not complete and _number_ok(first, 0.0, latest_start, False)
        if not _number_ok(first, 0.0, latest_start, True):
            return False
        separator = " - "
        if len(rest) <= len(separator):
            return not complete and separator.startswith(rest)
        if not rest.startswith(separator):
            return False
        second, tail = _split_number(rest[len(separator):])
        start = float(first) + 0.1  # a window, not an instant
        if not tail:
            return not complete and _number_ok(second, start, duration, False)
        return _number_ok(second, start, duration, True) and _literal_ok(tail, " seconds", complete)
    raise ValueError(f"no guided format for task kind {kind!r}; guided kinds: {', '.join(GUIDED_KINDS)}")


def answer_prefix_ok(kind: str, text: str, duration: float) -> bool:
    """Whether `text` can still grow into a well-formed answer of `kind` within the clip."""
    return _check(kind, text, duration, complete=False) or _check(kind, text, duration, complete=True)


def answer_complete(kind: str, text: str, duration: float) -> bool:
    """Whether `text` is a whole well-formed answer of `kind` within the clip."""
    return _check(kind, text, duration, complete=True)


@lru_cache(maxsize=4)
def _candidates(tokenizer) -> tuple[tuple[int, str], ...]:
    """(id, text) of every token made only of characters a guided answer can contain.

    Decoded once per tokenizer (a few seconds for a 152k vocabulary), then a few thousand
    candidates are checked per step instead of the whole vocabulary.
    """
    special = set(tokenizer.all_special_ids)
    out = []
    for token_id in range(len(tokenizer)):
        if token_id in special:
            continue
        text = tokenizer.decode([token_id])
        if text and set(text) <= _ALPHABET:
            out.append((token_id, text))
    return tuple(out)


class GuidedAnswer:
    """A `LogitsProcessor` keeping a greedy answer well formed (see the module docstring).

    One instance per `generate` call: it notes the prompt length on its first call. Works on
    batches (each row is checked on its own); `end_ids` are the tokens that may end the answer.
    """

    def __init__(self, kind: str, tokenizer, *, duration: float, end_ids: list[int]):
        if kind not in GUIDED_KINDS:
            raise ValueError(f"no guided format for task kind {kind!r}; guided kinds: {', '.join(GUIDED_KINDS)}")
        self.kind, self.tokenizer, self.duration = kind, tokenizer, float(duration)
        self.end_ids = list(end_ids)
        self.candidates = _candidates(tokenizer)
        self.start: int | None = None

    def allowed(self, text: str) -> list[int]:
        """Token ids that may follow the answer `text` so far."""
        ids = [i for i, piece in self.candidates if answer_prefix_ok(self.kind, text + piece, self.duration)]
        if answer_complete(self.kind, text, self.duration):
            ids += self.end_ids
        return ids

    def __call__(self, input_ids, scores):
        import torch

        if self.start is None:
            self.start = input_ids.shape[1]
        mask = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):
            text = self.tokenizer.decode(input_ids[row, self.start:], skip_special_tokens=True)
            allowed = self.allowed(text) or self.end_ids  # a finished or impossible row may only end
            mask[row, allowed] = 0.0
        return scores + mask


def guided_options(kind: str, tokenizer, *, duration: float, end_ids: list[int]) -> dict:
    """`generate` arguments for a guided answer of `kind` ({} for free-text kinds)."""
    from transformers import LogitsProcessorList

    if kind not in GUIDED_KINDS:
        return {}
    return {"logits_processor": LogitsProcessorList([GuidedAnswer(kind, tokenizer, duration=duration, end_ids=end_ids)])}


class PerRow:
    """One logits processor per batch row (None: that row is left alone), for batched answers whose
    rows are different tasks (`crash_localization` and `pre_crash_localization` decoded together)."""

    def __init__(self, processors: list):
        self.processors = processors

    def __call__(self, input_ids, scores):
        for row, processor in enumerate(self.processors):
            if processor is not None:
                scores[row:row + 1] = processor(input_ids[row:row + 1], scores[row:row + 1])
        return scores


def guided_rows(rows: list[tuple[str, float]], tokenizer, *, end_ids: list[int]) -> dict:
    """`generate` arguments guiding each row of a batch by its (task kind, clip duration); {} when
    no row is guided. Rows may be about clips of different lengths (`predict --batch-videos`)."""
    from transformers import LogitsProcessorList

    guides = [GuidedAnswer(kind, tokenizer, duration=duration, end_ids=end_ids) if kind in GUIDED_KINDS else None
              for kind, duration in rows]
    if not any(guides):
        return {}
    return {"logits_processor": LogitsProcessorList([PerRow(guides)])}
