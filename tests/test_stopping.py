"""The repetition guard: loops end early and are recorded; ordinary answers are left alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mini_split import write_mini_split

from crashchat.stopping import RepetitionStop, repeats

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tokens, loop", [
    ([7] * 64, True),
    ([1, 2, 3] * 30, True),
    (list(range(20)) + list(range(32)) * 4, True),   # a 32-token block four times
    ([7] * 63, False),                               # too short to call
    (list(range(33)) * 3, False),                    # a period over 32 tokens
    ([1, 2, 3] * 30 + [4], False),                   # the loop was left
])
def test_what_counts_as_a_loop(tokens, loop):
    assert repeats(tokens) is loop


WINDOW, MAX_PERIOD = 64, 32
"""The documented guard (README, `crashchat/stopping.py`), written out so that a changed constant fails here."""


def _loop(period: int, length: int) -> list[int]:
    """A token that breaks the pattern, then `length` tokens of a loop of distinct tokens (minimal period `period`)."""
    block = list(range(100, 100 + period))
    return [999] + (block * (length // period + 1))[:length]


def _span(period: int) -> int:
    return max(WINDOW, 4 * period)


@pytest.mark.parametrize("period", range(1, MAX_PERIOD + 1))
def test_every_period_up_to_32_is_a_loop_once_it_fills_its_span(period):
    """A loop of period p is called once it fills max(64, 4p) tokens (at least four repeats), not a token sooner."""
    assert repeats(_loop(period, _span(period)))
    assert not repeats(_loop(period, _span(period) - 1))


@pytest.mark.parametrize("period", [MAX_PERIOD + 1, 40, 64])
def test_longer_periods_are_never_loops(period):
    assert not repeats(_loop(period, 4 * period + 10))


@pytest.mark.parametrize("period", range(1, MAX_PERIOD + 1))
def test_the_guard_sees_every_period(period):
    """Through the stopping criterion: the generated tokens it looks at cover every period's span."""
    import torch

    guard = RepetitionStop()
    prompt = [7] * 10
    assert not guard(torch.tensor([prompt]), None).any()  # first call: notes the prompt length
    answer = list(range(300, 400)) + _loop(period, _span(period))[1:]  # 100 plain tokens, then the loop
    assert guard(torch.tensor([prompt + answer]), None).tolist() == [True]
    short = RepetitionStop()
    short(torch.tensor([prompt]), None)
    assert short(torch.tensor([prompt + answer[:-1]]), None).tolist() == [False]


def test_the_guard_stops_only_looping_rows():
    import torch

    guard = RepetitionStop()
    prompt = torch.arange(10).repeat(2, 1)
    assert not guard(prompt[:, :1 + 9], None).any()  # first call: notes the prompt length
    looping = torch.cat([prompt, torch.tensor([[5] * 70, list(range(70))])], dim=1)
    assert guard(looping, None).tolist() == [True, False]
    assert guard.stopped and guard.rows == {0}


def test_a_looping_answer_is_cut_and_marked(tiny_crashchat, crash_clip, one_thread):
    """The tiny random model loops on free text; with 300 tokens allowed it stops soon after 64."""
    from crashchat.pipeline import answer
    from crashchat.tasks import get_task
    from crashchat.video import load_video

    clip = load_video(crash_clip)
    question = [("crash_description", get_task("crash_description").question)]
    (_, guarded), = answer(tiny_crashchat, clip, question, gate=False, max_new_tokens=300)
    (_, unguarded), = answer(tiny_crashchat, clip, question, gate=False, max_new_tokens=300, repetition_stop=False)
    assert guarded["stopped"] == "repetition" and unguarded["stopped"] is None
    assert unguarded["response"].startswith(guarded["response"]) and len(guarded["response"]) < len(unguarded["response"])


def test_predict_marks_stopped_rows_counts_them_and_the_scorer_accepts_them(tmp_path, capsys, one_thread):
    from crashchat import predict, provenance

    split, videos = write_mini_split(tmp_path / "m")
    common = ["--split-dir", str(split), "--videos-dir", str(videos), "--model", "tiny-random",
              "--max-new-tokens", "100", "--no-progress", "--device", "cpu", "--tasks", "crash_description",
              "--limit", "2"]
    # by default predict decodes as the authors did: the loops run to the limit
    plain = tmp_path / "plain.jsonl"
    assert predict.main([*common, "--out", str(plain)]) == 0
    rows = [json.loads(line) for line in plain.read_text().splitlines()]
    assert rows and not any("stopped" in r for r in rows)
    meta = provenance.loads(plain.with_name("plain.jsonl.meta.json").read_bytes())
    assert meta["generation"]["repetition_stop"] is False and meta["answers"]["stopped_by_repetition"] == 0
    assert "repetition guard" not in capsys.readouterr().err

    out = tmp_path / "loops.jsonl"
    assert predict.main([*common, "--out", str(out), "--repetition-stop"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    stopped = [r for r in rows if r.get("stopped") == "repetition"]
    assert stopped, rows
    meta = provenance.loads(out.with_name("loops.jsonl.meta.json").read_bytes())
    assert meta["answers"]["stopped_by_repetition"] == len(stopped) and meta["generation"]["repetition_stop"]
    assert "ended early by the repetition guard" in capsys.readouterr().err
    score = subprocess.run([sys.executable, "-m", "leaderboard", "score", str(out), "--split-dir", str(split),
                            "--bootstrap", "0"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert score.returncode == 0, score.stderr
