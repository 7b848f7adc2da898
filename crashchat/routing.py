"""Which task group answers a free-form chat question: `perception` when it asks WHEN, else `linguistic`."""

from __future__ import annotations

import re

# Phrases that ask for a time wherever they appear.
_TIME_PHRASES = re.compile(
    r"\b(timestamps?|time ?range|time span|what time|which time|at what (point|moment|second)"
    r"|(which|what) (second|moment|frame)s?|how many seconds|how long (before|after|into)"
    r"|start and end (time|times|timestamps?)|(tell|show) me when|say when"
    # `when` as a question word: followed by an auxiliary, with or without a question mark
    r"|when (exactly |precisely )?(did|does|do|is|was|were|are|will|would|can|could|has|have|had))\b"
)
_SENTENCE = re.compile(r"[^.?!]*[.?!]?")
_OTHER_WH = ("what", "why", "how", "who", "which", "where", "whose", "whom")


def route(question: str) -> str:
    """The task group for a free-form question: `perception` if it asks WHEN something happens.

    The rule (lower-cased text): a time phrase anywhere (`timestamp`, `time range`, `what time`,
    `at what point/moment/second`, `which second`, `how many seconds`, `how long before/after`,
    `start and end time`, `tell me when`, `when` + an auxiliary such as "when did"); or a question sentence (ending in `?`) that contains
    the word `when` and does not open with another wh-word, so "When does the car brake?" and
    "Can you see when it skids?" ask for a time while "What happens when the light turns red?"
    and "Why did it swerve when the truck stopped?" do not. Everything else is `linguistic`.
    A `when` outside a question ("When passing a crossing, slow down.") does not count.

    >>> route("When does the crash happen?")
    'perception'
    >>> route("when did the crash happen")
    'perception'
    >>> route("Can you see when the car starts to skid?")
    'perception'
    >>> route("Give the start and end timestamps of the collision.")
    'perception'
    >>> route("What happens when the light turns red?")
    'linguistic'
    >>> route("Who is at fault? When passing a crossing, slow down.")
    'linguistic'
    >>> route("Describe the crash.")
    'linguistic'
    """
    text = " ".join(question.lower().split())
    if _TIME_PHRASES.search(text):
        return "perception"
    for sentence in _SENTENCE.findall(text):
        sentence = sentence.strip()
        words = re.findall(r"[a-z']+", sentence)
        if sentence.endswith("?") and "when" in words and words[0] not in _OTHER_WH:
            return "perception"
    return "linguistic"
