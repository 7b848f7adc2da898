"""The chat tab on a ZeroGPU Space (`crashchat.chat.zerogpu`), with a STAND-IN `spaces` module.

The real `spaces` package only works on a Hugging Face ZeroGPU Space (it needs the Space's GPU
scheduler). These tests write a stand-in `spaces` package into a temporary folder and put it on
`sys.path`: it attaches no GPU and runs each function in the same process, but it records what the
real one is given: which functions are decorated with `spaces.GPU(duration=...)`, and the
duration each call asks for, computed (as the real one does) by calling `duration` with the
call's own arguments before the function runs; and, as the real one sends them to and from its
forked GPU worker, it pickles the arguments and every result. The GPU move is replaced by a move
to "cpu:0". The compiled fast path being off on ZeroGPU is tested in `tests/test_batching.py`.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from crashchat.chat import config, layout, resources, zerogpu
from crashchat.chat.state import BrowserSession
from crashchat.tasks import TASK_IDS

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

STAND_IN = '''
"""STAND-IN for Hugging Face's `spaces` package, written by tests/test_zerogpu.py. NOT the real one:
it attaches no GPU and runs the function in this process; it records each `GPU(duration=...)`
decoration and the duration each call asks, and pickles arguments and results as the real one does."""
import functools
import inspect
import pickle

STAND_IN = True
decorated = []  # names of the decorated functions
asked = []      # (function name, seconds asked) per call, in call order


def crossed(value):
    """What comes out of a process boundary: the real one runs the function in a forked worker,
    its arguments and each result pickled across."""
    return pickle.loads(pickle.dumps(value))


def GPU(task=None, *, duration=None, size=None):
    def decorate(fn):
        def ask(args, kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            assert isinstance(seconds, int) and seconds > 0, f"duration {seconds!r} for {fn.__name__}"
            asked.append((fn.__name__, seconds))
            return crossed((args, kwargs))

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                args, kwargs = ask(args, kwargs)
                for value in fn(*args, **kwargs):
                    yield crossed(value)
        else:
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                args, kwargs = ask(args, kwargs)
                return crossed(fn(*args, **kwargs))
        wrapper.stand_in_gpu = True
        decorated.append(fn.__name__)
        return wrapper

    return decorate(task) if task is not None else decorate
'''


@pytest.fixture
def stand_in_spaces(tmp_path, monkeypatch):
    """A ZeroGPU Space as far as the app can tell: SPACES_ZERO_GPU set and the stand-in importable."""
    folder = tmp_path / "stand_in"
    (folder / "spaces").mkdir(parents=True)
    (folder / "spaces" / "__init__.py").write_text(textwrap.dedent(STAND_IN))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setattr(zerogpu, "ZERO_GPU_DEVICE", "cpu:0")  # no CUDA here: the move is real, to cpu:0
    monkeypatch.setattr(resources, "_MODELS", {})  # a fresh process: nothing loaded yet
    import spaces

    assert spaces.STAND_IN and zerogpu.zero_gpu()
    yield spaces
    sys.modules.pop("spaces", None)


@pytest.fixture
def cfg(tmp_path) -> config.TabConfig:
    from crashchat.synthetic import EXAMPLES, write_clip

    for name, scene, _seconds, seed in EXAMPLES:  # small stand-ins for the app's example clips
        write_clip(tmp_path / "examples" / name, seconds=1.0, scene=scene, seed=seed)
    return config.TabConfig(model="tiny-random", max_new_tokens=4, examples_dir=tmp_path / "examples")


def test_off_zero_gpu_nothing_is_wrapped_and_spaces_is_never_imported(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.delitem(sys.modules, "spaces", raising=False)

    def fn():
        return 1

    assert not zerogpu.zero_gpu()
    assert zerogpu.gpu(fn, lambda: 1) is fn and "spaces" not in sys.modules


def test_zero_gpu_loads_at_startup_on_the_cpu_and_decorates_every_model_call(stand_in_spaces, cfg, crash_clip,
                                                                              tmp_path, monkeypatch):
    import gradio as gr

    from crashchat import loading
    from crashchat.synthetic import write_clip

    loads = []
    real_load = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda c: loads.append(c.device) or real_load(c))
    with gr.Blocks() as demo:
        layout.build(config=cfg)

    # weights loaded once, at build time (before any request), on the CPU, then moved
    model = resources.loaded_model("tiny-random")
    assert loads == ["cpu"] and model is not None and model.device == "cpu:0"
    assert not model.uses_static_cache()  # SPACES_ZERO_GPU: no torch.compile

    # every event in the model queue is decorated (Analyze, Send, Enter, six task buttons, /analyze)
    gpu_fns = [f for f in demo.fns.values() if f.concurrency_id == layout.GPU_QUEUE]
    assert len(gpu_fns) == 10 and all(getattr(f.fn, "stand_in_gpu", False) for f in gpu_fns)
    others = [f for f in demo.fns.values() if f.fn is not None and f.concurrency_id != layout.GPU_QUEUE]
    assert others and not any(getattr(f.fn, "stand_in_gpu", False) for f in others)
    assert sorted(set(stand_in_spaces.decorated)) == ["api_analyze", "ask", "on_analyze", "on_question"]

    def event(name):
        return next(f.fn for f in gpu_fns if f.fn.__wrapped__.__name__ == name)

    no_progress = gr.Progress()  # what Gradio passes (outside a request it reports nothing)

    # each call asks for a duration computed from its own clip and tasks, before it runs
    short, long = str(crash_clip), str(write_clip(tmp_path / "long.mp4", seconds=6.0, scene="crash"))
    session = BrowserSession(video=short)
    views = list(event("on_analyze")(session, no_progress))
    assert "Done" in str(views[-1])
    list(event("on_question")("What happened?", session, no_progress))
    list(event("ask")(session, no_progress))
    report = event("api_analyze")(long)
    assert set(report["tasks"]) == set(TASK_IDS)
    list(event("on_analyze")(BrowserSession(video=None), no_progress))  # nothing to analyse: the least asked

    frames = {p: len(resources.open_clip(p, cfg).frames) for p in (short, long)}
    assert frames[long] > frames[short]

    def expect(video_frames, batches):
        return zerogpu.COST.seconds(video_frames, batches, cfg.max_new_tokens, cfg.time_limit_s)

    assert stand_in_spaces.asked == [
        ("on_analyze", expect(frames[short], [4, 2])),
        ("on_question", expect(frames[short], [1])),
        ("ask", expect(frames[short], [1])),
        ("api_analyze", expect(frames[long], [4, 2])),
        ("on_analyze", zerogpu.COST.min_s),
    ]


def test_durations_grow_with_the_clip_the_tasks_and_the_answer_length_and_stop_at_the_time_limit():
    cost = zerogpu.GpuCost()
    report, question = zerogpu.analysis_batches(TASK_IDS), [1]
    assert report == [4, 2]
    assert cost.seconds(96, report, 256, 300) > cost.seconds(30, report, 256, 300) > cost.seconds(30, question, 256, 300)
    assert cost.seconds(96, report, 512, 300) > cost.seconds(96, report, 256, 300)
    assert cost.seconds(96, report, 4096, 120) == 120 + cost.start_s  # the request stops at its time limit
    assert cost.seconds(0, question, 1, 300) == cost.min_s
    assert all(isinstance(cost.seconds(f, report, 256, 300), int) for f in (0, 1, 37, 96))


def test_unreadable_or_missing_video_asks_the_least(tmp_path):
    cfg = config.TabConfig(model="tiny-random")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert resources.clip_frames(cfg, str(broken)) == 0
    assert resources.clip_frames(cfg, str(tmp_path / "gone.mp4")) == 0
    assert resources.clip_frames(cfg, None) == 0
    assert zerogpu.request_seconds(cfg, 0, [4, 2]) == zerogpu.COST.min_s


def test_a_model_that_cannot_load_at_startup_leaves_the_app_up(stand_in_spaces, cfg, monkeypatch, capsys):
    import gradio as gr

    from crashchat.chat import zerogpu as zg
    from crashchat.weights import ModelLoadError

    def fail(name):
        raise ModelLoadError("cannot fetch KDliang/crashchat from the Hugging Face Hub (OSError)")

    monkeypatch.setattr(zg, "load_model", fail)
    with gr.Blocks():
        layout.build(config=cfg)
    assert "could not be loaded at startup: cannot fetch KDliang/crashchat" in capsys.readouterr().err
