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
    out = tmp_path / "loops.jsonl"
    assert predict.main(["--split-dir", str(split), "--videos-dir", str(videos), "--out", str(out), "--model",
                         "tiny-random", "--max-new-tokens", "100", "--no-progress", "--device", "cpu",
                         "--tasks", "crash_description", "--limit", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    stopped = [r for r in rows if r.get("stopped") == "repetition"]
    assert stopped, rows
    meta = provenance.loads(out.with_name("loops.jsonl.meta.json").read_bytes())
    assert meta["answers"]["stopped_by_repetition"] == len(stopped) and meta["generation"]["repetition_stop"]
    assert "ended early by the repetition guard" in capsys.readouterr().err
    score = subprocess.run([sys.executable, "-m", "leaderboard", "score", str(out), "--split-dir", str(split),
                            "--bootstrap", "0"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert score.returncode == 0, score.stderr
