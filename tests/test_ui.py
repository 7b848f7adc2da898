"""The chat tab's functions with the tiny random model (no browser; `test_chat_browser.py` has one)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from crashchat import ui
from crashchat.tasks import TASK_IDS, get_task
from crashchat.timeline import Mark

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory) -> ui.TabConfig:
    from crashchat.synthetic import EXAMPLES, write_clip

    examples = tmp_path_factory.mktemp("examples")
    for name, scene, seconds, seed in EXAMPLES:  # small stand-ins, quicker than the app's 640x360 ones
        write_clip(examples / name, seconds=1.0, scene=scene, seed=seed)
    # few tokens keep the tiny model fast; isolate=True as in the app (uploads decode in a child)
    return ui.TabConfig(model="tiny-random", max_new_tokens=4, examples_dir=examples)


@pytest.fixture(scope="module")
def uploaded(cfg, crash_clip) -> ui.Session:
    view = ui.upload_view(cfg, str(crash_clip))
    assert view.session.video == str(crash_clip)
    return view.session


def _last(views, name):
    values = [getattr(v, name) for v in views if getattr(v, name) is not ui.KEEP]
    assert values, f"no view set {name}"
    return values[-1]


# --- configuration ------------------------------------------------------------------------------------


def test_config_from_env_and_its_errors(monkeypatch):
    monkeypatch.setenv("CRASHCHAT_MODEL", "tiny-random")
    monkeypatch.setenv("CRASHCHAT_TIME_LIMIT_S", "42")
    monkeypatch.setenv("CRASHCHAT_MAX_NEW_TOKENS", "7")
    cfg = ui.TabConfig.from_env()
    assert (cfg.model, cfg.time_limit_s, cfg.max_new_tokens) == ("tiny-random", 42.0, 7)
    assert ui.TabConfig.from_env("videollama3").model == "videollama3"  # the --model flag wins
    monkeypatch.setenv("CRASHCHAT_TIME_LIMIT_S", "soon")
    with pytest.raises(ValueError, match="CRASHCHAT_TIME_LIMIT_S='soon'"):
        ui.TabConfig.from_env()
    with pytest.raises(ValueError, match="unknown model 'gpt'"):
        ui.TabConfig(model="gpt")
    with pytest.raises(ValueError, match="positive"):
        ui.TabConfig(model="tiny-random", time_limit_s=0)


def test_real_model_on_cpu_says_it_needs_a_gpu_and_loads_nothing(monkeypatch, crash_clip):
    monkeypatch.setattr(ui, "gpu_available", lambda: False)
    cfg = ui.TabConfig(model="crashchat")
    assert ui.needs_gpu(cfg)
    status = ui.model_status(cfg)
    assert "needs a GPU" in status and "Leaderboard tab works" in status
    views = list(ui.analysis_views(cfg, ui.Session(video=str(crash_clip))))
    assert len(views) == 1 and "needs a GPU" in views[0].status
    assert ui.loaded_model("crashchat") is None
    chat = list(ui.chat_views(cfg, "What happened?", ui.Session(video=str(crash_clip))))
    assert "needs a GPU" in chat[-1].chat[-1]["content"]
    with pytest.raises(ValueError, match="needs a GPU"):
        ui.analyze_report(cfg, str(crash_clip))
    monkeypatch.setattr(ui, "gpu_available", lambda: True)
    assert not ui.needs_gpu(cfg)


def test_tiny_model_status_says_random_weights_before_and_after_loading(cfg):
    assert "RANDOM WEIGHTS" in ui.model_status(cfg)
    model = ui.get_model(cfg.model)
    status = ui.model_status(cfg)
    assert "RANDOM WEIGHTS" in status and f"device `{model.device}`" in status and "linguistic, perception" in status


# --- uploads ------------------------------------------------------------------------------------------


def test_upload_of_a_good_clip_is_ready_with_a_timeline(cfg, crash_clip):
    view = ui.upload_view(cfg, str(crash_clip))
    assert view.status.startswith("Ready: crash_synthetic.mp4: 3.0 s, 64×64")
    assert view.error is None
    assert view.timeline.axes[0].get_xlim() == (0.0, 3.0)
    assert view.chat == [] and view.json_file is None and view.sections == ui.empty_sections()


def test_no_upload_asks_for_one(cfg):
    view = ui.upload_view(cfg, None)
    assert "Upload a video" in view.status and view.session.video is None


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "audio_only", "one_pixel"])
def test_bad_uploads_give_a_readable_message_within_seconds(cfg, tmp_path, kind):
    from crashchat.synthetic import write_broken

    path = write_broken(tmp_path / f"upload_{kind}.mp4", kind)
    start = time.monotonic()
    view = ui.upload_view(cfg, str(path))
    assert time.monotonic() - start < 20
    assert view.status.startswith("**Cannot use this file.**"), view.status
    assert f"upload_{kind}.mp4" in view.status and str(tmp_path) not in view.status  # the name, not the temp dir
    assert view.error and "\n" not in view.error and "Traceback" not in view.error
    assert view.session.video is None  # Analyze and chat then ask for a video


def test_unsupported_suffix_is_refused(cfg, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    assert "unsupported file type '.txt'" in ui.upload_view(cfg, str(path)).status


# --- Analyze ------------------------------------------------------------------------------------------


def test_analyze_streams_task_by_task_then_offers_downloads(cfg, uploaded):
    views = list(ui.analysis_views(cfg, uploaded))
    section_views = [v.sections for v in views if v.sections is not ui.KEEP]
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
    views = list(ui.analysis_views(cfg, ui.Session()))
    assert len(views) == 1 and "Upload a video first" in views[0].status


def test_analyze_stops_at_the_time_limit_with_a_message(cfg, uploaded):
    tight = ui.TabConfig(model=cfg.model, max_new_tokens=2, time_limit_s=1e-6)
    views = list(ui.analysis_views(tight, uploaded))
    assert "time limit" in views[-1].status and "CRASHCHAT_TIME_LIMIT_S" in views[-1].status
    assert views[-1].error and views[-1].json_file is ui.KEEP  # no report offered for a cut run


def test_analyze_api_returns_the_report_and_refuses_bad_files(cfg, crash_clip, tmp_path):
    report = ui.analyze_report(cfg, str(crash_clip))
    assert set(report) >= {"video", "model", "crash_detected", "tasks"}
    assert json.loads(json.dumps(report)) == report
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=r"bad\.mp4: the file is empty"):
        ui.analyze_report(cfg, str(bad))
    with pytest.raises(ValueError, match="Upload a video"):
        ui.analyze_report(cfg, None)


# --- rendering ----------------------------------------------------------------------------------------


def test_sections_render_each_answer_form():
    def result(task_id, response, parsed, skipped=False):
        return {"group": get_task(task_id).group, "response": response, "parsed": parsed,
                "skipped": skipped, "seconds": 0.5}

    assert "**Yes**" in ui.section_markdown("crash_recognition", result("crash_recognition", "Yes", "Yes"))
    assert "**1.9 – 4 s**" in ui.section_markdown("crash_localization",
                                                  result("crash_localization", "4.0 - 1.9 seconds", [4.0, 1.9]))
    assert "**2.5 s**" in ui.section_markdown("pre_crash_localization", result("pre_crash_localization", "2.5 s", 2.5))
    assert "No time could be read" in ui.section_markdown("pre_crash_localization",
                                                          result("pre_crash_localization", "soon", None))
    assert "Skipped: no crash" in ui.section_markdown("crash_localization",
                                                      result("crash_localization", None, None, skipped=True))
    text = ui.section_markdown("causal_reasoning", result("causal_reasoning", "The car ran a red light.", "x"))
    assert text.startswith("### Why did it happen?") and "ran a red light" in text and "linguistic adapter" in text


def test_verdicts():
    assert "crash detected" in ui.verdict_markdown(True, False) and "RANDOM" not in ui.verdict_markdown(True, False)
    assert "no crash detected" in ui.verdict_markdown(False, True) and "RANDOM WEIGHTS" in ui.verdict_markdown(False, True)
    assert "unclear" in ui.verdict_markdown(None, False, running=True)


def test_report_figure_draws_the_report_and_chat_marks():
    report = {"tasks": {"crash_localization": {"parsed": [1.0, 2.0], "skipped": False},
                        "pre_crash_localization": {"parsed": 0.5, "skipped": False}}}
    ax = ui.report_figure(3.0, report, [Mark("chat", "Q1", 2.5)]).axes[0]
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "crash 1–2 s" in texts and "pre-crash 0.5 s" in texts and "Q1 2.5 s" in texts


# --- chat ---------------------------------------------------------------------------------------------


def test_chat_streams_tokens_routes_and_keeps_history(cfg, uploaded):
    views = list(ui.chat_views(cfg, "When does the car start to skid?", uploaded))
    answers = [v.chat[-1]["content"] for v in views if v.chat is not ui.KEEP]
    assert len(answers) >= 3  # placeholder, then growing text
    assert views[-1].chat[0] == {"role": "user", "content": "When does the car start to skid?"}
    assert "perception adapter" in answers[-1] and "RANDOM WEIGHTS" in answers[-1]
    session = views[-1].session
    assert len(session.turns) == 1 and session.turns[0][0] == "When does the car start to skid?"

    views = list(ui.chat_views(cfg, "Why did it happen?", session))
    session = views[-1].session
    assert "linguistic adapter" in views[-1].chat[-1]["content"]
    assert [q for q, _ in session.turns] == ["When does the car start to skid?", "Why did it happen?"]
    assert len(session.messages) == 4
    assert uploaded.turns == []  # the caller's session is not mutated (gr.State keeps per-tab copies)


def test_suggestion_uses_the_tasks_group_and_shows_its_title(cfg, uploaded):
    task = get_task("pre_crash_localization")
    views = list(ui.chat_views(cfg, task.prompt, uploaded, group=task.group, shown=f"**{task.title}**"))
    assert views[-1].chat[0]["content"] == "**Pre-crash localization**"
    assert views[-1].session.turns[0][0] == task.prompt  # the model gets the full prompt
    assert "perception adapter" in views[-1].chat[-1]["content"]


def test_chat_without_a_video_or_text(cfg):
    assert list(ui.chat_views(cfg, "   ", ui.Session())) == []
    views = list(ui.chat_views(cfg, "What happened?", ui.Session()))
    assert "Upload a video first" in views[-1].chat[-1]["content"]


def test_chat_stops_at_the_time_limit(cfg, uploaded):
    tight = ui.TabConfig(model=cfg.model, max_new_tokens=8, time_limit_s=1e-6)
    views = list(ui.chat_views(tight, "Describe the crash.", uploaded))
    assert "time limit" in views[-1].chat[-1]["content"]
    assert views[-1].session.turns == []  # a cut answer is not fed back as context


def test_chat_marks_only_perception_answers_with_times():
    assert ui.chat_mark("1.0 - 2.0 seconds", "perception", 2) == Mark("chat", "Q2", 1.0, 2.0)
    assert ui.chat_mark("1.0 - 2.0 seconds", "linguistic", 2) is None
    assert ui.chat_mark("I cannot tell.", "perception", 1) is None


# --- the Gradio tab -----------------------------------------------------------------------------------


def test_build_lays_out_the_tab_with_an_analyze_endpoint(cfg):
    import gradio as gr

    with gr.Blocks() as demo:
        ui.build(config=cfg)
    names = {fn.api_name for fn in demo.fns.values()}
    assert "analyze" in names
    ids = {b.elem_id for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert {f"cc-section-{t}" for t in TASK_IDS} <= ids
    assert {"cc-video", "cc-timeline", "cc-analyze", "cc-chat", "cc-keyframes", "cc-verdict"} <= ids
    examples = [Path(p).name for p in ui.example_clips(cfg)]
    assert len(examples) == 3 and all("synthetic" in name for name in examples)
    gpu_fns = [fn for fn in demo.fns.values() if fn.concurrency_id == ui.GPU_QUEUE]
    assert len(gpu_fns) >= 9 and all(fn.concurrency_limit == 1 for fn in gpu_fns)


def test_clearing_the_chat_forgets_turns_and_marks_but_keeps_the_report(cfg, uploaded):
    report = {"tasks": {"crash_localization": {"parsed": [1.0, 2.0], "skipped": False}}}
    session = ui.Session(video=uploaded.video, report=report, turns=[("q", "a")],
                         messages=[{"role": "user", "content": "q"}], chat_marks=[Mark("chat", "Q1", 1.5)])
    view = ui.clear_chat_view(cfg, session)
    assert view.chat == [] and view.session.turns == [] and view.session.chat_marks == []
    assert view.session.report is report
    texts = " ".join(t.get_text() for t in view.timeline.axes[0].texts)
    assert "crash 1–2 s" in texts and "Q1" not in texts


def test_limits_refuse_too_long_and_too_large_uploads(crash_clip):
    from crashchat.video import VideoLimits

    short = ui.TabConfig(model="tiny-random", limits=VideoLimits(max_duration_s=1.0))
    assert "Cannot use this file" in ui.upload_view(short, str(crash_clip)).status
    small = ui.TabConfig(model="tiny-random", limits=VideoLimits(max_bytes=100))
    status = ui.upload_view(small, str(crash_clip)).status
    assert "Cannot use this file" in status and "limit" in status


# --- rendering of a crash report ---------------------------------------------------------------------
# The tiny random model never answers "Yes", so these tests script the pipeline's answers (the
# model is still loaded and passed through) to check what the tab draws for a detected crash.

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

    def analyze(model, clip, tasks, max_new_tokens=256):
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
    final = list(ui.analysis_views(cfg, uploaded))[-1]
    assert final.verdict.startswith("## Verdict: crash detected")
    texts = " ".join(t.get_text() for t in final.timeline.axes[0].texts)
    assert "crash 1.8–2.4 s" in texts and "pre-crash 1.2 s" in texts
    assert [c.split(" (")[0] for _, c in final.frames] == ["pre-crash 1.2 s", "crash start 1.8 s", "crash end 2.4 s"]
    assert [read_frame_number(f) for f, _ in final.frames] == [12, 18, 24]
    report = json.loads(Path(final.json_file).read_text())
    assert report["crash_detected"] is True
    assert "**1.8 – 2.4 s**" in ui.section_markdown("crash_localization", report["tasks"]["crash_localization"])


def test_out_of_gpu_memory_is_a_message_not_a_crash(cfg, uploaded, monkeypatch):
    monkeypatch.setattr("crashchat.pipeline.analyze", _scripted_analyze(fail_after=2))
    views = list(ui.analysis_views(cfg, uploaded))
    assert views[-1].error == ui.OUT_OF_MEMORY and "answers so far" in views[-1].status
    with pytest.raises(__import__("torch").OutOfMemoryError):  # the API raises; build() turns it into gr.Error
        ui.analyze_report(cfg, uploaded.video)


def test_example_clips_are_rendered_once_when_missing(tmp_path):
    cfg = ui.TabConfig(model="tiny-random", examples_dir=tmp_path / "ex")
    paths = ui.example_clips(cfg)
    assert [p.name for p in paths] == [p.name for p in ui.example_clips(cfg)]
    assert all(p.stat().st_size > 0 and "synthetic" in p.name for p in paths)
