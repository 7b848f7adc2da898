"""Training: strategies, a tiny overfitting run, what changes, the saved adapter, resume, the CLI.

Every run uses the tiny random model on 1-second 64x64 clips written here, 2 frames per clip, the
tiny processor's visual budget and LoRA r=8, so a step takes a fraction of a second on a CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from crashchat.data import DataConfig, write_synthetic_split
from crashchat.synthetic import write_clip
from crashchat.tasks import TASKS, get_task
from crashchat.train import TrainConfig, checkpoints, main, resolve_strategy, serves, train

RECOGNITION = get_task("crash_recognition")


pytestmark = pytest.mark.usefixtures("one_thread")


def record(video: str, question: str, answer: str) -> dict:
    return {"video": [video], "source": "MM-AU-CAP",
            "conversations": [{"from": "human", "value": f"<video>\n{question}"}, {"from": "gpt", "value": answer}]}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """`root/videos/*.mp4`; `root/one/`: one crash-recognition example (train = val);
    `root/all/`: `write_synthetic_split`'s clips and train/val files for all six tasks."""
    root = tmp_path_factory.mktemp("train")
    write_clip(root / "videos" / "crash.mp4", seconds=1.0, scene="crash")
    write_clip(root / "videos" / "normal.mp4", seconds=1.0, scene="normal", seed=1)
    (root / "one").mkdir()
    for split in ("train", "val"):
        (root / "one" / RECOGNITION.split_file(split)).write_text(
            json.dumps([record("videos/crash.mp4", RECOGNITION.prompt, "Yes")]))
    write_synthetic_split(root / "all", clips=2, seconds=1.0)
    return root


def config(root: Path, out: Path, split: str = "one", **overrides) -> TrainConfig:
    kwargs = dict(
        strategy="independent:crash_recognition", out=out,
        split_dir=root / "all" / "splits" if split == "all" else root / split,
        videos_dir=root / "all" if split == "all" else root,
        model="tiny-random", max_steps=4, global_batch=1, lr=1e-2, lora_r=8, eval_steps=4, save_steps=4,
        log_steps=1, num_workers=0, seed=0, data=DataConfig(max_frames=2, token_budget=None),
    )
    kwargs.update(overrides)
    return TrainConfig(**kwargs)


# --- strategies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, tasks, group", [
    ("independent:crash_localization", ["crash_localization"], "perception"),
    ("independent:cause_reasoning", ["causal_reasoning"], "linguistic"),  # the split's file name works too
    ("homogeneous:perception", ["crash_localization", "pre_crash_localization"], "perception"),
    ("homogeneous:linguistic", ["crash_recognition", "crash_description", "causal_reasoning",
                                "prevention_reasoning"], "linguistic"),
    ("heterogeneous", [t.id for t in TASKS], "linguistic"),
    ("prevention_reasoning, crash_recognition", ["crash_recognition", "prevention_reasoning"], "linguistic"),
])
def test_strategy_picks_the_tasks_and_the_group_served(spec, tasks, group):
    chosen = resolve_strategy(spec)
    assert [t.id for t in chosen] == tasks
    assert serves(chosen) == group


@pytest.mark.parametrize("spec, message", [
    ("homogeneous:vision", "unknown group"),
    ("independent:crash", "unknown task"),
    ("mixed", "unknown task"),
    ("crash_recognition,crash_recognition", "listed twice"),
    ("weird:thing", "expected one of"),
])
def test_bad_strategy_is_a_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_strategy(spec)


def test_config_validates_flags(root, tmp_path):
    with pytest.raises(ValueError, match="--global-batch 3 is not a multiple of --batch-size 2"):
        config(root, tmp_path, global_batch=3, batch_size=2).accumulation(1)
    with pytest.raises(ValueError, match="--videos-dir"):
        config(root, tmp_path, videos_dir=tmp_path / "nowhere")
    assert TrainConfig("heterogeneous", root, root, tmp_path).lora_r == 64  # paper defaults


@pytest.mark.parametrize("strategy, epochs", [
    ("independent:crash_recognition", 20.0), ("crash_description", 20.0),  # one task: the independent scripts'
    ("homogeneous:perception", 10.0), ("heterogeneous", 10.0), ("crash_recognition,crash_description", 10.0),
])
def test_epochs_default_to_the_authors_per_strategy(root, tmp_path, strategy, epochs):
    assert TrainConfig(strategy, root, root, tmp_path).epochs == epochs
    assert TrainConfig(strategy, root, root, tmp_path, epochs=3).epochs == 3  # an explicit value wins


# --- the loss ---------------------------------------------------------------------------------------


def test_answer_loss_sums_the_models_token_losses_on_a_padded_batch(root):
    from crashchat.data import Collator, Encoder, TrainingData, TrainingRecord, model_inputs
    from crashchat.tiny import build_tiny_random
    from crashchat.train import answer_loss, attach_lora

    base, processor = build_tiny_random()
    peft_model = attach_lora(base, r=8, gradient_checkpointing=False).eval()
    encoder = Encoder(processor, token_budget=None)
    data = TrainingData([TrainingRecord("f", 0, root / "videos" / "crash.mp4", RECOGNITION.prompt, "Yes"),
                         TrainingRecord("f", 1, root / "videos" / "normal.mp4", RECOGNITION.prompt, "no collision.")],
                        encoder, DataConfig(max_frames=2))
    batch = model_inputs(Collator(encoder.pad_id)([data[0], data[1]]))
    with torch.no_grad():
        loss_sum, count = answer_loss(peft_model)(**batch)
        expected = peft_model(**batch).loss  # the mean over the batch's labelled tokens
    assert count == (batch["labels"][:, 1:] != -100).sum()
    torch.testing.assert_close(loss_sum / count, expected)


# --- one optimizer step, however it is split ---------------------------------------------------------

# Answers of very different lengths, so that averaging per example would weigh "Yes" far more.
ANSWERS = ["Yes", "No", "Drivers should keep a safe distance, watch the lane ahead and slow down before the junction.",
           "The white car in the left lane cut in too close."]


@pytest.fixture(scope="module")
def mixed(root) -> Path:
    """A split of four records, one per answer of `ANSWERS` (train = val)."""
    split = root / "mixed"
    split.mkdir()
    rows = [record(f"videos/{'crash' if i % 2 == 0 else 'normal'}.mp4", RECOGNITION.prompt, answer)
            for i, answer in enumerate(ANSWERS)]
    for name in ("train", "val"):
        (split / RECOGNITION.split_file(name)).write_text(json.dumps(rows))
    return split


def one_step(root: Path, split: Path, out: Path, **overrides) -> TrainConfig:
    """One optimizer step over the four records (global batch 4) at full lr, without dropout."""
    return config(root, out, split_dir=split, max_steps=1, global_batch=4, warmup_ratio=0.0, lora_dropout=0.0,
                  eval=False, **overrides)


def adapter_weights(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def token_losses(root: Path) -> tuple[list[float], list[int]]:
    """Each record's summed answer loss and answer tokens under the untrained adapter."""
    from crashchat.data import Collator, Encoder, TrainingData, TrainingRecord, model_inputs
    from crashchat.tiny import build_tiny_random
    from crashchat.train import answer_loss, attach_lora

    base, processor = build_tiny_random()
    net = answer_loss(attach_lora(base, r=8, dropout=0.0, gradient_checkpointing=False).eval())
    encoder = Encoder(processor, token_budget=None)
    videos = [root / "videos" / ("crash.mp4" if i % 2 == 0 else "normal.mp4") for i in range(len(ANSWERS))]
    data = TrainingData([TrainingRecord("f", i, v, RECOGNITION.prompt, a)
                         for i, (v, a) in enumerate(zip(videos, ANSWERS, strict=True))],
                        encoder, DataConfig(max_frames=2))
    sums, counts = [], []
    with torch.no_grad():
        for i in range(len(data)):
            loss_sum, count = net(**model_inputs(Collator(encoder.pad_id)([data[i]])))
            sums.append(float(loss_sum))
            counts.append(int(count))
    return sums, counts


def test_one_step_is_the_same_with_accumulation_batching_or_two_processes(root, mixed, tmp_path):
    """Global batch 4 as 1 process x 4 micro-batches, 1 process x 1 batch of 4, 2 processes x 2 micro-batches:
    the same loss (all answer tokens averaged), the same gradient norm and the same updated weights."""
    import os
    import subprocess
    import sys

    accumulated = train(one_step(root, mixed, tmp_path / "accumulated", batch_size=1))
    batched = train(one_step(root, mixed, tmp_path / "batched", batch_size=4))
    ddp_out = tmp_path / "ddp"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "crashchat", "train", "--strategy", "independent:crash_recognition", "--split-dir", str(mixed),
               "--videos-dir", str(root), "--out", str(ddp_out), "--model", "tiny-random", "--max-steps", "1",
               "--global-batch", "4", "--batch-size", "1", "--lr", "1e-2", "--lora-r", "8", "--lora-dropout", "0",
               "--warmup-ratio", "0", "--max-frames", "2", "--num-workers", "0", "--seed", "0", "--log-steps", "1",
               "--no-eval"]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert "(2 accumulation x 1 x 2 process(es))" in run.stdout
    ddp = json.loads((ddp_out / "crashchat_train.json").read_text())

    sums, counts = token_losses(root)
    token_mean = sum(sums) / sum(counts)
    per_example_mean = sum(s / n for s, n in zip(sums, counts, strict=True)) / len(sums)
    assert max(counts) >= 5 * min(counts), counts
    assert abs(per_example_mean - token_mean) > 1e-3, "the answers do not tell the two averages apart"
    losses = [accumulated.losses[0][1], batched.losses[0][1], ddp["losses"][0][1]]
    for loss in losses:
        assert loss == pytest.approx(token_mean, rel=1e-5), (losses, token_mean, per_example_mean)
    norms = [accumulated.grad_norms[0][1], batched.grad_norms[0][1], ddp["grad_norms"][0][1]]
    assert norms[1] == pytest.approx(norms[0], rel=1e-4) and norms[2] == pytest.approx(norms[0], rel=1e-4), norms

    # Adam's first update is lr * g / (|g| + eps), about lr * sign(g): the norm above checks the
    # gradient's scale, the weights its direction. Where |g| is near eps (1e-8) the update is
    # float noise times lr / eps, so only the elements that moved by ~lr (|g| > 99 eps, nearly
    # all of them) are compared closely.
    from crashchat.tiny import build_tiny_random

    lr, fresh = 1e-2, build_tiny_random()[0].state_dict()
    weights = [adapter_weights(tmp_path / name) for name in ("accumulated", "batched", "ddp")]
    assert all(other.keys() == weights[0].keys() for other in weights[1:])
    firm = total = 0
    for key, first in weights[0].items():
        if ".lora_A." in key:  # no gradient while B is zero: the seeded initialisation, unchanged
            assert all(torch.equal(other[key], first) for other in weights[1:]), key
            continue
        update = first if ".lora_B." in key else first - fresh[key.removeprefix("base_model.model.")]
        moved = update.abs() > 0.99 * lr
        firm, total = firm + int(moved.sum()), total + moved.numel()
        for other in weights[1:]:
            torch.testing.assert_close(other[key][moved], first[moved], atol=1e-6, rtol=0, msg=key)
    assert firm > 0.99 * total, (firm, total)


# --- a tiny run -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def overfit(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("overfit")
    return out, train(config(root, out, max_steps=8))


def test_a_few_steps_overfit_one_example(overfit):
    out, result = overfit
    losses = [loss for _, loss in result.losses]
    # Step 1 runs at warmup's lr 0. The tiny model's frozen lm_head (std 0.02) and final norm cap
    # its logits near 1, so the loss cannot go far below ~5 (from ln 512 = 6.2): "falls" is the test.
    assert len(losses) == 8 and losses[0] > losses[3] > losses[7], losses
    assert losses[-1] < losses[0] - 0.7, losses
    assert result.best_step == 8 and result.best_eval_loss < losses[0]
    summary = json.loads((out / "crashchat_train.json").read_text())
    assert summary["tasks"] == ["crash_recognition"] and summary["serves"] == "linguistic"
    assert summary["stopped"] == "max_steps" and summary["steps"] == 8
    assert list((out / "tensorboard").rglob("events.out.tfevents*")), "no TensorBoard log"


def test_only_lora_and_projector_weights_change(overfit):
    from crashchat.tiny import build_tiny_random

    _, result = overfit
    fresh = build_tiny_random()[0].state_dict()
    changed_lora = changed_projector = 0
    for name, tensor in result.model.base_model.model.state_dict().items():
        if ".lora_" in name:
            changed_lora += ".lora_B." in name and bool(tensor.abs().sum() > 0)  # B starts at zero
            continue
        if ".modules_to_save." in name:
            original = name.replace(".modules_to_save.default.", ".")
            changed_projector += not torch.equal(tensor.float(), fresh[original].float())
            continue
        original = name.replace(".base_layer.", ".").replace(".original_module.", ".")
        assert torch.equal(tensor, fresh[original]), f"{name} changed"
    assert changed_lora == 2 * 7  # 2 layers x q/k/v/o/gate/up/down
    assert changed_projector == 4  # readout.{0,2}.{weight,bias}


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # peft's call, as loading.py
def test_saved_adapter_reloads_with_identical_logits(overfit, root):
    from peft import PeftModel

    from crashchat.model import CrashChat
    from crashchat.tiny import build_tiny_random
    from crashchat.video import load_video

    out, result = overfit
    saved = {p.name for p in (out / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= saved
    base, processor = build_tiny_random()
    reloaded = PeftModel.from_pretrained(base, out / "adapter", adapter_name="linguistic").eval()
    clip = load_video(root / "videos" / "crash.mp4", max_frames=2)
    logits = []
    for model in (result.model.eval(), reloaded):
        chat = CrashChat(model=model, processor=processor, name="t", random_weights=True, device="cpu", groups=())
        logits.append(chat.logits(clip, RECOGNITION.prompt, group="linguistic"))
    torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=1e-5)


def test_analyze_loads_the_adapter(overfit, root, capsys):
    pytest.importorskip("crashchat.convert", reason="analyze's adapter loading lives in crashchat.convert")
    from crashchat.analysis import main as analyze
    from crashchat.loading import ModelConfig, load_model

    out, result = overfit
    chat = load_model(ModelConfig(name="tiny-random", linguistic=str(out / "adapter"), device="cpu"))
    from crashchat.video import load_video

    clip = load_video(root / "videos" / "crash.mp4", max_frames=2)
    trained = result.model.eval()
    from crashchat.model import CrashChat

    ref = CrashChat(model=trained, processor=chat.processor, name="t", random_weights=True, device="cpu", groups=())
    torch.testing.assert_close(chat.logits(clip, RECOGNITION.prompt, group="linguistic"),
                               ref.logits(clip, RECOGNITION.prompt, group="linguistic"), atol=1e-5, rtol=1e-5)
    report = out / "report.json"
    code = analyze([str(root / "videos" / "crash.mp4"), "--model", "tiny-random", "--linguistic",
                    str(out / "adapter"), "--tasks", "crash_recognition", "--max-new-tokens", "4",
                    "--json", str(report)])
    assert code == 0 and report.is_file()


@pytest.mark.parametrize("losses, bests, bad_evals", [
    # the lowest loss is the best, however small the gain; only gains over 0.001 reset the patience
    ([3.0, 2.9995, 2.999, 2.9985], [True, True, True, True], [0, 1, 2, 3]),
    ([3.0, 3.2, 2.5, 2.4995, 2.6], [True, False, True, True, False], [0, 1, 0, 1, 2]),
])
def test_best_is_the_lowest_val_loss_and_the_threshold_only_decides_stopping(losses, bests, bad_evals):
    from crashchat.train import judge_eval

    best, bad, seen = None, 0, []
    for loss in losses:
        new_best, bad = judge_eval(loss, best, bad, threshold=0.001)
        best = loss if new_best else best
        seen.append((new_best, bad))
    assert seen == list(zip(bests, bad_evals, strict=True))


# Per-example (summed answer loss, answer tokens) on a two-example val split at two checkpoints: a
# 100-token answer and a 1-token one. The mean over all answer tokens prefers step 50 (it got the long
# answer right); the authors' trainer, averaging per-batch losses, prefers step 100.
VAL = {50: [(100.0, 100, 1), (3.0, 1, 1)], 100: [(150.0, 100, 1), (1.0, 1, 1)]}


def _best_step(losses: dict[int, float]) -> int:
    from crashchat.train import judge_eval

    best, best_step, bad = None, None, 0
    for step, loss in losses.items():
        new_best, bad = judge_eval(loss, best, bad, threshold=0.001)
        if new_best:
            best, best_step = loss, step
    return best_step


def test_the_best_checkpoint_is_chosen_by_the_mean_of_batch_losses_as_the_authors():
    from crashchat.train import pool_batches, val_loss

    per_batch = {step: val_loss(pool_batches(micro, 1)) for step, micro in VAL.items()}
    by_tokens = {step: sum(s for s, _, _ in micro) / sum(t for _, t, _ in micro) for step, micro in VAL.items()}
    assert per_batch == {50: 2.0, 100: 1.25} and _best_step(per_batch) == 100
    assert _best_step(by_tokens) == 50  # the rule we had: another checkpoint
    # batches of two: one batch, whose loss is its mean over answer tokens
    assert val_loss(pool_batches(VAL[50], 2)) == pytest.approx(103 / 101)
    # a smaller last batch counts by its examples, as transformers' Trainer repeats each batch's loss
    assert val_loss([(4.0, 2, 2), (9.0, 3, 1)]) == pytest.approx((2 * 2.0 + 1 * 3.0) / 3)


def test_evaluate_pools_the_val_loader_into_eval_batches(root, tmp_path):
    """`_Run.evaluate` itself: micro-batches of one, pooled into --eval-batch examples."""
    import types

    from crashchat.train import _Run

    # four val examples, two eval batches of two: (100 + 3) / 101 and (4 + 6) / 4; over all tokens 113 / 105,
    # example by example 2.25
    stats = iter([(100.0, 100, 1), (3.0, 1, 1), (4.0, 2, 1), (6.0, 2, 1)])

    class Net:
        def __call__(self, **batch):
            loss, tokens, _ = next(stats)
            return torch.tensor(loss), torch.tensor(tokens)

        def eval(self):
            pass

        train = eval

    run = _Run.__new__(_Run)
    run.cfg = config(root, tmp_path, eval_batch=2)
    run.net, run.dtype, run.progress = Net(), torch.float32, types.SimpleNamespace(skipped_videos=[])
    run.accelerator = types.SimpleNamespace(device=torch.device("cpu"), reduce=lambda tensor, op: tensor)
    run.val_loader = [{"input_ids": torch.zeros(1, 3, dtype=torch.long), "skipped": []} for _ in range(4)]
    assert run.evaluate() == pytest.approx((103 / 101 + 10 / 4) / 2)
    with pytest.raises(ValueError, match="--eval-batch 3 is not a multiple of --batch-size 2"):
        config(root, tmp_path, eval_batch=3, batch_size=2, global_batch=24)


def test_early_stopping_on_the_val_loss_keeps_the_lowest(root, tmp_path):
    # A threshold no step can beat: every evaluation after the first is "no improvement" and
    # patience 2 stops at the third, yet the val loss falls (train = val) so the best is the last.
    result = train(config(root, tmp_path, max_steps=10, eval_steps=1, save_steps=10, patience=2, threshold=100.0,
                          lora_dropout=0.0))
    assert (result.stopped, result.steps, result.best_step) == ("early_stopping", 3, 3)
    assert [c.name for c in checkpoints(tmp_path)] == ["step-000003"]  # the stopping point is saved
    best = adapter_weights(tmp_path)
    final = {k: v for k, v in adapter_weights(tmp_path / "checkpoints" / "step-000003").items()}
    assert best.keys() == final.keys() and all(torch.equal(best[k], final[k]) for k in best)


def test_epochs_and_skip_bad_records_are_counted(root, tmp_path, capsys):
    split = tmp_path / "split"
    split.mkdir()
    good = record("videos/crash.mp4", RECOGNITION.prompt, "Yes")
    for name in ("train", "val"):
        (split / RECOGNITION.split_file(name)).write_text(json.dumps([good, record("videos/gone.mp4", "Q", "No")]))
    with pytest.raises(ValueError, match=r"_train.json: record 1: video videos/gone.mp4 not found"):
        train(config(root, tmp_path / "strict", split_dir=split))
    result = train(config(root, tmp_path / "lenient", split_dir=split, max_steps=None, epochs=2,
                          data=DataConfig(max_frames=2, token_budget=None, skip_bad=True)))
    assert (result.stopped, result.steps, result.train_examples) == ("epochs", 2, 1)
    assert len(result.skipped_records) == 2 and "record 1" in result.skipped_records[0]
    assert "2 bad record(s) skipped" in capsys.readouterr().out


# --- resume -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["one example a step", "accumulated, stopped mid-epoch"])
def test_resume_continues_from_the_last_checkpoint_exactly(root, mixed, tmp_path, capsys, case):
    # No dropout, so the only state is weights, optimizer, schedule and data position.
    cfg = dict(max_steps=4, save_steps=2, eval=False, lora_dropout=0.0)
    if case == "one example a step":
        cfg.update(split="all", strategy="homogeneous:perception")
    else:  # 4 records, 2 per step: the step-3 checkpoint is in the middle of epoch 1
        cfg.update(split_dir=mixed, global_batch=2, max_steps=5, save_steps=3)
    full = train(config(root, tmp_path / "full", **cfg))
    saved = [c.name for c in checkpoints(tmp_path / "full")]
    expected = {k: v.clone() for k, v in full.model.state_dict().items() if ".lora_" in k or "modules_to_save" in k}

    # A run "killed" after its first checkpoint, then resumed.
    out = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full" / "checkpoints" / saved[0], out / "checkpoints" / saved[0])
    resumed = train(config(root, out, resume=True, **cfg))
    assert "resumed from" in capsys.readouterr().out
    first = int(saved[0].split("-")[1]) + 1
    assert resumed.steps == cfg["max_steps"] and [s for s, _ in resumed.losses] == list(range(first, resumed.steps + 1))
    assert resumed.losses == full.losses[first - 1:]
    for key, value in resumed.model.state_dict().items():
        if key in expected:
            torch.testing.assert_close(value, expected[key], atol=1e-6, rtol=1e-6)


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_errors_are_one_line_exit_2(root, tmp_path, capsys):
    common = ["--split-dir", str(root / "one"), "--videos-dir", str(root), "--out", str(tmp_path / "run"),
              "--model", "tiny-random"]
    assert main(["--strategy", "homogeneous:vision", *common]) == 2
    assert "unknown group" in capsys.readouterr().err
    assert main(["--strategy", "homogeneous:perception", *common]) == 2  # "one" has no perception files
    err = capsys.readouterr().err
    assert "crashchat_dada_video_total_crash_localization_val.json: no such split file" in err
    assert "--no-eval" in err and "Traceback" not in err
    (tmp_path / "run" / "checkpoints" / "step-000001").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "step-000001" / "trainer_state.json").write_text("{}")
    assert main(["--strategy", "independent:crash_recognition", *common]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_cli_flags_are_the_config_fields_with_their_docstrings():
    from dataclasses import MISSING, fields

    from crashchat.flags import field_docs
    from crashchat.train import build_parser

    actions = {action.dest: action for action in build_parser()._actions if action.dest != "help"}
    expected = {}
    for cls in (TrainConfig, DataConfig):
        docs = field_docs(cls)
        expected.update({f.name: (f, docs.get(f.name)) for f in fields(cls) if f.name != "data"})
    assert actions.keys() == expected.keys()
    for name, (f, doc) in expected.items():
        assert doc and actions[name].help.replace("%%", "%") == doc, name
        assert actions[name].option_strings[0] == "--" + name.replace("_", "-")
        assert actions[name].required == (f.default is MISSING and f.default_factory is MISSING)
        if f.default is not MISSING:
            assert actions[name].default == f.default, name
    assert actions["fps"].default == DataConfig().fps


def test_cli_flags_build_the_config(root, tmp_path):
    from crashchat.train import build_parser, config_from_args

    required = ["--strategy", "independent:crash_recognition", "--split-dir", str(root / "one"),
                "--videos-dir", str(root), "--out", str(tmp_path)]
    parse = build_parser().parse_args
    assert config_from_args(parse(required)) == TrainConfig("independent:crash_recognition", root / "one", root,
                                                            tmp_path)
    cfg = config_from_args(parse([*required, "--epochs", "3", "--no-eval", "--no-bf16", "--skip-bad", "--resume",
                                  "--token-budget", "none", "--fps", "5", "--model", "tiny-random"]))
    assert (cfg.epochs, cfg.eval, cfg.bf16, cfg.resume, cfg.model) == (3, False, False, True, "tiny-random")
    assert cfg.data == DataConfig(fps=5, token_budget=None, skip_bad=True)
    assert config_from_args(parse(required)).epochs == 20  # independent: the authors' 20


def test_cli_trains_and_reports_the_adapter(root, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["--strategy", "independent:crash_recognition", "--split-dir", str(root / "one"),
                 "--videos-dir", str(root / "videos"), "--out", str(out), "--model", "tiny-random",
                 "--max-steps", "1", "--global-batch", "1", "--lora-r", "8", "--max-frames", "2",
                 "--num-workers", "0", "--no-eval"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"--linguistic {out / 'adapter'}" in printed and "samples/s" in printed
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
