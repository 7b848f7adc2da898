"""`analyze`: routing, the recognition gate, the report, and the command line on good and bad videos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crashchat import analysis
from crashchat.pipeline import analyze, task_order
from crashchat.report import build_report, report_markdown
from crashchat.routing import route
from crashchat.synthetic import BROKEN_KINDS, write_broken
from crashchat.tasks import CRASH_RECOGNITION_PROMPT, TASK_IDS, TASKS
from crashchat.video import load_video

PERCEPTION = ("crash_localization", "pre_crash_localization")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(crash_clip):
    return load_video(crash_clip, max_frames=12)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.id)
def test_route_sends_each_task_prompt_to_its_group(task):
    assert route(task.prompt) == task.group


@pytest.mark.parametrize("question, group", [
    ("when did the truck start braking?", "perception"),
    ("At what time does the cyclist fall?", "perception"),
    ("How many seconds into the clip is the impact?", "perception"),
    ("Tell me when the car swerves.", "perception"),
    ("Which car is at fault?", "linguistic"),
    ("What should the driver do when the light turns yellow?", "linguistic"),
    ("How could this have been prevented?", "linguistic"),
])
def test_route_free_form_questions(question, group):
    assert route(question) == group


def test_task_order_puts_recognition_first_and_groups_together():
    assert task_order(TASK_IDS) == ["crash_recognition", "crash_description", "causal_reasoning",
                                    "prevention_reasoning", "crash_localization", "pre_crash_localization"]
    assert task_order(["causal_reasoning"]) == ["causal_reasoning"]


def test_real_tiny_model_report(tiny_crashchat, clip):
    """The real pipeline end to end: recognition comes first; the tiny model's noise is not `Yes`,
    so the gate skips both perception tasks and the report says so."""
    events = list(analyze(tiny_crashchat, clip, max_new_tokens=6))
    assert [t for t, _ in events][0] == "crash_recognition"
    results = dict(events)
    assert set(results) == set(TASK_IDS)
    recognition = results["crash_recognition"]
    assert recognition["group"] == "linguistic" and isinstance(recognition["response"], str)
    assert recognition["parsed"] != "Yes"  # random weights: whatever it says, it is not a clean Yes
    for task_id in PERCEPTION:
        skipped = dict(results[task_id])
        assert skipped.pop("elapsed_s") >= recognition["elapsed_s"]
        assert skipped == {"group": "perception", "response": None, "parsed": None, "skipped": True,
                           "seconds": 0.0, "stopped": None}
    report = build_report(clip, tiny_crashchat, results)
    json.dumps(report)
    assert report["model"] == {"name": "tiny-random", "random_weights": True, "groups": ["linguistic", "perception"],
                               "device": "cpu", "base": tiny_crashchat.base.to_json(),
                               "processor": tiny_crashchat.settings.to_json()}
    assert report["model"]["base"]["id"] == "tiny-random (built offline)"
    assert report["video"]["frames"] == len(clip.frames) and report["video"]["duration_s"] == pytest.approx(3.0)
    assert report["crash_detected"] in (False, None)
    text = report_markdown(report)
    assert "RANDOM WEIGHTS" in text and "Skipped" in text


@pytest.mark.parametrize("answer", ["Yes", "No"])
def test_gate_runs_perception_only_after_yes(tiny_crashchat, clip, monkeypatch, answer):
    """The ONE test with a controlled answer: recognition's answer is forced (the tiny model cannot
    say a clean Yes unguided); every other question still goes to the real tiny model."""
    from crashchat.model import Session

    real_batch = Session.batch
    asked = []
    recognition = f"<video>\n{CRASH_RECOGNITION_PROMPT}"  # asked as the authors' evaluation asks

    def batch(self, questions, **options):
        asked.extend((self.group, q) for q in questions)
        texts = real_batch(self, questions, **options)
        return [answer if q == recognition else t for q, t in zip(questions, texts, strict=True)]

    monkeypatch.setattr(Session, "batch", batch)
    results = dict(analyze(tiny_crashchat, clip, max_new_tokens=4))
    report = build_report(clip, tiny_crashchat, results)
    assert results["crash_recognition"]["parsed"] == answer
    assert report["crash_detected"] is (answer == "Yes")
    for task_id in PERCEPTION:
        assert results[task_id]["skipped"] is (answer == "No")
    perception_asked = [q for g, q in asked if g == "perception"]
    assert len(perception_asked) == (2 if answer == "Yes" else 0)
    assert all(q.startswith("<video>\n") for _, q in asked)
    if answer == "Yes":
        assert isinstance(results["crash_localization"]["response"], str)
        assert "no crash detected" not in report_markdown(report)
    else:
        assert "no crash detected" in report_markdown(report)


def test_cli_writes_json_and_summary(tmp_path, crash_clip, capsys):
    out = tmp_path / "report.json"
    assert analysis.main([str(crash_clip), "--model", "tiny-random", "--json", str(out),
                          "--max-new-tokens", "4", "--max-frames", "8", "--tasks", "crash_recognition,cause_reasoning"]) == 0
    report = json.loads(out.read_text())
    assert set(report["tasks"]) == {"crash_recognition", "causal_reasoning"}
    assert report["model"]["random_weights"] is True and report["video"]["frames"] == 8
    captured = capsys.readouterr()
    assert "# CrashChat report: crash_synthetic.mp4" in captured.out
    assert "RANDOM WEIGHTS" in captured.err


@pytest.mark.parametrize("kind", [*BROKEN_KINDS, "missing", "too_big", "bad_flag"])
def test_cli_bad_video_exits_2_with_one_line(tmp_path, crash_clip, capsys, kind):
    """Every broken-file class of `synthetic.write_broken`: refused with exit 2 and one line, or
    (for what the loader recovers, e.g. a truncated file indexed at the start) analysed normally."""
    path = tmp_path / "bad.mp4"
    extra = []
    if kind == "too_big":
        path, extra = crash_clip, ["--max-bytes", "100"]
    elif kind == "bad_flag":
        path, extra = crash_clip, ["--max-frames", "0"]
    elif kind != "missing":
        write_broken(path, kind)
    try:
        load_video(path)
        refused = kind in ("too_big", "bad_flag", "missing")
    except ValueError:  # VideoError
        refused = True
    rc = analysis.main([str(path), "--model", "tiny-random", "--tasks", "crash_recognition", "--max-new-tokens", "2", *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    if refused:
        assert rc == 2 and captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    else:
        assert rc == 0 and "# CrashChat report" in captured.out


def test_the_report_states_wall_time_not_summed_batch_times(tiny_crashchat, clip, monkeypatch):
    """Questions decoded together share their batch's seconds: four linguistic answers of one 10 s
    batch and two perception answers of another took 20 s, not 60 (a fake clock that moves only
    while a batch decodes makes the times exact)."""
    from crashchat import pipeline
    from crashchat.model import Session

    now = [100.0]
    real_batch = Session.batch

    def batch(self, questions, **options):
        now[0] += 10.0
        return real_batch(self, questions, **options)

    monkeypatch.setattr(pipeline, "clock", lambda: now[0])
    monkeypatch.setattr(Session, "batch", batch)
    results = dict(analyze(tiny_crashchat, clip, gate=False, max_new_tokens=2))
    assert sum(r["seconds"] for r in results.values()) == 60.0
    assert {t: r["elapsed_s"] for t, r in results.items()} == {
        **dict.fromkeys(["crash_recognition", "crash_description", "causal_reasoning", "prevention_reasoning"], 10.0),
        **dict.fromkeys(PERCEPTION, 20.0)}
    report = build_report(clip, tiny_crashchat, results)
    assert report["wall_s"] == 20.0
    text = report_markdown(report)
    assert "- Time: 20.0 s wall clock for 6 tasks" in text and "60.0" not in text
    assert "ready after 20.00 s" in text


# --- tiny-random on the command line, and progress ---------------------------------------------------


def _generation(argv: list[str]) -> dict:
    import argparse

    from crashchat.cli import add_generation_args, add_model_args, generation_options

    parser = argparse.ArgumentParser()
    add_model_args(parser)
    add_generation_args(parser, repetition_stop=True)  # analyze's default
    return generation_options(parser.parse_args(argv))


def test_tiny_random_defaults_to_guided_short_answers_and_flags_still_win():
    assert _generation(["--model", "tiny-random"]) == {"max_new_tokens": 48, "guided": True, "repetition_stop": True}
    assert _generation(["--model", "tiny-random", "--no-guided", "--max-new-tokens", "7"]) == {
        "max_new_tokens": 7, "guided": False, "repetition_stop": True}
    # a real model keeps the authors' evaluation: 2048 tokens, unguided unless asked
    assert _generation([]) == {"max_new_tokens": 2048, "guided": False, "repetition_stop": True}
    assert _generation(["--guided"])["guided"] is True
    with pytest.raises(ValueError, match="--max-new-tokens must be at least 1"):
        _generation(["--model", "tiny-random", "--max-new-tokens", "0"])


def test_the_app_and_the_command_line_share_the_tiny_model_defaults():
    from crashchat.chat.config import APP_MAX_NEW_TOKENS, TabConfig
    from crashchat.tiny import generation_defaults

    app = TabConfig(model="tiny-random")
    assert {"guided": app.guided, "max_new_tokens": app.max_new_tokens} == generation_defaults("tiny-random")
    assert _generation(["--model", "tiny-random"])["max_new_tokens"] == app.max_new_tokens
    real = TabConfig(model="crashchat")
    assert (real.guided, real.max_new_tokens) == (False, APP_MAX_NEW_TOKENS)


def test_progress_is_drawn_on_a_terminal_only():
    import io

    from crashchat.cli import show_progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert show_progress(stream=Terminal()) and not show_progress(True, stream=Terminal())
    assert not show_progress(stream=io.StringIO()) and not show_progress(stream=object())


def _offline_env() -> dict:
    import os

    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))


def test_tiny_random_analyze_of_a_5_second_clip_shows_a_verdict_and_a_window(tmp_path, capsys):
    """`crashchat analyze CLIP --model tiny-random` as a user types it, through the command's own
    entry point (`crashchat.__main__.main`), output captured (not a terminal): the tiny model's
    defaults make the report show a Yes/No verdict and a crash window; one line says which defaults
    were used; no progress bar when not on a terminal. (In this process, not a child: the README
    test runs the same command as a child process, and the next test the terminal's.)"""
    from crashchat.__main__ import main
    from crashchat.synthetic import write_clip

    clip = write_clip(tmp_path / "crash5.mp4", seconds=5.0, scene="crash")
    out = tmp_path / "report.json"
    assert main(["analyze", str(clip), "--model", "tiny-random", "--json", str(out)]) == 0
    done = capsys.readouterr()
    assert ("tiny-random: RANDOM WEIGHTS, the answers are meaningless; guided answers and max 48 new tokens by "
            "default (--no-guided / --max-new-tokens to change)") in done.err
    assert "analyze:" not in done.err and "\r" not in done.err  # no bar when not on a terminal
    report = json.loads(out.read_text())
    assert report["input"]["guided"] is True and report["input"]["max_new_tokens"] == 48
    assert report["crash_detected"] is True and "- Verdict: **crash detected**" in done.out
    start, end = report["tasks"]["crash_localization"]["parsed"]
    assert 0 <= start < end <= 5.0 and "Parsed: [" in done.out


def test_analyze_draws_a_progress_bar_on_a_terminal(tmp_path, crash_clip):
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    main_end, child_end = pty.openpty()
    # an 80x24 terminal: a fresh pseudo-terminal is 0 columns wide, where tqdm draws nothing
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "crashchat", "analyze", str(crash_clip), "--model", "tiny-random",
                             "--tasks", "crash_recognition", "--max-frames", "8"], cwd=tmp_path, env=_offline_env(),
                            stdin=child_end, stdout=child_end, stderr=child_end)
    os.close(child_end)
    seen = b""
    while True:
        try:
            chunk = os.read(main_end, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(main_end)
    assert proc.wait(timeout=300) == 0, seen.decode(errors="replace")[-2000:]
    text = seen.decode(errors="replace")
    assert "analyze: 100%" in text and "1/1" in text and "crash_recognition:" in text, text[-2000:]
