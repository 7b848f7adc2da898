"""The chat tab: upload a crash video, get the six-task report on a timeline, ask follow-ups.

Six small parts, in the order a request meets them, and a seventh for ZeroGPU Spaces:

- `config`: `TabConfig`, the tab's settings from `app.py`'s flags and the environment;
- `resources`: what every session shares: the model (loaded once per process), decoded uploads,
  the example clips, the GPU checks;
- `state`: what a browser session keeps (`BrowserSession`) and what an event shows (`View`);
- `events`: upload, Analyze, a question, a task button, the `/analyze` API: plain generators
  yielding `View`s, no Gradio, so the tests drive them with the tiny random model;
- `display`: the Markdown and figures a `View` holds (status line, verdict, sections, timeline);
- `layout`: the Gradio components and their wiring (`build`), the only part importing Gradio;
- `zerogpu`: on a Hugging Face ZeroGPU Space, the model loaded at startup as ZeroGPU expects and
  each model call under `spaces.GPU` with a duration estimated from the clip and the tasks.

The real model needs a GPU: on a CPU-only machine the tab says so (and what to do instead) and
refuses model work, while the leaderboard tab works; so it does without the model packages
(torch, transformers, ...), where the app still starts and the tab says how to add them.
"""
