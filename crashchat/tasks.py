"""The six CrashChat tasks, declared once.

Everything else (the scorer, the leaderboard columns, the model router, the CLI, the app) imports
this table. Prompts are the `human` values of the authors' test split (after `<video>\n`); the
parsers implement the paper protocol's answer parsing (`../shared/reference/protocol.md`).

>>> parse_yes_no(" YES ")
'Yes'
>>> parse_time_range("The crash happens at 4.0 - 1.9 seconds.")
(4.0, 1.9)
>>> parse_time("around 3 seconds")
3.0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Group = Literal["linguistic", "perception"]
Kind = Literal["yes_no", "time_range", "time", "text"]
Parsed = str | float | tuple[float, float]
"""A parsed answer: "Yes"/"No" or a text (str), a time (float), a (start, end) range."""

GROUPS: tuple[Group, ...] = ("linguistic", "perception")
SOURCES = ("MM-AU-CAP", "MM-AU-DADA", "D2City", "Nexar")

CRASH_RECOGNITION_PROMPT = (
    'You are a traffic accident engineer. Analyze the given traffic video and decide whether a '
    "collision or crash happens during the clip. Answer with only 'Yes' or 'No'. Example: If "
    "two vehicles collide, or a vehicle hits a pedestrian, answer 'Yes'; if all vehicles move "
    "normally without collision, answer 'No'."
)
CRASH_LOCALIZATION_PROMPT = (
    'You are a traffic accident analyst. Watch the video and identify the exact time range '
    'during which the crash occurs. If a collision or abnormal event (such as a vehicle losing '
    'control, skidding, or impact) happens, output the start and end timestamps in seconds. The'
    " output format must follow this pattern: 'start - end seconds'. Example outputs: '20.8 - "
    "30.0 seconds', '5.0 - 7.6 seconds'."
)
PRE_CRASH_LOCALIZATION_PROMPT = (
    'You are a traffic accident analyst. Watch the video and identify the moment when the first'
    ' visible sign of a potential crash or abnormal event appears. This may include situations '
    'such as the ego vehicle, another vehicle, a pedestrian, a cyclist, or any other traffic '
    'participant showing abnormal behavior, for example, sudden braking, swerving, loss of '
    'control, unexpected crossing, or any motion indicating that a collision is becoming '
    'inevitable. Output the timestamp in seconds when these early crash cues first appear. The '
    "output format must follow this pattern: 'timestamp seconds' Example outputs: '8.6 "
    "seconds', '12.4 seconds'."
)
CRASH_DESCRIPTION_PROMPT = (
    'You are a traffic accident analyst. Look at the video and describe whether there is a '
    "traffic collision or abnormal vehicle behavior. If no accident appears, output exactly 'no"
    " collision.' If an accident occurs, describe it in one short sentence following this "
    'pattern: [subject] [verb] [object]. Use words such as ego-car, car, truck, motorbike, '
    'cyclist, pedestrian, and verbs such as hits, overtakes, falls down, is out of control, has'
    " failure of components. Example outputs: 'ego-car hits a pedestrian.' 'car hits a truck.' "
    "'motorbike falls down.' 'truck has failure of components.' 'no collision.'"
)
CAUSE_REASONING_PROMPT = (
    'You are a traffic accident analyst. Watch the video and determine the most likely cause of'
    " the traffic accident. If no accident appears in the clip, output exactly: 'No accident, "
    "no cause.' If an accident occurs, describe the most likely cause in ONE short sentence."
)
PREVENTION_REASONING_PROMPT = (
    'You are a traffic accident analyst. Watch the video carefully and provide detailed '
    'prevention measures based on the traffic accident video. If no accident appears in the '
    "clip, output exactly: 'No accident, no prevention needed.' If an accident occurs, describe"
    ' the recommended prevention measures in a detailed paragraph. The prevention measures '
    'should be practical, specific, and expressed in full sentences. You may include multiple '
    'actions for drivers, pedestrians, cyclists, or other road users if appropriate. Example '
    "outputs:'When passing the zebra crossing, drivers must slow down. When pedestrians or non-"
    'motor vehicles cross the zebra crossing, they should stop and give way to other normal '
    'running vehicles; When crossing the road, pedestrians must follow the zebra crossing, '
    "carefully observe the traffic, and do not cross the road in a hurry.''Ego-car drivers "
    'should not answer or make phone calls, eat or smoke while riding, sleep, and drive in '
    "fatigue.''Cyclists should not ride on the motorway as much as possible, stop "
    'retrogradation or speeding. Cyclists should leave the motorway in time and observe the '
    'coming vehicles carefully. When the vehicle driver encounters a cyclist on the motorway, '
    "he should honk his horn to remind him to slow down.'"
)


# --- answer parsers (paper protocol) ---------------------------------------------------------
# Each returns None when the answer cannot be parsed; the protocol decides what that means
# (the paper drops Yes/No, single times and empty text, but scores an unparsed range as (0.0, 0.0);
# see `paper_default`).

_RANGE_RE = re.compile(r"([\d\.]+)\s*-\s*([\d\.]+)")
_NUMBER_RE = re.compile(r"[\d\.]+")


def _floats(texts: Iterable[str]) -> tuple[float, ...] | None:
    try:
        return tuple(float(t) for t in texts)
    except ValueError:  # runs such as "." or "1.2.3" match the regex but are no numbers
        return None


def parse_yes_no(answer: str) -> str | None:
    """`Yes`/`No`; substring tests as the authors' script does (`not`, `know` count as `no`)."""
    text = answer.strip().lower()
    if text == "yes":
        return "Yes"
    if text == "no":
        return "No"
    has_yes, has_no = "yes" in text, "no" in text
    if has_yes and not has_no:
        return "Yes"
    if has_no and not has_yes:
        return "No"
    return None


def parse_time_range(answer: str) -> tuple[float, float] | None:
    """`start - end` in seconds as written (not reordered: metrics swap reversed intervals)."""
    match = _RANGE_RE.search(answer)
    if match:
        pair = _floats(match.groups())
        if pair is not None:
            return pair[0], pair[1]
    runs = _NUMBER_RE.findall(answer)
    if len(runs) >= 2:
        pair = _floats(runs[:2])
        if pair is not None:
            return pair[0], pair[1]
    return None


def parse_time(answer: str) -> float | None:
    """The first number-like run, in seconds (only the first run is tried, as in the paper)."""
    match = _NUMBER_RE.search(answer)
    if match:
        value = _floats([match.group()])
        if value is not None:
            return value[0]
    return None


def parse_text(answer: str) -> str | None:
    """The stripped answer; an empty one is unparseable (the paper drops it)."""
    text = answer.strip()
    return text or None


def parse_label(label: str) -> str | None:
    """A `pred_label` field of the authors' prediction files (their scorer's normalisation)."""
    text = str(label).strip().lower()
    if text in ("yes", "y", "1", "true"):
        return "Yes"
    if text in ("no", "n", "0", "false"):
        return "No"
    return None


@dataclass(frozen=True)
class Task:
    """One CrashChat task: what the model is asked, how its answer is read, how it is scored."""

    id: str
    """Our id, used in submissions, JSON and the CLI."""
    title: str
    """Human name for tables and the app."""
    group: Group
    """The adapter (task group) that answers it."""
    split_name: str
    """`<name>` in the authors' file `crashchat_dada_video_total_<name>_test.json`."""
    prompt: str
    """The question, exactly as in the split after its `<video>\n` (the training format)."""
    kind: Kind
    """Answer form; decides the parser and the metric family."""
    parse: Callable[[str], Parsed | None]
    """Raw model text -> parsed prediction, or None when unparseable."""
    headline: tuple[str, ...]
    """Metric keys shown first and bootstrapped (keys of the scorer's JSON)."""
    pred_fields: tuple[str, ...]
    """`pred_*` keys of the authors' per-task prediction files."""
    gt_fields: tuple[str, ...]
    """`gt_*` keys of those files (recognised, never trusted)."""

    @property
    def question(self) -> str:
        """What the model is asked at evaluation: the split's human value as written, `<video>\n`
        included. The authors' evaluation passes it as is, so the model reads
        `...Time 9.5s:<frames>\n<video>\nYou are...` (`../shared/reference/authors_eval.md`);
        training uses `prompt` alone."""
        return f"<video>\n{self.prompt}"

    def split_file(self, split: str = "test") -> str:
        return f"crashchat_dada_video_total_{self.split_name}_{split}.json"

    @property
    def paper_default(self) -> Parsed | None:
        """What the paper protocol scores for an unparseable answer; None: the record is dropped.

        Only a time range has one: `_parse_time_range` in the authors' `crash_video_tl.py` falls
        back to (0.0, 0.0). A single time (`crash_video_al.py`) and a Yes/No (`crash_video_ar.py`)
        parse to None and their `evaluate` skips the record; an empty text is dropped too.
        """
        defaults: dict[Kind, Parsed] = {"time_range": (0.0, 0.0)}
        return defaults.get(self.kind)


_TEXT_HEADLINE = ("bleu", "rouge_1_f", "rouge_2_f", "rouge_l_f")
_LOC_HEADLINE = ("miou", "ap30", "ap50", "ap70")

TASKS: tuple[Task, ...] = (
    Task("crash_recognition", "Crash recognition", "linguistic", "crash_recognition",
         CRASH_RECOGNITION_PROMPT, "yes_no", parse_yes_no,
         ("accuracy", "f1", "precision_macro", "recall_macro", "f1_macro"),
         ("pred_label",), ("gt_label",)),
    Task("crash_localization", "Crash localization", "perception", "crash_localization",
         CRASH_LOCALIZATION_PROMPT, "time_range", parse_time_range,
         _LOC_HEADLINE, ("pred_start", "pred_end"), ("gt_start", "gt_end")),
    Task("pre_crash_localization", "Pre-crash localization", "perception", "pre_crash_localization",
         PRE_CRASH_LOCALIZATION_PROMPT, "time", parse_time,
         _LOC_HEADLINE + ("tta_mae",), ("pred_time",), ("gt_time",)),
    Task("crash_description", "Crash description", "linguistic", "crash_description",
         CRASH_DESCRIPTION_PROMPT, "text", parse_text, _TEXT_HEADLINE,
         ("pred_caption",), ("gt_caption",)),
    Task("causal_reasoning", "Causal reasoning", "linguistic", "cause_reasoning",
         CAUSE_REASONING_PROMPT, "text", parse_text, _TEXT_HEADLINE,
         ("pred_cause",), ("gt_cause",)),
    Task("prevention_reasoning", "Prevention reasoning", "linguistic", "prevention_reasoning",
         PREVENTION_REASONING_PROMPT, "text", parse_text, _TEXT_HEADLINE,
         ("pred_text",), ("gt_text",)),
)

TASK_IDS: tuple[str, ...] = tuple(t.id for t in TASKS)
_BY_NAME = {**{t.id: t for t in TASKS}, **{t.split_name: t for t in TASKS}}


def get_task(name: str) -> Task:
    """A task by id or by the split's file name (`cause_reasoning` is `causal_reasoning`)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; expected one of {', '.join(TASK_IDS)}") from None


def tasks_in_group(group: Group) -> tuple[Task, ...]:
    return tuple(t for t in TASKS if t.group == group)
