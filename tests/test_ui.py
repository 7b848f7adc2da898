"""The chat tab (`crashchat.chat`) with the tiny random model, no browser (`test_chat_browser.py` has one)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from crashchat.chat import config, display, events, layout, resources
from crashchat.chat.state import KEEP, BrowserSession
from crashchat.moments import Mark
from crashchat.tasks import TASK_IDS, get_task

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> config.TabConfig:
    from crashchat.synthetic import EXAMPLES, write_clip

    examples = tmp_path_factory.mktemp("examples")
    for name, scene, _seconds, seed in EXAMPLES:  # small stand-ins, quicker than the app's 640x360 ones
        write_clip(examples / name, seconds=1.0, scene=scene, seed=seed)
    # few tokens keep the tiny model fast; isolate=True as in the app (uploads decode in a child)
    return config.TabConfig(model="tiny-random", max_new_tokens=4, examples_dir=examples)


@pytest.fixture(scope="module")
def uploaded(cfg, crash_clip) -> BrowserSession:
    view = events.upload_view(cfg, str(crash_clip))
    assert view.session.video == str(crash_clip)
    return view.session


def _last(views, name):
    values = [getattr(v, name) for v in views if getattr(v, name) is not KEEP]
    assert values, f"no view set {name}"
    return values[-1]


# --- configuration ------------------------------------------------------------------------------------


def test_config_from_env_and_its_errors(monkeypatch):
    monkeypatch.setenv("CRASHCHAT_MODEL", "tiny-random")
    monkeypatch.setenv("CRASHCHAT_TIME_LIMIT_S", "42")
    monkeypatch.setenv("CRASHCHAT_MAX_NEW_TOKENS", "7")
    cfg = config.TabConfig.from_env()
    assert (cfg.model, cfg.time_limit_s, cfg.max_new_tokens) == ("tiny-random", 42.0, 7)
    assert config.TabConfig.from_env("videollama3").model == "videollama3"  # the --model flag wins
    monkeypatch.setenv("CRASHCHAT_TIME_LIMIT_S", "soon")
    with pytest.raises(ValueError, match="CRASHCHAT_TIME_LIMIT_S='soon'"):
        config.TabConfig.from_env()
    with pytest.raises(ValueError, match="unknown model 'gpt'"):
        config.TabConfig(model="gpt")
    with pytest.raises(ValueError, match="positive"):
        config.TabConfig(model="tiny-random", time_limit_s=0)


def test_guided_decoding_is_on_for_the_tiny_model_only_unless_the_environment_says(monkeypatch):
    assert config.TabConfig(model="tiny-random").guided is True
    assert config.TabConfig(model="crashchat").guided is False
    assert config.TabConfig(model="tiny-random", guided=False).guided is False
    monkeypatch.setenv("CRASHCHAT_GUIDED", "0")
    assert config.TabConfig.from_env("tiny-random").guided is False
    monkeypatch.setenv("CRASHCHAT_GUIDED", "1")
    assert config.TabConfig.from_env("videollama3").guided is True
    monkeypatch.setenv("CRASHCHAT_GUIDED", "maybe")
    with pytest.raises(ValueError, match=r"CRASHCHAT_GUIDED='maybe': expected 1 \(on\) or 0 \(off\)"):
        config.TabConfig.from_env("tiny-random")


def test_status_line_says_the_answer_length_limit_and_whether_answers_are_guided(monkeypatch):
    monkeypatch.setattr(resources, "gpu_available", lambda: True)
    tiny = display.model_status(config.TabConfig(model="tiny-random", max_new_tokens=64))
    assert "up to 64 new tokens" in tiny and "CRASHCHAT_MAX_NEW_TOKENS" in tiny and "2048" in tiny
    assert "guided decoding **on**" in tiny and "RANDOM WEIGHTS" in tiny
    assert "guided decoding off" in display.model_status(config.TabConfig(model="crashchat"))


def test_real_model_on_cpu_says_it_needs_a_gpu_and_loads_nothing(monkeypatch, crash_clip):
    monkeypatch.setattr(resources, "gpu_available", lambda: False)
    cfg = config.TabConfig(model="crashchat")
    assert resources.needs_gpu(cfg)
    status = display.model_status(cfg)
    assert "needs a GPU" in status and "Leaderboard tab works" in status
    views = list(events.analysis_views(cfg, BrowserSession(video=str(crash_clip))))
    assert len(views) == 1 and "needs a GPU" in views[0].status
    assert resources.loaded_model("crashchat") is None
    chat = list(events.chat_views(cfg, "What happened?", BrowserSession(video=str(crash_clip))))
    assert "needs a GPU" in chat[-1].chat[-1]["content"]
    with pytest.raises(ValueError, match="needs a GPU"):
        events.analyze_report(cfg, str(crash_clip))
    monkeypatch.setattr(resources, "gpu_available", lambda: True)
    assert not resources.needs_gpu(cfg)


def test_tiny_model_status_says_random_weights_before_and_after_loading(cfg):
    assert "RANDOM WEIGHTS" in display.model_status(cfg)
    model = resources.get_model(cfg.model)
    status = display.model_status(cfg)
    assert "RANDOM WEIGHTS" in status and f"device `{model.device}`" in status and "linguistic, perception" in status


# --- uploads ------------------------------------------------------------------------------------------


def test_upload_of_a_good_clip_is_ready_with_a_timeline_and_a_preview(cfg, crash_clip):
    view = events.upload_view(cfg, str(crash_clip))
    assert view.status.startswith("Ready: crash_synthetic.mp4: 3.0 s, 64×64")
    assert view.error is None and view.preview == str(crash_clip)  # h264 in mp4: every browser plays it
    assert view.timeline.axes[0].get_xlim() == (0.0, 3.0)
    assert view.chat == [] and view.json_file is None and view.sections == display.empty_sections()


def test_no_upload_asks_for_one(cfg):
    view = events.upload_view(cfg, None)
    assert "Upload a video" in view.status and view.session.video is None and view.preview is None


def test_a_readable_clip_browsers_cannot_play_gets_no_preview_but_is_ready(cfg, tmp_path):
    from crashchat.synthetic import write_clip

    path = write_clip(tmp_path / "dashcam.avi", seconds=1.0, scene="crash")
    view = events.upload_view(cfg, str(path))
    assert view.status.startswith("Ready: dashcam.avi") and "No preview: browsers do not play" in view.status
    assert view.preview is None and view.session.video == str(path)


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "audio_only", "one_pixel"])
def test_bad_uploads_give_a_readable_message_within_seconds(cfg, tmp_path, kind):
    from crashchat.synthetic import write_broken

    path = write_broken(tmp_path / f"upload_{kind}.mp4", kind)
    start = time.monotonic()
    view = events.upload_view(cfg, str(path))
    assert time.monotonic() - start < 20
    assert view.status.startswith("**Cannot use this file.**"), view.status
    assert f"upload_{kind}.mp4" in view.status and str(tmp_path) not in view.status  # the name, not the temp dir
    assert view.error and "\n" not in view.error and "Traceback" not in view.error
    assert view.session.video is None  # Analyze and chat stay off
    assert view.preview is None  # the player never sees it: no second, generic error


def test_unsupported_suffix_is_refused(cfg, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    assert "unsupported file type '.txt'" in events.upload_view(cfg, str(path)).status


# --- Analyze ------------------------------------------------------------------------------------------


def test_analyze_streams_task_by_task_then_offers_downloads(cfg, uploaded):
    views = list(events.analysis_views(cfg, uploaded))
    section_views = [v.sections for v in views if v.sections is not KEEP]
    # a first frame with everything waiting/running, then one update per finished task
    assert len(section_views) == 1 + len(TASK_IDS)
    assert "_running…_" in section_views[0]["crash_recognition"]
    assert "_waiting…_" in section_views[1]["prevention_reasoning"]
    finished = [sum("waiting" not in s and "running" not in s for s in sec.values()) for sec in section_views]
    assert finished == sorted(finished) and finished[-1] == 6
    final = views[-1]
    assert final.status.startswith("Done:")
    assert "RANDOM WEIGHTS" in final.verdict
    report = json.loads(Path(final.json_file).read_text())
    assert report == final.session.report
    assert report["video"]["path"] == uploaded.video and report["video"]["duration_s"] == 3.0
    assert report["model"] == {**report["model"], "name": "tiny-random", "random_weights": True}
    assert set(report["tasks"]) == set(TASK_IDS)
    for result in report["tasks"].values():
        assert set(result) >= {"group", "response", "parsed", "skipped", "seconds"}
    markdown = Path(final.md_file).read_text()
    assert "RANDOM WEIGHTS" in markdown and "Crash recognition" in markdown
    assert final.raw == report["tasks"]
    assert final.timeline.axes[0].get_xlim() == (0.0, 3.0)


def test_analyze_without_a_video_asks_for_one(cfg):
    views = list(events.analysis_views(cfg, BrowserSession()))
    assert len(views) == 1 and "Upload a video first" in views[0].status


def test_analyze_stops_at_the_time_limit_with_a_message(cfg, uploaded):
    tight = config.TabConfig(model=cfg.model, max_new_tokens=2, time_limit_s=1e-6)
    views = list(events.analysis_views(tight, uploaded))
    assert "time limit" in views[-1].status and "CRASHCHAT_TIME_LIMIT_S" in views[-1].status
    assert views[-1].error and views[-1].json_file is KEEP  # no report offered for a cut run


def test_analyze_api_returns_the_report_and_refuses_bad_files(cfg, crash_clip, tmp_path):
    report = events.analyze_report(cfg, str(crash_clip))
    assert set(report) >= {"video", "model", "crash_detected", "tasks"}
    assert json.loads(json.dumps(report)) == report
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=r"bad\.mp4: the file is empty"):
        events.analyze_report(cfg, str(bad))
    with pytest.raises(ValueError, match="Upload a video"):
        events.analyze_report(cfg, None)


# --- rendering ----------------------------------------------------------------------------------------


def test_sections_render_each_answer_form():
    def result(task_id, response, parsed, skipped=False):
        return {"group": get_task(task_id).group, "response": response, "parsed": parsed,
                "skipped": skipped, "seconds": 0.5}

    assert "**Yes**" in display.section_markdown("crash_recognition", result("crash_recognition", "Yes", "Yes"))
    assert "**1.9 – 4 s**" in display.section_markdown("crash_localization",
                                                  result("crash_localization", "4.0 - 1.9 seconds", [4.0, 1.9]))
    assert "**2.5 s**" in display.section_markdown("pre_crash_localization", result("pre_crash_localization", "2.5 s", 2.5))
    assert "No time could be read" in display.section_markdown("pre_crash_localization",
                                                          result("pre_crash_localization", "soon", None))
    assert "Skipped: no crash" in display.section_markdown("crash_localization",
                                                      result("crash_localization", None, None, skipped=True))
    text = display.section_markdown("causal_reasoning", result("causal_reasoning", "The car ran a red light.", "x"))
    assert text.startswith("### Why did it happen?") and "ran a red light" in text and "linguistic adapter" in text


def test_verdicts():
    assert "crash detected" in display.verdict_markdown(True, False) and "RANDOM" not in display.verdict_markdown(True, False)
    assert "no crash detected" in display.verdict_markdown(False, True) and "RANDOM WEIGHTS" in display.verdict_markdown(False, True)
    assert "unclear" in display.verdict_markdown(None, False, running=True)


def test_report_figure_draws_the_report_and_chat_marks():
    report = {"tasks": {"crash_localization": {"parsed": [1.0, 2.0], "skipped": False},
                        "pre_crash_localization": {"parsed": 0.5, "skipped": False}}}
    ax = display.report_figure(3.0, report, [Mark("chat", "Q1", 2.5)]).axes[0]
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "crash 1–2 s" in texts and "pre-crash 0.5 s" in texts and "Q1 2.5 s" in texts


# --- chat ---------------------------------------------------------------------------------------------


def test_chat_streams_tokens_routes_and_keeps_history(cfg, uploaded):
    views = list(events.chat_views(cfg, "When does the car start to skid?", uploaded))
    answers = [v.chat[-1]["content"] for v in views if v.chat is not KEEP]
    assert len(answers) >= 3  # placeholder, then growing text
    assert views[-1].chat[0] == {"role": "user", "content": "When does the car start to skid?"}
    assert "perception adapter" in answers[-1] and "RANDOM WEIGHTS" in answers[-1]
    session = views[-1].session
    assert len(session.turns) == 1 and session.turns[0][0] == "When does the car start to skid?"

    views = list(events.chat_views(cfg, "Why did it happen?", session))
    session = views[-1].session
    assert "linguistic adapter" in views[-1].chat[-1]["content"]
    assert [q for q, _ in session.turns] == ["When does the car start to skid?", "Why did it happen?"]
    assert len(session.messages) == 4
    assert uploaded.turns == []  # the caller's session is not mutated (gr.State keeps per-tab copies)


def test_a_free_form_question_is_sent_as_typed(cfg, uploaded):
    views = list(events.chat_views(cfg, "  Who is at fault?  ", uploaded))
    assert views[-1].session.turns[0][0] == "Who is at fault?"
    assert views[-1].chat[0]["content"] == "Who is at fault?"
    assert "guided" not in views[-1].chat[-1]["content"]  # free-form answers are never guided


@pytest.mark.parametrize("task_id", ["crash_recognition", "crash_localization", "pre_crash_localization"])
def test_task_buttons_ask_as_the_authors_evaluation_and_guided_answers_parse(cfg, uploaded, task_id):
    task = get_task(task_id)
    wide = config.TabConfig(model=cfg.model, max_new_tokens=16, examples_dir=cfg.examples_dir)
    views = list(events.chat_views(wide, "", uploaded, task=task_id))
    asked, answer = views[-1].session.turns[0]
    assert asked == task.question and asked.startswith("<video>\n")  # the split's value, as evaluated
    assert views[-1].chat[0]["content"] == f"**{task.title}**: {task.prompt}"  # the readable prompt shown
    assert task.parse(answer) is not None, answer
    footer = views[-1].chat[-1]["content"]
    assert f"{task.group} adapter · guided · RANDOM WEIGHTS" in footer
    if task.group == "perception":  # the time it names is drawn on the timeline
        assert views[-1].session.chat_marks and views[-1].timeline is not KEEP


def test_task_buttons_are_not_guided_when_guidance_is_off(cfg, uploaded):
    plain = config.TabConfig(model=cfg.model, max_new_tokens=4, guided=False, examples_dir=cfg.examples_dir)
    views = list(events.chat_views(plain, "", uploaded, task="crash_recognition"))
    assert "linguistic adapter · RANDOM WEIGHTS" in views[-1].chat[-1]["content"]


def test_chat_without_a_video_or_text(cfg):
    assert list(events.chat_views(cfg, "   ", BrowserSession())) == []
    views = list(events.chat_views(cfg, "What happened?", BrowserSession()))
    assert "Upload a video first" in views[-1].chat[-1]["content"]


def test_chat_stops_at_the_time_limit(cfg, uploaded):
    tight = config.TabConfig(model=cfg.model, max_new_tokens=8, time_limit_s=1e-6)
    views = list(events.chat_views(tight, "Describe the crash.", uploaded))
    assert "time limit" in views[-1].chat[-1]["content"]
    assert views[-1].session.turns == []  # a cut answer is not fed back as context


def test_chat_marks_only_perception_answers_with_times():
    assert events.chat_mark("1.0 - 2.0 seconds", "perception", 2) == Mark("chat", "Q2", 1.0, 2.0)
    assert events.chat_mark("1.0 - 2.0 seconds", "linguistic", 2) is None
    assert events.chat_mark("I cannot tell.", "perception", 1) is None


# --- the Gradio tab -----------------------------------------------------------------------------------


def test_build_lays_out_the_tab_with_an_analyze_endpoint(cfg):
    import gradio as gr

    with gr.Blocks() as demo:
        layout.build(config=cfg)
    names = {fn.api_name for fn in demo.fns.values()}
    assert "analyze" in names
    blocks = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert {f"cc-section-{t}" for t in TASK_IDS} <= set(blocks)
    assert {"cc-upload", "cc-video", "cc-timeline", "cc-analyze", "cc-chat", "cc-keyframes", "cc-verdict"} <= set(blocks)
    # nothing to run before a readable upload; the chat box has no label over its messages
    assert not blocks["cc-analyze"].interactive and not blocks["cc-send"].interactive
    assert not blocks["cc-chat"].show_label and not blocks["cc-chat"].autoscroll
    assert not blocks["cc-video"].visible  # the preview player appears with a readable upload
    # each model request is locked, run in the model queue, then unlocked, outside the queue
    locks = [fn for fn in demo.fns.values() if fn.fn is not None and fn.fn.__name__ in ("lock", "unlock")]
    assert len(locks) == 2 * 9 and all(not fn.queue for fn in locks)
    examples = [Path(p).name for p in resources.example_clips(cfg)]
    assert len(examples) == 3 and all("synthetic" in name for name in examples)
    gpu_fns = [fn for fn in demo.fns.values() if fn.concurrency_id == layout.GPU_QUEUE]
    assert len(gpu_fns) >= 9 and all(fn.concurrency_limit == 1 for fn in gpu_fns)


def test_clearing_the_chat_forgets_turns_and_marks_but_keeps_the_report(cfg, uploaded):
    report = {"tasks": {"crash_localization": {"parsed": [1.0, 2.0], "skipped": False}}}
    session = BrowserSession(video=uploaded.video, report=report, turns=[("q", "a")],
                         messages=[{"role": "user", "content": "q"}], chat_marks=[Mark("chat", "Q1", 1.5)])
    view = events.clear_chat_view(cfg, session)
    assert view.chat == [] and view.session.turns == [] and view.session.chat_marks == []
    assert view.session.report is report
    texts = " ".join(t.get_text() for t in view.timeline.axes[0].texts)
    assert "crash 1–2 s" in texts and "Q1" not in texts


def test_limits_refuse_too_long_and_too_large_uploads(crash_clip):
    from crashchat.video import VideoLimits

    short = config.TabConfig(model="tiny-random", limits=VideoLimits(max_duration_s=1.0))
    assert "Cannot use this file" in events.upload_view(short, str(crash_clip)).status
    small = config.TabConfig(model="tiny-random", limits=VideoLimits(max_bytes=100))
    status = events.upload_view(small, str(crash_clip)).status
    assert "Cannot use this file" in status and "limit" in status


def test_the_cpu_demo_shows_a_crash_window_and_key_frames(cfg, crash_clip):
    """The tiny model with guided decoding (the app's default for it): recognition answers Yes on
    the synthetic clip, so both localizations run and their answers parse and lie in the clip."""
    demo = config.TabConfig(model=cfg.model, max_new_tokens=16, examples_dir=cfg.examples_dir)
    session = events.upload_view(demo, str(crash_clip)).session
    final = list(events.analysis_views(demo, session))[-1]
    report = final.session.report
    assert report["crash_detected"] is True and final.verdict.startswith("## Verdict: crash detected")
    assert report["input"]["guided"] is True and report["input"]["max_new_tokens"] == 16  # recorded
    start, end = report["tasks"]["crash_localization"]["parsed"]
    assert 0 <= start < end <= 3.0 and 0 <= report["tasks"]["pre_crash_localization"]["parsed"] <= 3.0
    texts = " ".join(t.get_text() for t in final.timeline.axes[0].texts)
    assert "crash " in texts and "pre-crash" in texts
    assert len(final.frames) == 3  # pre-crash moment, crash start, crash end
    assert "RANDOM WEIGHTS" in final.verdict
    assert "· guided ·" in display.section_markdown("crash_localization", report["tasks"]["crash_localization"],
                                                    guided=True)


# --- rendering of a crash report ---------------------------------------------------------------------
# These tests script the pipeline's answers (the model is still loaded and passed through) to
# check exactly what the tab draws for given answers.

SCRIPTED = {
    "crash_recognition": ("Yes", "Yes"),
    "crash_description": ("car hits a car.", "car hits a car."),
    "causal_reasoning": ("The car cut in too close.", "The car cut in too close."),
    "prevention_reasoning": ("Keep a safe gap.", "Keep a safe gap."),
    "crash_localization": ("1.8 - 2.4 seconds", [1.8, 2.4]),
    "pre_crash_localization": ("1.2 seconds", 1.2),
}


def _scripted_analyze(fail_after: int | None = None):
    from crashchat.pipeline import task_order

    def analyze(model, clip, tasks, **options):
        for i, task_id in enumerate(task_order(tasks)):
            if fail_after is not None and i == fail_after:
                import torch

                raise torch.OutOfMemoryError("CUDA out of memory (scripted)")
            response, parsed = SCRIPTED[task_id]
            yield task_id, {"group": get_task(task_id).group, "response": response, "parsed": parsed,
                            "skipped": False, "seconds": 0.1}
    return analyze


def test_a_detected_crash_gets_marks_key_frames_and_sections(cfg, uploaded, monkeypatch):
    from crashchat.synthetic import read_frame_number

    monkeypatch.setattr("crashchat.pipeline.analyze", _scripted_analyze())
    final = list(events.analysis_views(cfg, uploaded))[-1]
    assert final.verdict.startswith("## Verdict: crash detected")
    texts = " ".join(t.get_text() for t in final.timeline.axes[0].texts)
    assert "crash 1.8–2.4 s" in texts and "pre-crash 1.2 s" in texts
    assert [c.split(" (")[0] for _, c in final.frames] == ["pre-crash 1.2 s", "crash start 1.8 s", "crash end 2.4 s"]
    assert [read_frame_number(f) for f, _ in final.frames] == [12, 18, 24]
    report = json.loads(Path(final.json_file).read_text())
    assert report["crash_detected"] is True
    assert "**1.8 – 2.4 s**" in display.section_markdown("crash_localization", report["tasks"]["crash_localization"])


def test_out_of_gpu_memory_is_a_message_not_a_crash(cfg, uploaded, monkeypatch):
    monkeypatch.setattr("crashchat.pipeline.analyze", _scripted_analyze(fail_after=2))
    views = list(events.analysis_views(cfg, uploaded))
    assert views[-1].error == events.OUT_OF_MEMORY and "answers so far" in views[-1].status
    with pytest.raises(__import__("torch").OutOfMemoryError):  # the API raises; build() turns it into gr.Error
        events.analyze_report(cfg, uploaded.video)


def test_example_clips_are_rendered_once_when_missing(tmp_path):
    cfg = config.TabConfig(model="tiny-random", examples_dir=tmp_path / "ex")
    paths = resources.example_clips(cfg)
    assert [p.name for p in paths] == [p.name for p in resources.example_clips(cfg)]
    assert all(p.stat().st_size > 0 and "synthetic" in p.name for p in paths)


# --- what this machine allows, escaping, limits -----------------------------------------------------


def test_without_a_gpu_no_instruction_points_at_a_disabled_control(monkeypatch, crash_clip, tmp_path):
    """With no GPU for the real model, a readable upload does not say "Click Analyze" (Analyze is
    off): it says what can be done instead; so do the chat box and the status line."""
    import gradio as gr

    monkeypatch.setattr(resources, "gpu_available", lambda: False)
    cfg = config.TabConfig(model="crashchat", examples_dir=tmp_path / "ex")
    status = events.upload_view(cfg, str(crash_clip)).status
    assert status.startswith("Readable: crash_synthetic.mp4") and "Click" not in status and "Analyze**" not in status
    assert "CRASHCHAT_MODEL=tiny-random python app.py" in status
    assert "CRASHCHAT_MODEL=tiny-random python app.py" in display.model_status(cfg)
    with gr.Blocks() as demo:
        layout.build(config=cfg)
    blocks = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert "Chat is off on this machine" in blocks["cc-chat"].placeholder
    assert not blocks["cc-analyze"].interactive and not blocks["cc-send"].interactive


def test_answers_and_questions_are_shown_as_text_and_undecodable_bytes_as_a_marker(cfg, uploaded, monkeypatch):
    """A random-weight answer with broken UTF-8 shows `[?]`, never U+FFFD; Markdown or HTML in a
    question or an answer shows as typed, not as markup."""
    model = resources.get_model(cfg.model)
    pieces = ["**an** <b>wer</b>", "\ufffd\ufffd", " 1. an"]
    monkeypatch.setattr(model, "stream", lambda *a, **k: iter(pieces))
    views = list(events.chat_views(cfg, "What is <img src=x onerror=alert(1)> $x$?", uploaded))
    question, answer = views[-1].chat[-2]["content"], views[-1].chat[-1]["content"]
    assert question == r"What is \<img src\=x onerror\=alert\(1\)\> \$x\$?"
    assert answer.startswith(r"\*\*an\*\* \<b\>wer\</b\>[?] 1\. an") and display.UNDECODABLE_NOTE in answer
    assert all("\ufffd" not in v.chat[-1]["content"] for v in views if v.chat is not KEEP)
    assert views[-1].session.turns[-1][1] == "**an** <b>wer</b>\ufffd\ufffd 1. an"  # the model's context: as said
    section = display.section_markdown("crash_description", {"group": "linguistic", "response": "a\ufffdb",
                                                             "parsed": "a\ufffdb", "skipped": False, "seconds": 0.1})
    assert "a[?]b" in section and "\ufffd" not in section and display.UNDECODABLE_NOTE in section
    assert display.raw_view({"t": ["a\ufffd"]}) == {"t": ["a\\ufffd"]}  # the raw view: escaped, as in the JSON file


def test_a_question_over_the_limit_is_refused_without_reaching_the_model(cfg, uploaded, monkeypatch):
    def no_model(name):
        raise AssertionError("the model was reached")

    monkeypatch.setattr(events, "get_model", no_model)
    monkeypatch.setattr(events, "open_clip", no_model)
    views = list(events.chat_views(cfg, "x" * 100_000, uploaded))
    assert len(views) == 1 and "limited to 2,000 characters; this one has 100,000" in views[0].chat[-1]["content"]
    assert views[0].error and views[0].session.turns == uploaded.turns
    assert "x" * 100 not in json.dumps(views[0].chat)  # the 100,000 characters are not echoed back
    assert layout.question_check("x" * 100_000)["is_valid"] is False  # refused before the queue, too
    assert layout.question_check("y" * 2000)["is_valid"] is True


def test_a_session_gets_one_running_and_one_waiting_model_job(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(layout, "ADMISSIONS", layout.Admissions())
    def request(session, *jobs):
        events_ = {str(i): SimpleNamespace(session_hash=s, concurrency_id=c) for i, (s, c) in enumerate(jobs)}
        queue = SimpleNamespace(event_ids_to_events=events_)
        app = SimpleNamespace(get_blocks=lambda: SimpleNamespace(_queue=queue))
        return SimpleNamespace(session_hash=session, request=SimpleNamespace(app=app))

    gpu, other = layout.GPU_QUEUE, "reads"
    assert layout.session_model_jobs(request("a", ("a", gpu), ("b", gpu), ("a", other))) == 1
    assert layout.admission(request("a", ("a", gpu), ("b", gpu)))["is_valid"] is True
    refused = layout.admission(request("a", ("a", gpu), ("a", gpu), ("b", gpu)))
    assert refused["is_valid"] is False and "a model job running and one waiting" in refused["message"]


def test_the_question_box_states_its_limit_and_enforces_it(cfg):
    import gradio as gr

    with gr.Blocks() as demo:
        layout.build(config=cfg)
    box = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "cc-question")
    assert box.max_length == events.MAX_QUESTION_CHARS == 2000 and "at most 2,000 characters" in box.placeholder
    model_fns = [fn for fn in demo.fns.values() if fn.concurrency_id == layout.GPU_QUEUE]
    assert model_fns and all(fn.validator is not None for fn in model_fns)  # every model job is admitted first


HIDE_MODEL_PACKAGES = '''
"""Written by tests/test_ui.py: makes `import torch` (and the other model packages) fail, as on a
machine where only the leaderboard's requirements are installed."""
import sys


class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "transformers", "peft", "accelerate"}:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by tests/test_ui.py)")
        return None


sys.meta_path.insert(0, _Hide())
'''


def test_the_app_starts_without_the_model_packages_and_the_chat_tab_says_how_to_add_them(tmp_path):
    import os
    import urllib.request

    from live_app import free_port, launch, terminate

    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "sitecustomize.py").write_text(HIDE_MODEL_PACKAGES)
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "hide"), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               CRASHCHAT_DB=str(tmp_path / "db.sqlite3"), CRASHCHAT_EXAMPLES_DIR=str(tmp_path / "examples"),
               GRADIO_TEMP_DIR=str(tmp_path / "gradio"))
    proc = launch(["--port", str(port)], env, f"http://127.0.0.1:{port}/", tmp_path / "app.log")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=30) as page:
            components = json.loads(page.read())["components"]
    finally:
        terminate(proc)
    shown = {c["props"].get("elem_id"): c["props"].get("value") for c in components}
    assert "The model packages are not installed here** (missing: torch, transformers, peft)" in shown["cc-model-status"]
    assert "pip install -r requirements.txt" in shown["cc-model-status"]
    assert "hidden by tests/test_ui.py" not in (tmp_path / "app.log").read_text()  # nothing tried to import them


def test_no_import_circle_in_the_chat_package():
    """Every import among `crashchat.chat` modules, at the top or inside a function, points one way."""
    import ast
    import graphlib

    folder = Path(resources.__file__).parent
    graph = {}
    for path in folder.glob("*.py"):
        name = f"crashchat.chat.{path.stem}"
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
        graph[name] = {m for m in imported if m.startswith("crashchat.chat.") and m != name
                       and (folder / f"{m.rsplit('.', 1)[-1]}.py").exists()}
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a circle


def test_the_queue_waits_quietly_and_the_pinned_gradio_has_what_it_sets():
    """`app.quiet_queue` sets Gradio's private polling intervals; if this Gradio renamed them, the
    app would keep polling every millisecond without a word, so the test says so instead."""
    import gradio as gr

    import app

    with gr.Blocks() as demo:
        gr.Markdown("x")
    demo.queue()
    for name in app.QUEUE_POLL_S:
        assert hasattr(demo._queue, name), f"Gradio {gr.__version__}'s queue has no {name}: see app.QUEUE_POLL_S"
    app.quiet_queue(demo)
    assert {name: getattr(demo._queue, name) for name in app.QUEUE_POLL_S} == app.QUEUE_POLL_S


@pytest.mark.parametrize(("name", "value", "expect"), [
    ("GRADIO_SERVER_PORT", "http", "a port number (1 to 65535)"),
    ("CRASHCHAT_QUEUE_SIZE", "0", "a whole number of events (1 or more)"),
    ("CRASHCHAT_TIME_LIMIT_S", "soon", "a positive number of seconds"),
    ("CRASHCHAT_MAX_NEW_TOKENS", "-3", "a whole number of tokens (1 or more)"),
    ("CRASHCHAT_GUIDED", "maybe", "1 (on) or 0 (off)"),
    ("CRASHCHAT_STATIC_CACHE", "auto", "1 (where it helps, the default) or 0 (off)"),
    ("CRASHCHAT_SUBMIT_LIMIT", "many", "a whole number of submissions (0 or more)"),
    ("CRASHCHAT_LEASE_SECONDS", "nan", "a positive number of seconds"),
    ("CRASHCHAT_EVAL_MAX_NEW_TOKENS", "2k", "a whole number of tokens (1 or more)"),
    ("CRASHCHAT_SYNC_MINUTES", "often", "a positive number of minutes"),
])
def test_a_bad_setting_stops_the_app_with_one_line_before_it_serves(monkeypatch, tmp_path, capsys, name, value,
                                                                   expect):
    """`python app.py` reads every setting at start: one `error:` line naming it, exit 2, nothing
    served and no traceback (Gradio itself would crash on a bad GRADIO_SERVER_PORT at import)."""
    import app

    monkeypatch.setenv("CRASHCHAT_DB", str(tmp_path / "board.sqlite3"))
    monkeypatch.setenv("CRASHCHAT_RESULTS_REPO", "someone/results")  # so that the sync interval is read
    monkeypatch.setenv("HF_TOKEN", "hf_not_used")
    monkeypatch.setenv(name, value)
    monkeypatch.setattr("gradio.Blocks.launch", lambda *a, **k: pytest.fail("the app launched"))
    assert app.main(["--model", "tiny-random"]) == 2
    assert capsys.readouterr().err == f"error: {name}={value!r}: expected {expect}\n"


def test_a_database_setting_that_is_not_a_database_stops_the_app_with_one_line(monkeypatch, tmp_path, capsys):
    import app

    junk = tmp_path / "notes.txt"
    junk.write_text("not a database")
    monkeypatch.setenv("CRASHCHAT_DB", str(junk))
    monkeypatch.setattr("gradio.Blocks.launch", lambda *a, **k: pytest.fail("the app launched"))
    assert app.main(["--model", "tiny-random"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {junk}: cannot be used as the leaderboard database") and err.count("\n") == 1
    assert junk.read_text() == "not a database"


def test_gradios_queue_admits_one_running_and_one_waiting_job_per_session(monkeypatch):
    """`layout.admission` against Gradio's real queue: one client (one session) sends three jobs at
    once to a slow function in the model queue; two run one after the other, the third is refused
    before it joins the queue, with the reason. (The app wires the same validator to every model
    event: `test_the_question_box_states_its_limit_and_enforces_it`.)"""
    import threading

    import gradio as gr
    from gradio_client import Client
    from live_app import free_port

    checked, all_checked = [], threading.Event()
    count = layout.session_model_jobs

    def counting(request):  # the real count; notes when all three jobs have been checked
        checked.append(count(request))
        if len(checked) == 3:
            all_checked.set()
        return checked[-1]

    monkeypatch.setattr(layout, "session_model_jobs", counting)
    monkeypatch.setattr(layout, "ADMISSIONS", layout.Admissions())

    def slow(text):
        all_checked.wait(60)  # the first job runs until the third was checked: the second waits
        return text

    with gr.Blocks() as demo:
        box, out, button = gr.Textbox(), gr.Textbox(), gr.Button()
        button.click(slow, box, out, api_name="slow", concurrency_id=layout.GPU_QUEUE, concurrency_limit=1,
                     validator=layout.admit_file)
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        jobs = [client.submit(f"job {i}", api_name="/slow") for i in range(3)]
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(job.result(timeout=60))
            except Exception as exc:  # gradio_client's ValidationError carries the validator's message
                outcomes.append(str(exc))
        refused = [o for o in outcomes if not o.startswith("job ")]
        assert len(refused) == 1 and "already has a model job running and one waiting" in refused[0], outcomes
        assert len(checked) == 3  # (re-admission once they are done: the `Admissions` doctest)
    finally:
        all_checked.set()
        demo.close()
