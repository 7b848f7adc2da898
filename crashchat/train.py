"""LoRA instruction tuning with task decoupling and grouping (the paper's training strategies).

    python -m crashchat train --strategy heterogeneous --split-dir SPLITS --videos-dir DATA --out runs/het
    accelerate launch -m crashchat train --strategy homogeneous:perception ...   # several GPUs (DDP)

A strategy picks the tasks whose `crashchat_dada_video_total_<name>_{train,val}.json` files are
mixed: `independent:<task>` (one task), `homogeneous:linguistic` / `homogeneous:perception` (one
group), `heterogeneous` (all six) or an explicit comma-separated task list. The result,
`OUT/adapter`, is a native peft adapter with its own projector copy: the adapter that `analyze`
loads with `--linguistic OUT/adapter` or `--perception OUT/adapter`, as `OUT/crashchat_train.json`
says (the paper serves the linguistic tasks from the heterogeneous model and the perception tasks
from the homogeneous perception model).

The loop is a plain accelerate loop (`_Run`: data, model, resume, fit, finish): LoRA on the
LLM's projections, the projector trained, the vision encoder and the LLM frozen; AdamW, cosine
schedule with warmup; the loss of a step is the mean over all answer tokens of its examples, on
every process and micro-batch (the authors'); evaluation on the val split every `eval_steps`
(the mean of per-batch losses, as the authors' trainer), keeping the lowest-loss adapter, with
early stopping; a checkpoint every `save_steps` that
`--resume` continues from (trainable weights, optimizer, scheduler, RNG and data position).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from crashchat.data import IGNORE_INDEX, DataConfig, DataError
from crashchat.tasks import GROUPS, TASK_IDS, TASKS, Task, get_task, tasks_in_group

STRATEGIES = ("independent:<task>", "homogeneous:linguistic", "homogeneous:perception", "heterogeneous",
              "<task>,<task>,...")
STATE_FILE = "trainer_state.json"
SUMMARY_FILE = "crashchat_train.json"


# --- strategies -----------------------------------------------------------------------------------


def resolve_strategy(spec: str) -> tuple[Task, ...]:
    """The tasks a strategy trains on, in the table's order.

    >>> [t.id for t in resolve_strategy("homogeneous:perception")]
    ['crash_localization', 'pre_crash_localization']
    >>> len(resolve_strategy("heterogeneous"))
    6
    >>> [t.id for t in resolve_strategy("independent:cause_reasoning")]
    ['causal_reasoning']
    """
    spec = spec.strip()
    if spec == "heterogeneous":
        return TASKS
    kind, _, arg = spec.partition(":")
    if kind == "homogeneous" and arg:
        if arg not in GROUPS:
            raise ValueError(f"--strategy {spec}: unknown group {arg!r}; choose from {', '.join(GROUPS)}")
        return tasks_in_group(arg)  # type: ignore[arg-type]
    if kind == "independent" and arg:
        return (_task(arg, spec),)
    if ":" in spec or not spec:
        raise ValueError(f"--strategy {spec!r}: expected one of {', '.join(STRATEGIES)}")
    names = [n.strip() for n in spec.split(",") if n.strip()]
    chosen = {_task(n, spec).id for n in names}
    if len(chosen) != len(names):
        raise ValueError(f"--strategy {spec}: a task is listed twice")
    return tuple(t for t in TASKS if t.id in chosen)


def _task(name: str, spec: str) -> Task:
    try:
        return get_task(name)
    except KeyError:
        raise ValueError(f"--strategy {spec}: unknown task {name!r}; tasks: {', '.join(TASK_IDS)}") from None


def serves(tasks: Sequence[Task]) -> str:
    """The `analyze` flag the adapter is meant for: its tasks' group, or linguistic when mixed.

    Mixed strategies (heterogeneous) serve the linguistic tasks in the paper's best configuration.

    >>> serves(resolve_strategy("heterogeneous")), serves(resolve_strategy("homogeneous:perception"))
    ('linguistic', 'perception')
    """
    groups = {t.group for t in tasks}
    return groups.pop() if len(groups) == 1 else "linguistic"


def default_epochs(tasks: Sequence[Task]) -> float:
    """The authors' epochs: 20 for their independent (one-task) scripts, 10 for the mixtures.

    >>> [default_epochs(resolve_strategy(s)) for s in ("independent:crash_recognition", "heterogeneous")]
    [20.0, 10.0]
    """
    return 20.0 if len(tasks) == 1 else 10.0


def pool_batches(micro_batches, size: int) -> list[tuple[float, float, int]]:
    """Consecutive micro-batches' (summed answer loss, answer tokens, examples) pooled into batches of
    `size` examples, the last one possibly smaller (as a data loader of that batch size cuts them).

    >>> pool_batches([(2.0, 4, 1), (1.0, 1, 1), (6.0, 2, 1)], 2)
    [(3.0, 5, 2), (6.0, 2, 1)]
    """
    pooled: list[tuple[float, float, int]] = []
    loss = tokens = examples = 0
    for batch_loss, batch_tokens, batch_examples in micro_batches:
        loss, tokens, examples = loss + batch_loss, tokens + batch_tokens, examples + batch_examples
        if examples >= size:
            pooled.append((loss, tokens, examples))
            loss = tokens = examples = 0
    if examples:
        pooled.append((loss, tokens, examples))
    return pooled


def batch_loss_totals(batches) -> tuple[float, int]:
    """(sum over batches of examples x the batch's mean answer-token loss, examples): `val_loss`'s
    numerator and denominator, which processes add up."""
    return (sum(n * (loss / max(tokens, 1)) for loss, tokens, n in batches), sum(n for _, _, n in batches))


def val_loss(batches) -> float:
    """The val loss as the authors' trainer computes it: transformers' Trainer repeats each batch's loss
    (its mean over the batch's answer tokens) once per example and averages, so batches of equal size
    count equally, whatever their answers' lengths. Not the mean over all answer tokens of the split,
    which lets long answers (prevention reasoning) outweigh short ones (Yes/No) and can pick another
    checkpoint.

    >>> val_loss([(100.0, 100, 1), (3.0, 1, 1)])  # a 100-token answer at 1.0 a token, a 1-token one at 3.0
    2.0
    """
    total, examples = batch_loss_totals(batches)
    return total / max(examples, 1)


def judge_eval(loss: float, best: float | None, bad_evals: int, threshold: float) -> tuple[bool, int]:
    """(is `loss` the new best, evaluations without improvement) after one evaluation.

    As the authors' trainer (transformers' `EarlyStoppingCallback` with `metric_for_best_model`):
    the best checkpoint is the lowest val loss, however small the gain; the patience counter is
    reset only by a gain of more than `threshold` over the best so far.

    >>> judge_eval(2.9995, best=3.0, bad_evals=0, threshold=0.001)  # new best, but no real improvement
    (True, 1)
    >>> judge_eval(2.5, best=3.0, bad_evals=2, threshold=0.001), judge_eval(3.1, best=3.0, bad_evals=0, threshold=0.001)
    ((True, 0), (False, 1))
    """
    improved = best is None or best - loss > threshold
    return best is None or loss < best, 0 if improved else bad_evals + 1


# --- configuration --------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """One training run; the defaults are the paper's settings (`reference/model.md`)."""

    strategy: str
    """Which tasks are mixed: `independent:<task>`, `homogeneous:linguistic`, `homogeneous:perception`,
    `heterogeneous`, or a comma-separated list of tasks."""
    split_dir: Path
    """Folder of `crashchat_dada_video_total_<name>_{train,val}.json`."""
    videos_dir: Path
    """Folder the records' `video` paths are relative to (or the folder of the mp4s itself)."""
    out: Path
    """Run folder: `adapter/` (the result), `checkpoints/`, `tensorboard/`, `crashchat_train.json`."""
    model: Literal["videollama3", "tiny-random"] = "videollama3"
    """`videollama3` (the base, `--base` or the hub's) or `tiny-random` (CPU runs in seconds)."""
    base: str | None = None
    """The base, as `analyze`'s `--base`: authors-eval (default, the base the authors evaluated on, so
    adapters trained here serve on the base they are evaluated with), videollama3-7b, a hub id or
    hub_id/subfolder, or a local dir (native or the authors' layout, converted once). The authors
    trained from their `ckpt/videollama3_baseline`."""
    cache_dir: str | None = None
    """Where a converted base goes (see `crashchat.loading.ModelConfig`)."""
    lora_r: int = 64
    """LoRA rank (on q/k/v/o/gate/up/down of the LLM only; `crashchat.weights.LORA_TARGET`)."""
    lora_alpha: int = 16
    """LoRA scaling numerator: the update is scaled by alpha / r."""
    lora_dropout: float = 0.05
    """Dropout on the input of the LoRA branches."""
    lr: float = 1e-5
    """Learning rate of the LoRA weights and the projector."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
    """Linear warmup over this fraction of the steps, then cosine decay to zero."""
    epochs: float | None = None
    """Passes over the training data; by default 20 for a one-task strategy (`independent:<task>`) and
    10 for the others, as in the authors' scripts."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides `epochs` for the schedule too)."""
    global_batch: int = 24
    """Examples per optimizer step over all processes (batch_size x processes x accumulation)."""
    batch_size: int = 1
    """Clips per forward pass on each process."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0 turns it off)."""
    bf16: bool = True
    """bf16 weights and autocast on GPU (ignored on CPU, which trains in float32)."""
    gradient_checkpointing: bool = True
    """Recompute activations during the backward pass: less memory, more compute."""
    eval: bool = True
    """Evaluate on the val split (the `_val.json` files), keep the lowest-loss adapter and stop early."""
    eval_steps: int = 50
    """Optimizer steps between evaluations on the val split."""
    eval_batch: int = 24
    """Val examples per batch (the authors' per_device_eval_batch_size; a multiple of --batch-size): the val
    loss is the mean of the batches' losses, each the mean over its answer tokens, weighted by its examples,
    as transformers' Trainer computes eval_loss (`val_loss`)."""
    save_steps: int = 50
    """Optimizer steps between checkpoints (the last step is always saved)."""
    log_steps: int = 10
    """Optimizer steps between log lines (terminal and TensorBoard)."""
    patience: int = 3
    """Evaluations in a row that do not beat the best val loss by more than `threshold` before stopping."""
    threshold: float = 0.001
    """Early stopping only: how much an eval loss must beat the best by to reset the patience (the best
    adapter is simply the lowest val loss)."""
    keep_checkpoints: int = 2
    """Checkpoints kept in `OUT/checkpoints` (the oldest are deleted)."""
    resume: bool = False
    """Continue from the last checkpoint in `OUT/checkpoints` (keep the other flags unchanged)."""
    seed: int = 42
    """Seeds the data order (per epoch), LoRA initialisation and dropout."""
    num_workers: int = 2
    """Data-loader processes per GPU process (video decoding runs there)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Frame sampling, visual budget and bad-record handling."""

    def __post_init__(self):
        self.split_dir, self.videos_dir, self.out = Path(self.split_dir), Path(self.videos_dir), Path(self.out)
        resolve_strategy(self.strategy)  # fail before any loading
        if self.model not in ("videollama3", "tiny-random"):
            raise ValueError(f"--model {self.model}: training starts from 'videollama3' (the base) or 'tiny-random'")
        for name in ("lora_r", "lora_alpha", "global_batch", "batch_size", "eval_steps", "eval_batch", "save_steps",
                     "log_steps", "patience", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.eval_batch % self.batch_size:
            raise ValueError(f"--eval-batch {self.eval_batch} is not a multiple of --batch-size {self.batch_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be at least 1, got {self.max_steps}")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.epochs is None:
            self.epochs = default_epochs(self.tasks)
        if self.lr <= 0 or self.epochs <= 0:
            raise ValueError("--lr and --epochs must be positive")
        if not self.split_dir.is_dir():
            raise ValueError(f"--split-dir {self.split_dir}: no such directory")
        if not self.videos_dir.is_dir():
            raise ValueError(f"--videos-dir {self.videos_dir}: no such directory")

    @property
    def tasks(self) -> tuple[Task, ...]:
        return resolve_strategy(self.strategy)

    def accumulation(self, processes: int) -> int:
        """Micro-batches per optimizer step so that the global batch is kept."""
        per_step = self.batch_size * processes
        if self.global_batch % per_step:
            raise ValueError(f"--global-batch {self.global_batch} is not a multiple of --batch-size {self.batch_size}"
                             f" x {processes} process(es)")
        return self.global_batch // per_step

    def to_json(self) -> dict:
        out = asdict(self)
        for key in ("split_dir", "videos_dir", "out"):
            out[key] = str(out[key])
        return out


@dataclass
class TrainResult:
    """What a finished run reports (also written to `OUT/crashchat_train.json`)."""

    adapter: str
    serves: str
    """`linguistic` or `perception`: pass the adapter to `analyze --<serves>`."""
    tasks: list[str]
    steps: int
    stopped: str
    """`max_steps`, `epochs` or `early_stopping`."""
    best_eval_loss: float | None
    best_step: int | None
    last_train_loss: float | None
    train_examples: int
    val_examples: int
    skipped_records: list[str]
    skipped_videos: list[str]
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, mean training loss of the optimizer steps since the previous log line)."""
    grad_norms: list[tuple[int, float]] = field(default_factory=list)
    """(step, gradient norm of that step before clipping), at each log line."""
    model: object = field(default=None, repr=False, compare=False)
    """The trained peft model, in memory (for tests and notebooks; not written to JSON)."""

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "model"}


# --- model ----------------------------------------------------------------------------------------


def load_base(cfg: TrainConfig, device: str):
    """The frozen base and its processor (bf16 on GPU), from `crashchat.loading`."""
    from crashchat.loading import ModelConfig, load_model
    from crashchat.tiny import build_tiny_random

    if cfg.model == "tiny-random" and cfg.base is None:
        model, processor = build_tiny_random()  # the default seed: the base `analyze` rebuilds
        return model.to(device), processor
    loaded = load_model(ModelConfig(name="videollama3", base=cfg.base, device=device, cache_dir=cfg.cache_dir))
    model = loaded.model
    if not (cfg.bf16 and device.startswith("cuda")):
        model = model.float()
    return model, loaded.processor


def attach_lora(base, *, r: int = 64, alpha: int = 16, dropout: float = 0.05, gradient_checkpointing: bool = True):
    """Wrap the base with a fresh trainable adapter (LoRA on the LLM, projector copy trained).

    Trainable weights are kept in float32 even on a bf16 base: at lr 1e-5 a bf16 weight would
    round most updates away (DeepSpeed's bf16 mode, which the authors used, keeps fp32 masters).
    """
    import warnings

    from peft import get_peft_model

    from crashchat.weights import lora_config

    with warnings.catch_warnings():
        # transformers 5.2x renamed gradient checkpointing to activation checkpointing; the old
        # name still works on every version this project supports (5.17 on the GPU image).
        warnings.simplefilter("ignore", FutureWarning)
        if gradient_checkpointing:
            # Non-reentrant checkpointing needs no input grads, so the frozen embeddings stay frozen.
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = get_peft_model(base, lora_config(r=r, alpha=alpha, dropout=dropout))
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    return model


def trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _answer_loss_module():
    import torch
    import torch.nn.functional as F

    class AnswerLoss(torch.nn.Module):
        """The causal-LM loss summed over the answer tokens, with logits computed only there.

        The answer is a few tokens after ~10k video tokens; the full logits of a 152k vocabulary
        would be 3 GB in bf16 per clip (twice that once upcast for the loss) for nothing. Returns
        the sum, not the mean, so that the training step can divide by the answer tokens of the
        whole optimizer step (`optimizer_step`); sum / count equals `model(**batch).loss`
        (tested). A module, so that DDP/FSDP wrap it and its forward is what they see.
        """

        def __init__(self, peft_model):
            super().__init__()
            self.peft = peft_model

        def forward(self, labels, **inputs):
            causal_lm = self.peft.get_base_model()  # LoRA layers are injected in place
            hidden = causal_lm.model(**inputs, use_cache=False).last_hidden_state
            targets = labels[:, 1:]
            keep = targets != IGNORE_INDEX
            logits = causal_lm.lm_head(hidden[:, :-1][keep]).float()
            return F.cross_entropy(logits, targets[keep], reduction="sum"), keep.sum()

    return AnswerLoss


def answer_loss(peft_model):
    """`peft_model` wrapped so that `wrapped(**batch)` returns (summed answer loss, answer tokens)."""
    return _answer_loss_module()(peft_model)


def micro_batch_backward(accelerator, net, batch: dict, dtype, *, sync: bool):
    """Forward and backward of one micro-batch; returns its summed answer loss and answer tokens.

    The gradients it adds are those of the *sum* of its token losses: `optimizer_step` divides
    them once the whole step's token count is known. `sync=False` (every micro-batch but the
    step's last) keeps DDP from all-reducing gradients that are still being accumulated.
    """
    import contextlib

    with contextlib.nullcontext() if sync else accelerator.no_sync(net):
        loss_sum, tokens = net(**_to_device(batch, accelerator.device, dtype))
        accelerator.backward(loss_sum)
    return loss_sum.detach().float(), tokens.detach()


def optimizer_step(accelerator, net, optimizer, loss_sum, tokens, max_grad_norm: float) -> tuple[float, float]:
    """End one optimizer step whose micro-batches summed `loss_sum` over `tokens` answer tokens here.

    The step's loss is the authors': the sum of the token losses of all its examples (every
    micro-batch, every process) divided by their number, so every answer token weighs the same
    whatever its example (a 2-token "Yes" no longer outweighs a 40-token reasoning answer). The
    gradients hold this process's summed token losses, averaged over processes by DDP; scaling
    them by processes / all tokens gives exactly the gradient of that loss, whatever the split
    into processes and micro-batches (tested). Returns the step's loss and its gradient norm
    before clipping (`max_grad_norm` 0: no clipping).
    """
    import torch

    total, count = accelerator.reduce(torch.stack([loss_sum.float(), tokens.float()]), "sum").tolist()
    count = max(count, 1.0)
    for param in net.parameters():
        if param.grad is not None:
            param.grad.mul_(accelerator.num_processes / count)  # a float: works on FSDP's sharded grads too
    norm = accelerator.clip_grad_norm_(net.parameters(), max_grad_norm or float("inf"))
    optimizer.step()
    optimizer.zero_grad()
    return total / count, float(norm)


def _to_device(batch: dict, device, dtype) -> dict:
    import torch

    return {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device))
            for k, v in batch.items() if k != "skipped"}


# --- checkpoints ----------------------------------------------------------------------------------


def checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first (the state file is written last)."""
    root = out / "checkpoints"
    found = [p for p in root.glob("step-*") if (p / STATE_FILE).is_file()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_adapter(accelerator, net, target: Path) -> None:
    """The adapter in the native peft layout that `analyze` loads (adapter + projector copy)."""
    unwrapped = accelerator.unwrap_model(net).peft
    # gathers full weights under FSDP; keys lose the loss wrapper's `peft.` prefix
    state = {k.removeprefix("peft."): v for k, v in accelerator.get_state_dict(net).items()}
    if accelerator.is_main_process:
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        # save_embedding_layers=False: what peft's "auto" decides here (no embedding layer is a LoRA
        # target, the vocabulary is not resized), without asking the Hub for the base's config.json
        unwrapped.save_pretrained(tmp, state_dict=state, safe_serialization=True, save_embedding_layers=False)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # never leave a half-written adapter where analyze would find it
    accelerator.wait_for_everyone()


# --- the loop -------------------------------------------------------------------------------------


@dataclass
class _Progress:
    """Counters saved with each checkpoint so that `--resume` continues where the run stopped."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    best_eval_loss: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    last_eval_step: int | None = None
    skipped_videos: list[str] = field(default_factory=list)


@dataclass
class _Step:
    """What one optimizer step reports."""

    loss: float
    """Mean over all answer tokens of the step's examples, on every process."""
    grad_norm: float
    lr: float
    """The learning rate the step used."""
    examples: int
    """Examples in the step, all processes (the epoch's last step may hold fewer than the global batch)."""


@dataclass
class _Window:
    """The steps since the last log line: their mean loss and throughput."""

    loss: float = 0.0
    steps: int = 0
    examples: int = 0
    start: float = field(default_factory=time.perf_counter)

    def add(self, step: _Step) -> None:
        self.loss, self.steps, self.examples = self.loss + step.loss, self.steps + 1, self.examples + step.examples


def train(cfg: TrainConfig) -> TrainResult:
    """Run one training strategy to the end (or early stop); see the module docstring."""
    import torch

    threads = torch.get_num_threads()
    if cfg.model == "tiny-random" and not torch.cuda.is_available():
        # The tiny model's ops are too small to gain from intra-op threads, and on a busy CPU
        # OpenMP's spin-waiting made them 10-50x slower (measured: 0.12 s vs 1.4-9 s a step).
        torch.set_num_threads(1)
    try:
        run = _Run(cfg)
        run.read_data()
        run.build_model()
        run.resume()
        stopped = run.fit()
        return run.finish(stopped)
    finally:
        torch.set_num_threads(threads)


class _Run:
    """One training run; `train` calls its steps in order: data, model, resume, fit, finish."""

    def __init__(self, cfg: TrainConfig):
        import torch
        from accelerate import Accelerator, DataLoaderConfiguration
        from accelerate.utils import set_seed

        use_bf16 = cfg.bf16 and torch.cuda.is_available()
        self.cfg = cfg
        self.accelerator = Accelerator(
            mixed_precision="bf16" if use_bf16 else "no",
            log_with="tensorboard", project_dir=str(cfg.out),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        )
        self.dtype = torch.bfloat16 if use_bf16 else torch.float32
        self.accumulation = cfg.accumulation(self.accelerator.num_processes)
        self.say = self.accelerator.print
        self.tasks = cfg.tasks
        self.found = checkpoints(cfg.out)
        if self.found and not cfg.resume:
            raise ValueError(f"--out {cfg.out} already holds checkpoints; pass --resume to continue or pick "
                             "a new --out")
        self.progress = _Progress()
        self.losses: list[tuple[int, float]] = []
        self.grad_norms: list[tuple[int, float]] = []
        set_seed(cfg.seed)

    # --- data and model ---------------------------------------------------------------------------

    def read_data(self) -> None:
        """The strategy's train (and val) records; bad ones stop the run or, with `skip_bad`, are listed."""
        from crashchat.data import read_tasks, split_path

        cfg = self.cfg
        if cfg.eval:
            missing = [str(p) for t in self.tasks if not (p := split_path(cfg.split_dir, t, "val")).is_file()]
            if missing:
                raise DataError(f"{missing[0]}: no such split file (pass --no-eval to train without validation)")
        read = dict(videos_dir=cfg.videos_dir, skip_bad=cfg.data.skip_bad)
        self.train_split = read_tasks(cfg.split_dir, self.tasks, "train", **read)
        self.val_split = read_tasks(cfg.split_dir, self.tasks, "val", **read) if cfg.eval else None
        for line in self.train_split.skipped + (self.val_split.skipped if self.val_split else []):
            self.say(f"skipped: {line}")
        self.say(f"strategy {cfg.strategy}: {len(self.train_split.records)} train examples "
                 f"{self.train_split.count_by_task()}"
                 + (f", {len(self.val_split.records)} val" if self.val_split else ", no validation"))

    def build_model(self) -> None:
        """Base + fresh adapter, data loaders, AdamW and the cosine schedule, prepared for the processes."""
        import torch
        from torch.utils.data import DataLoader
        from transformers import get_cosine_schedule_with_warmup

        from crashchat.data import Collator, Encoder, TrainingData

        cfg, accelerator = self.cfg, self.accelerator
        with accelerator.main_process_first():  # one process downloads/converts the base, then the rest read it
            base, processor = load_base(cfg, str(accelerator.device))
        model = attach_lora(base, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                            gradient_checkpointing=cfg.gradient_checkpointing)
        net = answer_loss(model)
        self.names = trainable_names(net)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.say(f"trainable parameters: {n_train:,} (LoRA r={cfg.lora_r} on the LLM + projector); "
                 "vision and LLM frozen")

        encoder = Encoder(processor, token_budget=cfg.data.token_budget)
        loader = dict(batch_size=cfg.batch_size, collate_fn=Collator(encoder.pad_id), num_workers=cfg.num_workers,
                      persistent_workers=False)
        train_loader = DataLoader(TrainingData(self.train_split.records, encoder, cfg.data), shuffle=True, **loader)
        val_loader = (DataLoader(TrainingData(self.val_split.records, encoder, cfg.data), shuffle=False, **loader)
                      if self.val_split else None)

        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                      weight_decay=cfg.weight_decay)
        self.net, self.optimizer, self.train_loader = accelerator.prepare(net, optimizer, train_loader)
        self.val_loader = accelerator.prepare(val_loader) if val_loader is not None else None
        self.steps_per_epoch = math.ceil(len(self.train_loader) / self.accumulation)  # batches per process
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * self.steps_per_epoch))
        # Not passed to `prepare`: accelerate would step it once per process per step.
        self.scheduler = get_cosine_schedule_with_warmup(self.optimizer, math.ceil(cfg.warmup_ratio * self.total_steps),
                                                         self.total_steps)
        accelerator.register_for_checkpointing(self.scheduler)

        # Checkpoints hold only the trainable weights: the frozen base is gigabytes and never changes.
        def keep_trainable(models, weights, output_dir):
            for i, state in enumerate(weights):
                weights[i] = {k: v for k, v in state.items() if _strip(k) in self.names}

        accelerator.register_save_state_pre_hook(keep_trainable)

    def resume(self) -> None:
        """Continue from the last checkpoint (weights, optimizer, schedule, RNG, data position), if any."""
        cfg = self.cfg
        if self.found:
            last = self.found[-1]
            saved = json.loads((last / STATE_FILE).read_text())
            if saved.get("tasks") != [t.id for t in self.tasks]:
                raise ValueError(f"--resume: {last} trained {saved.get('tasks')}, not --strategy {cfg.strategy}")
            self.accelerator.load_state(str(last), strict=False)
            _restore_trainable(self.accelerator.unwrap_model(self.net), last, self.names)
            self.progress = _Progress(**saved["progress"])
            self.say(f"resumed from {last} at step {self.progress.step} (epoch {self.progress.epoch}, "
                     f"batch {self.progress.batches_in_epoch})")
        elif cfg.resume:
            self.say(f"--resume: no checkpoint in {cfg.out}/checkpoints yet; starting from the beginning")
        if self.accelerator.is_main_process:
            cfg.out.mkdir(parents=True, exist_ok=True)
            (cfg.out / "train_config.json").write_text(json.dumps(cfg.to_json(), indent=2, default=str))
        self.accelerator.init_trackers("tensorboard", config={k: v for k, v in cfg.to_json().items()
                                                              if isinstance(v, (int, float, str, bool))})
        self.say(f"{self.total_steps} steps of {cfg.global_batch} examples ({self.accumulation} accumulation x "
                 f"{cfg.batch_size} x {self.accelerator.num_processes} process(es)), {self.steps_per_epoch} steps "
                 f"per epoch, device {self.accelerator.device}")

    # --- training ---------------------------------------------------------------------------------

    def fit(self) -> str:
        """Optimizer steps until the last one or early stopping, with logs, evaluations and checkpoints.

        Returns why it stopped: `max_steps`, `epochs` or `early_stopping`.
        """
        cfg, progress = self.cfg, self.progress
        if progress.step >= self.total_steps:
            return "max_steps"
        self.net.train()
        window = _Window()
        for step in self.steps():
            window.add(step)
            if progress.step % cfg.log_steps == 0 or progress.step == self.total_steps:
                self.log(window, step)
                window = _Window()
            stopped = None
            if self.val_loader is not None and progress.step % cfg.eval_steps == 0 and self.judge():
                stopped = "early_stopping"
            if progress.step >= self.total_steps:
                stopped = "max_steps" if cfg.max_steps else "epochs"
            if progress.step % cfg.save_steps == 0 or stopped:
                self.checkpoint()
            if progress.step % cfg.eval_steps == 0 or progress.step % cfg.save_steps == 0:
                window.start = time.perf_counter()  # samples/s measures training alone
            if stopped:
                return stopped
        raise AssertionError("unreachable: steps() ends only when fit stops asking")

    def steps(self) -> Iterator[_Step]:
        """Optimizer steps, epoch after epoch, from the saved data position; each after it is taken.

        A step is `accumulation` micro-batches on every process (fewer at an epoch's end); its
        loss is the mean over all their answer tokens (`optimizer_step`).
        """
        progress, loader = self.progress, self.train_loader
        batches = len(loader)
        while True:
            loader.set_epoch(progress.epoch)
            epoch = (self.accelerator.skip_first_batches(loader, progress.batches_in_epoch)
                     if progress.batches_in_epoch else loader)
            loss_sum, tokens, micro_batches = 0, 0, 0
            for batch in epoch:
                self.note_skipped(batch, replaced=True)
                progress.batches_in_epoch += 1
                micro_batches += 1
                ends_step = progress.batches_in_epoch % self.accumulation == 0 or progress.batches_in_epoch == batches
                batch_sum, batch_tokens = micro_batch_backward(self.accelerator, self.net, batch, self.dtype,
                                                               sync=ends_step)
                loss_sum, tokens = loss_sum + batch_sum, tokens + batch_tokens
                if not ends_step:
                    continue
                lr = self.scheduler.get_last_lr()[0]
                loss, grad_norm = optimizer_step(self.accelerator, self.net, self.optimizer, loss_sum, tokens,
                                                 self.cfg.max_grad_norm)
                self.scheduler.step()
                progress.step += 1
                examples = micro_batches * self.cfg.batch_size * self.accelerator.num_processes
                loss_sum, tokens, micro_batches = 0, 0, 0
                yield _Step(loss=loss, grad_norm=grad_norm, lr=lr, examples=examples)
            progress.epoch += 1
            progress.batches_in_epoch = 0

    def note_skipped(self, batch: dict, *, replaced: bool = False) -> None:
        self.progress.skipped_videos.extend(batch["skipped"])
        if replaced:
            for line in batch["skipped"]:
                self.say(f"skipped (replaced by the next readable record): {line}")

    def log(self, window: _Window, last: _Step) -> None:
        """One log line (terminal and TensorBoard): the window's mean loss, the last step's lr and norm."""
        elapsed = time.perf_counter() - window.start
        loss, step = window.loss / window.steps, self.progress.step
        self.accelerator.log({"train/loss": loss, "train/lr": last.lr, "train/grad_norm": last.grad_norm,
                              "train/samples_per_s": window.examples / elapsed}, step=step)
        self.say(f"step {step}/{self.total_steps} epoch {self.progress.epoch} loss {loss:.4f} lr {last.lr:.3g} "
                 f"grad norm {last.grad_norm:.3g} {window.examples / elapsed:.2f} samples/s")
        self.losses.append((step, loss))
        self.grad_norms.append((step, last.grad_norm))

    # --- evaluation and checkpoints ---------------------------------------------------------------

    def evaluate(self) -> float:
        """The val loss as the authors' trainer computes it (`val_loss`): each process pools its
        micro-batches into batches of `eval_batch` examples, and the processes' totals are added."""
        import torch

        device = self.accelerator.device
        micro = []
        self.net.eval()
        with torch.no_grad():
            for batch in self.val_loader:
                self.note_skipped(batch)
                loss_sum, tokens = self.net(**_to_device(batch, device, self.dtype))
                micro.append((float(loss_sum), float(tokens), int(batch["input_ids"].shape[0])))
        self.net.train()
        total, examples = batch_loss_totals(pool_batches(micro, self.cfg.eval_batch))
        total, examples = self.accelerator.reduce(torch.tensor([total, examples], device=device), "sum").tolist()
        return total / max(examples, 1)

    def judge(self) -> bool:
        """Evaluate and keep the lowest-loss adapter in OUT/adapter; True when early stopping says stop."""
        progress = self.progress
        loss = self.evaluate()
        progress.last_eval_step = progress.step
        new_best, progress.bad_evals = judge_eval(loss, progress.best_eval_loss, progress.bad_evals,
                                                  self.cfg.threshold)
        if new_best:
            progress.best_eval_loss, progress.best_step = loss, progress.step
            save_adapter(self.accelerator, self.net, self.cfg.out / "adapter")
        self.accelerator.log({"eval/loss": loss}, step=progress.step)
        self.say(f"step {progress.step}: eval loss {loss:.4f} (best {progress.best_eval_loss:.4f} at step "
                 f"{progress.best_step}; {progress.bad_evals}/{self.cfg.patience} without improvement)")
        return progress.bad_evals >= self.cfg.patience

    def checkpoint(self) -> None:
        """`OUT/checkpoints/step-N`: what `--resume` needs and an adapter; only the newest few are kept."""
        cfg, accelerator = self.cfg, self.accelerator
        target = cfg.out / "checkpoints" / f"step-{self.progress.step:06d}"
        accelerator.save_state(str(target))
        save_adapter(accelerator, self.net, target / "adapter")
        if accelerator.is_main_process:
            state = {"tasks": [t.id for t in self.tasks], "progress": asdict(self.progress)}
            (target / STATE_FILE).write_text(json.dumps(state, indent=2))  # last: marks the checkpoint complete
            for old in checkpoints(cfg.out)[:-cfg.keep_checkpoints]:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()

    # --- the end ----------------------------------------------------------------------------------

    def finish(self, stopped: str) -> TrainResult:
        """The final weights compared too (or saved, without validation); the summary written and printed."""
        cfg, progress = self.cfg, self.progress
        if self.val_loader is not None and progress.last_eval_step != progress.step:
            self.judge()  # the best adapter stays in OUT/adapter
        if self.val_loader is None:
            save_adapter(self.accelerator, self.net, cfg.out / "adapter")
        self.accelerator.end_training()

        splits = [self.train_split] + ([self.val_split] if self.val_split else [])
        result = TrainResult(
            adapter=str(cfg.out / "adapter"), serves=serves(self.tasks), tasks=[t.id for t in self.tasks],
            steps=progress.step, stopped=stopped, best_eval_loss=progress.best_eval_loss,
            best_step=progress.best_step, last_train_loss=self.losses[-1][1] if self.losses else None,
            train_examples=len(self.train_split.records),
            val_examples=len(self.val_split.records) if self.val_split else 0,
            skipped_records=[line for split in splits for line in split.skipped],
            skipped_videos=sorted(set(progress.skipped_videos)), losses=self.losses, grad_norms=self.grad_norms,
            model=self.accelerator.unwrap_model(self.net).peft,
        )
        if self.accelerator.is_main_process:
            (cfg.out / SUMMARY_FILE).write_text(json.dumps(result.to_json(), indent=2))
        skipped = len(result.skipped_records) + len(result.skipped_videos)
        self.say(f"done after {result.steps} steps ({stopped}); {skipped} bad record(s) skipped"
                 + (f"; best eval loss {result.best_eval_loss:.4f} at step {result.best_step}"
                    if result.best_eval_loss is not None else ""))
        self.say(f"adapter for the {result.serves} tasks: python -m crashchat analyze VIDEO --{result.serves} "
                 f"{result.adapter}")
        return result


def _restore_trainable(model, checkpoint: Path, names: set[str]) -> None:
    """Load the checkpoint's trainable weights by name, whatever wrapper prefix they were saved with.

    `load_state(strict=False)` would load nothing, silently, if the prefixes disagreed; this
    fails loudly instead. (FSDP checkpoints keep sharded weights that `load_state` restores.)
    """
    from safetensors.torch import load_file

    path = checkpoint / "model.safetensors"
    if not path.is_file():
        return
    state = {_strip(k): v for k, v in load_file(str(path)).items()}
    if set(state) != names:
        raise ValueError(f"--resume: {checkpoint} holds other trainable weights than this run "
                         f"({len(set(state) ^ names)} names differ; was --lora-r or the base changed?)")
    model.load_state_dict(state, strict=False)


def _strip(key: str) -> str:
    """A parameter name without the DDP wrapper's prefix."""
    return key[len("module."):] if key.startswith("module.") else key


# --- CLI ------------------------------------------------------------------------------------------


def build_parser(prog: str = "python -m crashchat train") -> argparse.ArgumentParser:
    """The flags are `TrainConfig`'s fields (and `DataConfig`'s), their help the fields' docstrings."""
    from crashchat.flags import HelpFormatter, add_flags

    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=HelpFormatter,
        description="LoRA instruction tuning of VideoLLaMA3 on CrashChat tasks (paper defaults).",
    )
    return add_flags(parser, TrainConfig)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from crashchat.flags import from_flags

    return from_flags(TrainConfig, args)


def main(argv: list[str] | None = None, prog: str = "python -m crashchat train") -> int:
    args = build_parser(prog).parse_args(argv)
    from crashchat.weights import ModelLoadError

    try:
        cfg = config_from_args(args)
        train(cfg)
    except (DataError, ValueError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
