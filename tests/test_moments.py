"""Timeline helpers (`crashchat.moments`): marks from reports and chat answers, key frames, the plot."""

from __future__ import annotations

import numpy as np
import pytest

from crashchat.moments import Mark, answer_times, key_frames, key_times, nearest_index, report_marks, timeline_figure


def _report(crash=(2.4, 1.8), pre=1.2, skipped=False):
    return {"tasks": {
        "crash_recognition": {"parsed": "Yes", "skipped": False},
        "crash_localization": {"parsed": None if crash is None else list(crash), "skipped": skipped},
        "pre_crash_localization": {"parsed": pre, "skipped": skipped},
    }}


def test_report_marks_orders_a_reversed_window_and_skips_what_is_missing():
    assert report_marks(_report()) == [Mark("crash", "crash", 1.8, 2.4), Mark("pre_crash", "pre-crash", 1.2)]
    assert report_marks(_report(skipped=True)) == []
    assert report_marks(_report(crash=None, pre=None)) == []
    assert report_marks({}) == []


@pytest.mark.parametrize("answer,expected", [
    ("1.9 - 4.0 seconds", (1.9, 4.0)),
    ("from 4 - 2 s", (2.0, 4.0)),
    ("8.6 seconds", (8.6, None)),
    ("2 cars, then at 3.5 seconds", (2.0, None)),  # two numbers without a dash are no window
    ("no time given", None),
])
def test_answer_times(answer, expected):
    assert answer_times(answer) == expected


def test_key_times_clamp_answers_outside_the_clip_and_say_so():
    times = key_times([Mark("crash", "crash", 2.0, 9.0), Mark("pre_crash", "pre-crash", -1.0)], duration_s=3.0)
    assert [t for _, t in times] == [0.0, 2.0, 3.0]  # in time order
    assert "outside the clip" in times[0][0] and "outside the clip" in times[2][0]
    assert "outside" not in times[1][0]


def test_key_frames_pick_the_sampled_frame_nearest_each_moment(crash_clip):
    from crashchat.synthetic import read_frame_number
    from crashchat.video import load_video

    clip = load_video(crash_clip)  # 3 s at 10 fps: sampled frame k is the file's frame k
    frames = key_frames(clip.frames, clip.timestamps, [Mark("crash", "crash", 1.8, 2.43), Mark("pre_crash", "p", 1.04)],
                        clip.duration_s)
    assert [read_frame_number(f) for f, _ in frames] == [10, 18, 24]
    assert [c.split()[0:2] for _, c in frames] == [["p", "1.0"], ["crash", "start"], ["crash", "end"]]


def test_nearest_index_ties_and_ends():
    assert nearest_index([0.0, 1.0, 2.0], -5) == 0
    assert nearest_index([0.0, 1.0, 2.0], 99) == 2


def test_timeline_figure_spans_the_clip_and_draws_each_mark():
    marks = [Mark("crash", "crash", 1.8, 2.4), Mark("pre_crash", "pre-crash", 1.2), Mark("chat", "Q2", 7.0)]
    fig = timeline_figure(3.0, marks, frame_times=np.arange(30) / 10)
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.0, 3.0)
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "crash 1.8–2.4 s" in texts and "pre-crash 1.2 s" in texts and "Q2 7 s" in texts
    assert "past the clip end" in texts
    assert "clip length 3.0 s" in ax.get_xlabel()
    fig.savefig(__import__("io").BytesIO(), format="png")  # renders without error


def test_timeline_figure_without_marks_says_there_is_nothing():
    ax = timeline_figure(5.0).axes[0]
    assert any("no crash window" in t.get_text() for t in ax.texts)
