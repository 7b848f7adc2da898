import json

import pytest

from crashchat.tasks import (
    GROUPS,
    TASK_IDS,
    TASKS,
    get_task,
    parse_label,
    parse_text,
    parse_time,
    parse_time_range,
    parse_yes_no,
    tasks_in_group,
)


def test_six_tasks_in_two_groups():
    assert TASK_IDS == ("crash_recognition", "crash_localization", "pre_crash_localization",
                        "crash_description", "causal_reasoning", "prevention_reasoning")
    assert [t.id for t in tasks_in_group("perception")] == ["crash_localization", "pre_crash_localization"]
    assert {t.group for t in TASKS} == set(GROUPS)


def test_prompts_are_the_splits(split_dir):
    for task in TASKS:
        records = json.loads((split_dir / task.split_file()).read_text())
        assert {r["conversations"][0]["value"] for r in records} == {"<video>\n" + task.prompt}


def test_split_name_alias():
    assert get_task("cause_reasoning") is get_task("causal_reasoning")
    with pytest.raises(KeyError, match="unknown task 'nope'"):
        get_task("nope")


@pytest.mark.parametrize("text, expected", [
    ("Yes", "Yes"), ("  NO ", "No"), ("yes.", "Yes"), ("Yes, a crash", "Yes"),
    ("No, nothing", "No"), ("I do not know", "No"),  # `not` contains `no`
    ("yes and no", None), ("I know yes", None),      # `know` contains `no` as well as `yes`
    ("maybe", None), ("", None),
])
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("1.9 - 4.0 seconds", (1.9, 4.0)),
    ("4.0-1.9", (4.0, 1.9)),                        # kept as written; metrics reorder
    ("from 1.5s to 3.0s.", (1.5, 3.0)),             # no dash: the first two runs
    ("1.2.3 - 4 then 5 and 6", None),               # dash match not floats, first two runs neither
    ("1.2.3 - 4, 2.0 - 3.0", None),                 # first match only, first two runs only
    ("... 2 - 3", (2.0, 3.0)),                      # the search moves past "..." to "2 - 3"
    ("only 3 seconds", None), ("no idea", None),
])
def test_parse_time_range(text, expected):
    assert parse_time_range(text) == expected


def test_parse_time_range_fallback_to_runs():
    # The dash pattern matches "1.2.3 - 4" (not floats); the first two runs are "1.2.3", "4": fail.
    assert parse_time_range("at 1.2.3 - 4") is None
    # The dash pattern finds nothing; runs "2.5" and "7" are used.
    assert parse_time_range("crash at 2.5 s, over by 7 s") == (2.5, 7.0)


@pytest.mark.parametrize("text, expected", [
    ("1.0 seconds", 1.0), ("at 12.4 s", 12.4), ("3", 3.0), ("soon", None),
    (". 3.0", None),        # the first run is "." and only the first run is tried
    ("1. seconds", 1.0),
])
def test_parse_time(text, expected):
    assert parse_time(text) == expected


def test_parse_text_and_label():
    assert parse_text("  ego-car hits a car.  ") == "ego-car hits a car."
    assert parse_text("   ") is None
    assert [parse_label(x) for x in ("Y", "true", "1", "no", "FALSE", "0", "maybe")] == \
        ["Yes", "Yes", "Yes", "No", "No", "No", None]
