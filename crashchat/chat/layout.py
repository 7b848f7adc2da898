"""The chat tab's Gradio components and their wiring: `build()` lays the tab out inside the
caller's `gr.Blocks` (`app.py`). The only part of `crashchat.chat` that imports Gradio.

Each model request (Analyze, Send, a task button) runs as three steps: `lock` disables every
control at once (outside the queue, so a second click cannot slip in), the request itself runs in
the shared model queue (`concurrency_id="gpu"`, one job at a time; inside `spaces.GPU` on a
ZeroGPU Space, with a duration estimated from the clip and the tasks asked), and `unlock` enables again what the session allows: the model controls only with
a readable video.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from crashchat.chat.config import TabConfig
from crashchat.chat.display import model_status, section_markdown
from crashchat.chat.events import (
    OUT_OF_MEMORY,
    TimeLimitExceeded,
    analysis_views,
    analyze_report,
    chat_views,
    clear_chat_view,
    upload_view,
)
from crashchat.chat.resources import example_clips, free_gpu_memory, get_model, needs_gpu, out_of_memory
from crashchat.chat.state import KEEP, Session, View
from crashchat.chat.zerogpu import analysis_batches, gpu, request_seconds, zero_gpu
from crashchat.tasks import TASK_IDS, TASKS

GPU_QUEUE = "gpu"  # concurrency id shared by every event that runs the model: one job per GPU

# Keeps the question just asked in view: when a question appears, the chat box scrolls down with
# the growing answer only until the question reaches the top of the box, then stays (Gradio's
# autoscroll, off here, follows the answer's end and pushes the question out of sight). Scrolling
# by hand stops the following.
KEEP_QUESTION_IN_VIEW = """
const chat = document.getElementById('cc-chat');
if (chat) {
  let asked = 0, following = false;
  const stop = () => { following = false; };
  chat.addEventListener('wheel', stop, {passive: true});
  chat.addEventListener('touchmove', stop, {passive: true});
  new MutationObserver(() => {
    const questions = chat.querySelectorAll('.message-row.user-row');
    if (questions.length > asked) following = true;
    asked = questions.length;
    const box = chat.querySelector('.bubble-wrap');
    if (!following || !box || !questions.length) return;
    const below = questions[questions.length - 1].getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
    if (below > 0) box.scrollTop += below;
  }).observe(chat, {childList: true, subtree: true, characterData: true});
}
"""


def max_upload_bytes() -> int:
    """For `launch(max_file_size=...)`: Gradio refuses a bigger upload before it is even stored."""
    from crashchat.video import VideoLimits

    return VideoLimits().max_bytes


def build(model: str | None = None, config: TabConfig | None = None) -> None:
    """Lay out the chat tab inside the current `gr.Blocks` and wire its events."""
    import gradio as gr

    cfg = config or TabConfig.from_env(model)
    blocked = needs_gpu(cfg)
    if zero_gpu():
        # ZeroGPU attaches a GPU only inside `spaces.GPU` calls, whose duration could not cover a
        # download; it expects the weights moved to "cuda" at startup, outside those calls.
        from crashchat.weights import ModelLoadError

        try:
            get_model(cfg.model)
        except ModelLoadError as exc:  # the leaderboard tab stays up; each request says why
            print(f"chat tab: the model could not be loaded at startup: {exc}", file=sys.stderr)

    # --- components, top to bottom ---
    session = gr.State(Session())
    status_md = gr.Markdown(model_status(cfg), elem_id="cc-model-status")
    with gr.Row():
        with gr.Column(scale=3):
            # A file box, not a video player, takes the upload: a broken file never reaches a player.
            upload = gr.File(label="Dashcam video (mp4, mov, avi, mkv or webm)", file_count="single",
                             height=110, elem_id="cc-upload")
            preview = gr.Video(label="Preview", show_label=False, interactive=False, visible=False, height=300,
                               elem_id="cc-video")
            timeline_plot = gr.Plot(label="Timeline", show_label=False, elem_id="cc-timeline", format="png")
            upload_md = gr.Markdown(upload_view(cfg, None).status, elem_id="cc-upload-status")
            analyze_btn = gr.Button("Analyze", variant="primary", interactive=False, elem_id="cc-analyze")
            clips = example_clips(cfg)
            examples = gr.Examples([[str(p)] for p in clips], inputs=[upload],
                                   label="Synthetic example clips (rendered by crashchat.synthetic, not real footage)",
                                   example_labels=[p.stem.replace("_", " ") for p in clips])
        with gr.Column(scale=2):
            verdict_md = gr.Markdown(elem_id="cc-verdict")
            # captions above, not component labels: a label badge sits on top of the content
            gr.Markdown("**Key frames** at the crash window and the pre-crash moment, when found")
            frames_gallery = gr.Gallery(label="Key frames", show_label=False, columns=3, height=220,
                                        elem_id="cc-keyframes")
    section_mds = {}
    for row in (TASK_IDS[:3], TASK_IDS[3:]):
        with gr.Row(equal_height=False):
            for task_id in row:
                section_mds[task_id] = gr.Markdown(section_markdown(task_id, None), elem_id=f"cc-section-{task_id}")
    with gr.Accordion("Raw answers", open=False):
        raw_json = gr.JSON(elem_id="cc-raw")
    with gr.Row():
        json_btn = gr.DownloadButton("Download report (JSON)", visible=False, elem_id="cc-download-json")
        md_btn = gr.DownloadButton("Download report (Markdown)", visible=False, elem_id="cc-download-md")

    gr.Markdown("### Ask about the video")
    chatbot = gr.Chatbot(show_label=False, height=360, autoscroll=False, elem_id="cc-chat", buttons=["copy"],
                         placeholder="Type a question below or press a task button; the answer streams in here.")
    gr.HTML(js_on_load=KEEP_QUESTION_IN_VIEW, visible="hidden")
    with gr.Row():
        task_btns = {t.id: gr.Button(t.title, size="sm", interactive=False, elem_id=f"cc-suggest-{t.id}")
                     for t in TASKS}
    with gr.Row():
        question = gr.Textbox(placeholder="Ask a question, e.g. “Why did the car swerve?” or “When does it brake?”",
                              show_label=False, scale=5, interactive=False, elem_id="cc-question")
        send_btn = gr.Button("Send", scale=1, interactive=False, elem_id="cc-send")

    # --- what a View sets, and which controls a run locks ---
    components = {"model_status": status_md, "status": upload_md, "preview": preview, "verdict": verdict_md,
                  "timeline": timeline_plot, "frames": frames_gallery, "raw": raw_json,
                  "json_file": json_btn, "md_file": md_btn, "chat": chatbot, "session": session}
    outputs = list(components.values()) + [section_mds[t] for t in TASK_IDS]
    model_controls = [analyze_btn, send_btn, question, *task_btns.values()]
    controls = model_controls + [upload, examples.dataset]

    def render(view: View) -> list:
        values = []
        for name in components:
            value = getattr(view, name)
            if value is KEEP:
                values.append(gr.skip())
            elif name in ("json_file", "md_file"):
                values.append(gr.DownloadButton(value=value, visible=value is not None))
            elif name == "preview":
                values.append(gr.Video(value=value, visible=value is not None))
            else:
                values.append(value)
        sections = view.sections
        values += [gr.skip() if sections is KEEP else sections[t] for t in TASK_IDS]
        return values

    def model_control_values(ready: bool) -> list:
        return [gr.Button(interactive=ready), gr.Button(interactive=ready), gr.Textbox(interactive=ready),
                *(gr.Button(interactive=ready) for _ in task_btns)]

    def lock() -> list:
        # the upload and the examples too: a new video mid-run would be overwritten by the run's views
        return [*model_control_values(False), gr.File(interactive=False), gr.Dataset(visible=False)]

    def unlock(state: Session) -> list:
        ready = state.video is not None and not blocked
        return [*model_control_values(ready), gr.File(interactive=True), gr.Dataset(visible=True)]

    # --- events ---
    def on_upload(path):
        view = upload_view(cfg, path)
        return [*render(view), *model_control_values(view.session.video is not None and not blocked)]

    def on_analyze(state, progress=gr.Progress()):
        for view in analysis_views(cfg, state, progress):
            yield render(view)

    def on_question(message, state, progress=gr.Progress()):
        yield [*render(View()), ""]  # clear the box at once
        for view in chat_views(cfg, message, state, progress=progress):
            yield [*render(view), gr.skip()]

    def on_task(task_id: str):
        def ask(state, progress=gr.Progress()):
            for view in chat_views(cfg, "", state, task=task_id, progress=progress):
                yield render(view)
        return ask

    def api_analyze(video_file):
        # the caller gets the one-line reason; the server log no traceback (nothing went wrong here)
        try:
            return analyze_report(cfg, video_file)
        except (ValueError, TimeLimitExceeded) as exc:  # bad video, no GPU, model not loadable, time limit
            raise gr.Error(str(exc), print_exception=False) from None
        except out_of_memory():
            free_gpu_memory()
            raise gr.Error(OUT_OF_MEMORY, print_exception=False) from None

    def on_clear(state):
        return render(clear_chat_view(cfg, state))

    private = {"api_visibility": "private"}
    quick = {"queue": False, "show_progress": "hidden", **private}
    queue = {"concurrency_id": GPU_QUEUE, "concurrency_limit": 1, **private}

    # ZeroGPU durations, from each function's own arguments: the clip's frames, the tasks asked
    def analysis_s(state, *_, **__):
        return request_seconds(cfg, state.video, analysis_batches(TASK_IDS))

    def question_s(message, state, *_, **__):  # one question, decoded alone
        return request_seconds(cfg, state.video, [1])

    def task_s(state, *_, **__):
        return request_seconds(cfg, state.video, [1])

    def api_s(video_file, *_, **__):
        return request_seconds(cfg, video_file, analysis_batches(TASK_IDS))

    def run(trigger, fn: Callable, duration: Callable, inputs: list, outs: list) -> None:
        trigger(lock, None, controls, **quick).then(
            gpu(fn, duration), inputs, outs, show_progress_on=[status_md], **queue).then(
            unlock, [session], controls, **quick)

    # the upload check shows its progress on its own line; the model controls wait for its verdict
    upload.change(lambda: model_control_values(False), None, model_controls, **quick).then(
        on_upload, [upload], outputs + model_controls, show_progress_on=[upload_md], **private)
    chatbot.clear(on_clear, [session], outputs, show_progress="hidden", **private)
    run(analyze_btn.click, on_analyze, analysis_s, [session], outputs)
    for trigger in (question.submit, send_btn.click):
        run(trigger, on_question, question_s, [question, session], outputs + [question])
    for task_id, btn in task_btns.items():
        run(btn.click, on_task(task_id), task_s, [session], outputs)

    # `/analyze` for gradio_client: a file in, the report JSON out (hidden components carry the types).
    api_file = gr.File(visible=False, label="video")
    api_out = gr.JSON(visible=False, label="report")
    api_btn = gr.Button(visible=False)
    api_btn.click(gpu(api_analyze, api_s), [api_file], [api_out], api_name="analyze",
                  concurrency_id=GPU_QUEUE, concurrency_limit=1)
