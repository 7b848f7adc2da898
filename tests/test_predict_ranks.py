"""`predict` under several processes: rank 0 waits for the others' `.done` markers, and gives up
with one clear line on a rank whose `.alive` mark stopped being touched (`--rank-timeout`).

Time is simulated: `predict.time` is replaced by a clock that moves only when rank 0 sleeps, and
the other ranks' heartbeats are mtimes set on that clock. No real processes, no real waiting.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from crashchat import predict
from crashchat.predict import RankTimeout, Shard, wait_for_ranks

START = 1_000_000.0


class Clock:
    """`time` as `predict` sees it: `sleep` advances it and lets the other ranks act (`on_sleep`).

    A wait past a simulated day is a rank 0 that would wait forever: the test fails instead of hanging."""

    def __init__(self, now: float = START, on_sleep=None):
        self.start, self.now, self.on_sleep, self.sleeps = now, now, on_sleep, 0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1
        if self.now - self.start > 86_400:
            raise AssertionError("rank 0 is still waiting after a simulated day: it would wait forever")
        if self.on_sleep:
            self.on_sleep(self.now)


def marker(out: Path, rank: int, kind: str) -> Path:
    return Path(f"{Shard(rank).part(out)}.{kind}")


def beat(out: Path, rank: int, when: float) -> None:
    """Rank `rank` touched its `.alive` mark at clock time `when`."""
    path = marker(out, rank, "alive")
    path.touch()
    os.utime(path, (when, when))


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "sub.jsonl"


def test_a_rank_whose_alive_mark_goes_stale_times_out(out, monkeypatch):
    """Rank 1 finished; rank 2 beats every 2 s until t=30, then dies: rank 0 gives up 10 s later, not before."""
    marker(out, 1, "done").touch()
    beat(out, 2, START)

    def others(now):
        if now <= START + 30:
            beat(out, 2, now)

    clock = Clock(on_sleep=others)
    monkeypatch.setattr(predict, "time", clock)
    with pytest.raises(RankTimeout) as caught:
        wait_for_ranks(out, Shard(0, 3), timeout_s=10, poll_s=2)
    silent = clock.now - START - 30
    assert 10 < silent <= 12, f"gave up after {silent} s of silence with --rank-timeout 10"
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("rank 2 has shown no progress for 1") and "--rank-timeout 10" in message
    assert "rerun with --resume" in message and "rank 1" not in message


def test_ranks_still_working_are_waited_for_past_the_timeout(out, monkeypatch):
    """Ranks that keep beating are waited for however long they take (here 10x the timeout)."""
    beat(out, 1, START)
    beat(out, 2, START)

    def others(now):
        for rank, finish in ((1, START + 40), (2, START + 100)):
            if now >= finish:
                marker(out, rank, "done").touch()
            else:
                beat(out, rank, now)

    clock = Clock(on_sleep=others)
    monkeypatch.setattr(predict, "time", clock)
    wait_for_ranks(out, Shard(0, 3), timeout_s=10, poll_s=5)
    assert START + 100 <= clock.now <= START + 105


def test_a_rank_that_never_beat_times_out_from_when_rank_0_began_waiting(out, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(predict, "time", clock)
    with pytest.raises(RankTimeout, match=r"^rank 1 has shown no progress for 7 s \(--rank-timeout 6\)"):
        wait_for_ranks(out, Shard(0, 2), timeout_s=6, poll_s=1)


def test_finished_ranks_and_a_single_process_are_not_waited_for(out, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(predict, "time", clock)
    wait_for_ranks(out, Shard(0, 1), timeout_s=1)
    for rank in (1, 2):
        marker(out, rank, "done").touch()
    wait_for_ranks(out, Shard(0, 3), timeout_s=1)
    assert clock.sleeps == 0


def test_rank0_reports_a_dead_rank_in_one_line_exits_1_and_keeps_its_answers(tmp_path, monkeypatch, capsys,
                                                                             mini_split):
    """The command line: rank 0 answers its share, finds rank 1 silent (its mark is an hour old), says
    so in one line and exits 1; its answers stay in its part, and a rerun with --resume merges them."""
    split, root = mini_split
    out = tmp_path / "sub.jsonl"
    argv = ["--split-dir", str(split), "--videos-dir", str(root), "--out", str(out), "--model", "tiny-random",
            "--device", "cpu", "--tasks", "crash_recognition", "--limit", "1", "--max-new-tokens", "2",
            "--no-progress", "--rank-timeout", "60"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    hour_ago = time.time() - 3600
    beat(out, 1, hour_ago)  # rank 1 died an hour ago
    monkeypatch.setattr(predict, "time", Clock(now=time.time()))  # never really sleeps
    assert predict.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [err.splitlines()[-1]], err
    # an hour-old mark is a killed run's leftover: the rank gets the whole timeout from the wait's start
    assert re.match(r"error: rank 1 has shown no progress for (6\d) s \(--rank-timeout 60\)", errors[0]), errors[0]
    assert "--resume" in errors[0]
    assert not out.exists()
    kept = [json.loads(line) for line in Path(f"{out}.part0").read_text().splitlines()]
    assert [(r["video"], r["task"]) for r in kept] == [("c0.mp4", "crash_recognition")]

    marker(out, 1, "done").touch()  # rank 1 is rerun and finishes (it had nothing to answer)
    assert predict.main(argv + ["--resume"]) == 0
    assert "1 already answered" in capsys.readouterr().err
    assert [json.loads(line) for line in out.read_text().splitlines()] == kept
