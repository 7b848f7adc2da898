"""The server side of the evaluation endpoints, as plain methods over a queue and a submit callable.

`EvaluationAPI` implements the contract that `crashchat worker` calls (written out, with the
arguments and replies, in `crashchat/worker.py`'s docstring); one method per endpoint, named as
the endpoint:

- public: `request_evaluation(model_id, revision, frames)`, `evaluation_queue()`;
- worker (token checked first, constant-time, against `CRASHCHAT_WORKER_TOKEN`):
  `claim_evaluation(token, worker)`, `renew_evaluation(token, request_id, lease)`,
  `finish_evaluation(token, request_id, lease, files, provenance)`,
  `fail_evaluation(token, request_id, lease, reason)`.

Nothing here knows Gradio: the leaderboard tab registers these methods as named API endpoints
(`gr.api(..., api_name=...)`), turns `API_ERRORS` into `gr.Error` lines, and supplies `submit`,
which stores the answers as an `evaluated` row and returns its id. Before `submit` is called,
the uploaded provenance must say that the answers come from the requested model at the resolved
commit, with the request's frame policy, greedy, with the authors' answer limit (2048 new tokens)
and for all six tasks; anything else is refused
(`FinishRefused`), so a worker cannot file other answers under a request.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from crashchat import provenance as provenance_mod
from crashchat.cli import AUTHORS_MAX_NEW_TOKENS
from crashchat.provenance import ProvenanceError
from crashchat.tasks import TASK_IDS
from leaderboard.evaluations import (
    DEFAULT_FRAMES,
    EvaluationQueue,
    EvaluationRequest,
    LeaseError,
    RequestRefused,
    check_worker_token,
    one_line,
)


class FinishRefused(ValueError):
    """A worker's finished evaluation that cannot be filed (files, provenance); one line."""


API_ERRORS = (RequestRefused, LeaseError, PermissionError, FinishRefused, ProvenanceError)
"""What the endpoints raise for a caller's mistake: shown as one line, nothing stored."""

Submit = Callable[[EvaluationRequest, list[Path], dict], int]
"""`submit(request, [predictions, meta.json], {"predict": meta, "worker": worker block})` -> row id."""

WORKER_FIELDS = {
    # field -> type; what a worker says about itself (stored with the row, shown as its provenance)
    "worker": str,          # the worker's name (`--name`, default the host name)
    "gpu": str,             # device name, e.g. `NVIDIA H200` (`cpu` without one)
    "gpus": int,            # processes predict ran with
    "code_version": str,    # crashchat version and the checkout's commit
    "started_at": str,
    "finished_at": str,
    "seconds": float,       # wall time of the predict run
}
MAX_FILE_ARGS = 2


def check_worker_block(block: object) -> dict:
    """The worker's provenance: known fields only, typed and bounded; `FinishRefused` names the field."""
    if not isinstance(block, dict):
        raise FinishRefused(f"provenance: expected an object, got {type(block).__name__}")
    unknown = sorted(set(block) - set(WORKER_FIELDS))
    if unknown:
        raise FinishRefused(f"provenance.{one_line(unknown[0], 40)}: unknown field")
    out: dict = {}
    for key, kind in WORKER_FIELDS.items():
        value = block.get(key)
        if value is None:
            raise FinishRefused(f"provenance.{key}: missing")
        if kind is str:
            if not isinstance(value, str) or not value.strip() or len(value) > 200 or one_line(value, 201) != value:
                raise FinishRefused(f"provenance.{key}: expected one line of at most 200 printable characters")
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1024:
                raise FinishRefused(f"provenance.{key}: expected a whole number from 0 to 1024")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise FinishRefused(f"provenance.{key}: expected a non-negative number")
        out[key] = float(value) if kind is float else value
    return out


def check_meta(meta: Mapping[str, Any], request: EvaluationRequest, max_new_tokens: int | None = AUTHORS_MAX_NEW_TOKENS) -> None:
    """The predict provenance describes the requested run; else `FinishRefused` naming the field.
    `max_new_tokens` is the answer limit evaluations run with (None: any)."""
    policy = request.policy
    expected = {
        "model.id": f"hf:{request.model}",
        "model.revision": request.commit or None,
        "model.trust_remote_code": False,
        "model.random_weights": False,
        "frames.fps": policy.fps,
        "frames.max_frames": policy.max_frames,
        "frames.max_pixels": policy.max_pixels,
        "generation.do_sample": False,
        "generation.num_beams": 1,
    }
    if max_new_tokens is not None:
        expected["generation.max_new_tokens"] = max_new_tokens
    for field, want in expected.items():
        block, key = field.split(".")
        got = meta[block][key]
        if got != want:
            raise FinishRefused(f"provenance {field}: {one_line(repr(got), 80)}, but the request is for "
                                f"{one_line(repr(want), 80)}")
    if sorted(meta["run"]["tasks"]) != sorted(TASK_IDS):
        raise FinishRefused("provenance run.tasks: an evaluation answers all six tasks")


def _file_path(item: object) -> Path:
    if isinstance(item, dict) and isinstance(item.get("path"), str):  # a Gradio FileData
        return Path(item["path"])
    if isinstance(item, (str, os.PathLike)):
        return Path(item)
    raise FinishRefused(f"files: expected file paths, got {type(item).__name__}")


def split_files(files: object) -> tuple[Path, Path]:
    """(predictions, meta.json) from the uploaded files; `FinishRefused` otherwise."""
    if isinstance(files, (str, os.PathLike, dict)) or not isinstance(files, Sequence):
        raise FinishRefused("files: expected a list of two files (the predictions and their .meta.json)")
    paths = [_file_path(f) for f in files[:MAX_FILE_ARGS + 1]]
    metas = [p for p in paths if p.name.endswith(provenance_mod.SUFFIX)]
    predictions = [p for p in paths if p not in metas]
    if len(paths) != 2 or len(metas) != 1:
        raise FinishRefused(f"files: expected the predictions and one {provenance_mod.SUFFIX} file, got "
                            f"{len(paths)} file(s), {len(metas)} of them provenance")
    for p in paths:
        if not p.is_file():
            raise FinishRefused(f"files: {one_line(p.name, 80)} was not received")
    if metas[0].stat().st_size > provenance_mod.MAX_BYTES:
        raise FinishRefused(f"files: {one_line(metas[0].name, 80)} is over {provenance_mod.MAX_BYTES} bytes")
    return predictions[0], metas[0]


class EvaluationAPI:
    """The six endpoints over one queue. `submit` files an evaluation's answers as a leaderboard row."""

    def __init__(self, queue: EvaluationQueue, submit: Submit, *, hub_info: Callable | None = None,
                 config_loader: Callable | None = None,
                 max_new_tokens: int | None = AUTHORS_MAX_NEW_TOKENS) -> None:
        self.queue, self.submit = queue, submit
        self.hub_info, self.config_loader = hub_info, config_loader
        """Stand-ins for the Hub and AutoConfig (tests); None: the real ones."""
        self.max_new_tokens = max_new_tokens
        """The answer limit an evaluation must have run with: the authors' 2048 (tests use fewer)."""

    # --- public ---------------------------------------------------------------------------------

    def request_evaluation(self, model_id: str, revision: str = "main", frames: str = DEFAULT_FRAMES,
                           submitter: str = "", admit: Callable[[], None] | None = None) -> dict:
        """Queue a model id; `{"request_id", "status", "duplicate", "model", "revision", "commit", "frames"}`.
        `admit`: the caller's limit, checked only when a new request is stored (`EvaluationQueue.request`)."""
        found, added = self.queue.request(model_id, revision, frames, submitter=submitter, hub_info=self.hub_info,
                                          config_loader=self.config_loader, admit=admit)
        return {"request_id": found.id, "status": found.status, "duplicate": not added, "model": found.model,
                "revision": found.revision, "commit": found.commit, "frames": found.frames}

    def evaluation_queue(self) -> list[dict]:
        return self.queue.list()

    # --- workers --------------------------------------------------------------------------------

    def claim_evaluation(self, token: str, worker: str) -> dict:
        """The oldest pending request for this worker, or `{}` when nothing is pending."""
        check_worker_token(token)
        claimed = self.queue.claim(worker)
        if claimed is None:
            return {}
        request, lease = claimed
        policy = request.policy
        return {"request_id": request.id, "lease": lease, "lease_seconds": self.queue.lease_seconds,
                "model": request.model, "revision": request.revision, "commit": request.commit,
                "frames": {"name": request.frames, "fps": policy.fps, "max_frames": policy.max_frames,
                           "max_pixels": policy.max_pixels},
                "attempt": request.attempts}

    def renew_evaluation(self, token: str, request_id: object, lease: str) -> dict:
        check_worker_token(token)
        request = self.queue.renew(request_id, lease)
        return {"request_id": request.id, "lease_expires": request.lease_expires}

    def finish_evaluation(self, token: str, request_id: object, lease: str, files: object, provenance: object) -> dict:
        """Check the files and provenance against the request, file the row, mark it finished."""
        check_worker_token(token)
        request = self.queue.holding(request_id, lease)
        predictions, meta_file = split_files(files)
        meta = provenance_mod.loads(meta_file.read_bytes(), meta_file.name)
        check_meta(meta, request, self.max_new_tokens)
        worker = check_worker_block(provenance)
        row_id = self.submit(request, [predictions, meta_file], {"predict": meta, "worker": worker})
        done = self.queue.finish(request.id, lease, int(row_id))
        return {"request_id": done.id, "status": done.status, "row_id": done.row_id}

    def fail_evaluation(self, token: str, request_id: object, lease: str, reason: str) -> dict:
        check_worker_token(token)
        done = self.queue.fail(request_id, lease, reason)
        return {"request_id": done.id, "status": done.status, "reason": done.reason}
