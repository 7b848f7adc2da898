"""The submission service: form checks, upload limits, identity, validate, submit and re-score.

What reaches the database (`leaderboard.store`) passes through here, in this order:
1. the form (`check_entry`: model name, link, notes);
2. the files, counted and sized before any is read, then read once into memory (`read_upload`):
   the upload is never touched again (nor deleted: Gradio's cache is Gradio's);
3. the answers, read against the split (`validate`); their identity is what the scorer reads of
   them (`submission.scored_digest`), so the same answers in another order, layout, file split,
   case (`yes`) or spacing point at the existing row ("already on the board");
4. who submits and the name they give (`leaderboard.identity`: the name must be theirs, not a
   paper row's, not another submitter's), and how often (the rate limit);
5. scoring (`leaderboard.scoring`) and storing (`Store.add`, which checks the name again in its
   write transaction).

`rescore` brings rows scored by another scorer version or split up to date.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from crashchat import provenance as provenance_mod
from leaderboard import SCORER_VERSION, identity
from leaderboard.scoring import score
from leaderboard.split import Split
from leaderboard.store import Store, StoredRow, pack_answers
from leaderboard.submission import (
    MAX_BYTES,
    Submission,
    SubmissionError,
    canonical_rows,
    read_canonical,
    read_submission,
    scored_digest,
)

MAX_FILES = 12
MAX_REQUEST_BYTES = 100 * 1024**2
"""All files of one submission together (each file at most `submission.MAX_BYTES`)."""
MAX_NAME = 80
MAX_LINK = 500
MAX_NOTES = 2000


class SubmitError(ValueError):
    """A submission's form is unusable (name, link, notes, files); one line naming the field."""



# Characters that change how text around them is shown (bidi controls) or are invisible: a
# name holding them can pass for another model's name.
_FORMAT_CATEGORIES = ("Cf", "Cc", "Co", "Cs", "Cn", "Zl", "Zp")


def _bad_character(text: str, allowed: str = "") -> str | None:
    for char in text:
        if char in allowed:
            continue
        if unicodedata.category(char) in _FORMAT_CATEGORIES or not char.isprintable():
            name = unicodedata.name(char, "unnamed character")
            return f"U+{ord(char):04X} ({name})"
    return None


def check_entry(model: str, link: str = "", notes: str = "") -> None:
    """Validate the form: model name 1-80 printable characters; optional http(s) link; notes."""
    if not isinstance(model, str) or not model.strip():
        raise SubmitError("model name: required (1-80 printable characters)")
    if len(model) > MAX_NAME:
        raise SubmitError(f"model name: {len(model)} characters, at most {MAX_NAME}")
    bad = _bad_character(model)
    if bad:
        raise SubmitError(f"model name: character {bad} is not allowed (no tabs, newlines, control, "
                          "bidi or invisible characters)")
    link = link or ""
    if not isinstance(link, str) or not isinstance(notes or "", str):
        raise SubmitError("link and notes: text expected")
    if link:
        if len(link) > MAX_LINK or _bad_character(link) or " " in link:
            raise SubmitError(f"link: one URL without spaces or invisible characters, at most {MAX_LINK} characters")
        if not link.lower().startswith(("https://", "http://")):
            raise SubmitError("link: must start with https:// or http://")
    notes = notes or ""
    if len(notes) > MAX_NOTES:
        raise SubmitError(f"notes: {len(notes)} characters, at most {MAX_NOTES}")
    bad = _bad_character(notes, allowed="\n\t")
    if bad:
        raise SubmitError(f"notes: character {bad} is not allowed")


@dataclass(frozen=True)
class Upload:
    """The files of one submission, read once: predictions and an optional provenance file."""

    predictions: list[tuple[str, bytes]]
    """(file name, content) of each prediction file."""
    files: list[tuple[str, str]]
    """(name, SHA-256) of each prediction file."""
    files_sha256: str
    """Digest of the set of prediction files (any order gives the same digest)."""
    provenance: provenance_mod.Provenance | None
    """The validated provenance (`crashchat.provenance`), when a `.meta.json` came with them."""


def read_upload(paths: Sequence[str | os.PathLike], *, provenance_path: str | os.PathLike | None = None,
                max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES,
                max_request_bytes: int = MAX_REQUEST_BYTES) -> Upload:
    """Check count and size limits (before reading any content), then read every file once.

    A file named `*.meta.json` among `paths` is the provenance file (`crashchat.provenance`), as
    is `provenance_path`; at most one. Raises `SubmitError` (limits, unreadable) or `ProvenanceError`.
    """
    given = [Path(p) for p in paths or []]
    metas = [p for p in given if p.name.lower().endswith(provenance_mod.SUFFIX)]
    if provenance_path:
        metas.append(Path(provenance_path))
    predictions = [p for p in given if p not in metas]
    if len(metas) > 1:
        raise SubmitError(f"files: {len(metas)} provenance files ({', '.join(p.name for p in metas)}); at most one")
    if not predictions:
        raise SubmitError("files: no prediction file given")
    if len(predictions) + len(metas) > max_files:
        raise SubmitError(f"files: {len(predictions) + len(metas)} files, at most {max_files}")
    total = 0
    for path in predictions + metas:
        size = _size(path)
        limit = provenance_mod.MAX_BYTES if path in metas else max_bytes
        if size > limit:
            raise SubmitError(f"{path.name}: file is {size} bytes, over the {limit}-byte limit")
        total += size
    if total > max_request_bytes:
        raise SubmitError(f"files: {total} bytes together, over the {max_request_bytes}-byte limit of one submission")
    contents = [(p.name, _read(p, max_bytes)) for p in predictions]
    files = [(name, hashlib.sha256(data).hexdigest()) for name, data in contents]
    digest = hashlib.sha256("\n".join(sorted(d for _, d in files)).encode()).hexdigest()
    meta = provenance_mod.loads(_read(metas[0], provenance_mod.MAX_BYTES), metas[0].name) if metas else None
    return Upload(contents, files, digest, meta)


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            raise SubmitError(f"{path.name}: is a folder, not a prediction file")
        return path.stat().st_size
    except OSError as exc:
        raise SubmitError(f"{path.name}: cannot read ({exc.strerror or exc})") from None


def _read(path: Path, limit: int) -> bytes:
    """The file's bytes (at most `limit`: a file that grew since its size was checked is refused)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise SubmitError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise SubmitError(f"{path.name}: file is over the {limit}-byte limit")
    return data


@dataclass(frozen=True)
class Outcome:
    row: StoredRow
    added: bool
    """False when the same answers are already on the board (that row is `row`)."""
    result: dict
    """The scorer's JSON, plus a `leaderboard` block naming the row."""


def _with_row(result: dict, row: StoredRow, added: bool) -> dict:
    out = dict(result)
    out["leaderboard"] = {"row_id": row.id, "model": row.model, "submitter": row.submitter, "added": added,
                          "answers_sha256": row.answers_sha256, "files_sha256": row.files_sha256,
                          "submitted_at": row.submitted_at, "provenance": row.provenance}
    return out


def validate(paths: Sequence[str | os.PathLike], split: Split, *, provenance_path: str | os.PathLike | None = None,
             max_bytes: int = MAX_BYTES) -> tuple[Upload, Submission]:
    """Read the files against the split (raises `SubmitError`, `SubmissionError` or `ProvenanceError`)."""
    upload = read_upload(paths, provenance_path=provenance_path, max_bytes=max_bytes)
    return upload, read_submission(upload.predictions, split, max_bytes=max_bytes)


@lru_cache(maxsize=1)
def paper_names() -> tuple[str, ...]:
    """The names of the paper's rows (`assets/paper_results.csv`): nobody else may use them."""
    from leaderboard.table import reported_rows  # pandas: only when a name is checked

    return tuple(r.model for r in reported_rows())


_FROM_ENV = object()


def submit(store: Store, paths: Sequence[str | os.PathLike], model: str, *, split: Split,
           submitter: identity.Submitter | None = None, link: str = "", notes: str = "",
           provenance_path: str | os.PathLike | None = None, bootstrap: int = 1000, seed: int = 0,
           max_bytes: int = MAX_BYTES, limit=_FROM_ENV, reserved: Iterable[str] | None = None,
           evaluation: Mapping[str, object] | None = None) -> Outcome:
    """Validate, score and store one submission; answers already on the board point at their row.

    `submitter`: who sends it (default `identity.submitter()`: the local user, and on a Space a
    `SignInRequired` refusal). `limit`: submissions
    per submitter in 24 hours (default `identity.submit_limit()`). `reserved`: names nobody may use
    (default the paper's rows). Nothing is stored unless every check passes. Answers that match a
    row an admin hid are refused, so that nothing of the hidden row comes back.

    `evaluation`: the answers come from the leaderboard's own worker (`leaderboard.evaluation_api`
    passes the request, worker, GPU and code version); the row is `evaluated`. Its name is the Hub
    id that was evaluated, so the name and rate checks of self-reported rows do not apply (the
    request passed the rate check when it was made).
    """
    who = submitter if submitter is not None else identity.submitter()  # on a Space: sign-in required
    check_entry(model, link, notes)
    upload, submission = validate(paths, split, provenance_path=provenance_path, max_bytes=max_bytes)
    digest = scored_digest(submission.answers)
    existing = store.find(digest)
    if existing is None:
        names = tuple(paper_names() if reserved is None else reserved)

        def check_name(holders: list[identity.Holder]) -> None:
            identity.check_name(model, who, reserved=names, holders=holders)

        if evaluation is None:
            check_name(store.name_holders(identity.name_keys(model)))
            now = identity.utc_now()
            identity.check_rate(store.submission_times(who.name, now - identity.WINDOW), who, now=now,
                                limit=identity.submit_limit() if limit is _FROM_ENV else limit)
        result = score(submission, split, bootstrap=bootstrap, seed=seed)
        row, added = store.add(model=model, submitter=who.name, link=link or "", notes=notes or "",
                               answers_sha256=digest, files_sha256=upload.files_sha256, files=upload.files,
                               result=result, answers=pack_answers(canonical_rows(submission.answers)),
                               provenance=upload.provenance, evaluation=evaluation,
                               check_name=None if evaluation is not None else check_name)
    else:
        row, added, result = existing, False, None
    if row.hidden and not added:
        raise SubmitError("files: these answers are already on the board and that row was hidden by an admin; "
                          "no row added")
    return Outcome(row, added, _with_row(result if added and result is not None else store.result(row.id), row, added))


def stored_submission(store: Store, row_id: int, split: Split) -> Submission:
    """Rebuild a row's submission from its stored answers (for re-scoring, compare, failures)."""
    return read_canonical(store.answers(row_id), split, f"row-{row_id}")


def rescore(store: Store, split: Split, *, force: bool = False, bootstrap: int = 1000,
            seed: int = 0) -> list[str]:
    """Re-score rows scored by another scorer version or split (all rows with `force`).

    Returns one line per row touched. A row whose answers no longer read (a stricter reader)
    keeps its old scores, and the line says why.
    """
    report = []
    for row in store.rows(include_hidden=True):
        if not force and row.scorer_version == SCORER_VERSION and row.split_sha256 == split.sha256:
            continue
        try:
            old = store.result(row.id)
            result = score(stored_submission(store, row.id, split), split, bootstrap=bootstrap, seed=seed)
            # What only the submitted files knew: their names and digests, and (same split) how
            # many of their records matched no video of it.
            result["files"] = old.get("files", result["files"])
            if row.split_sha256 == split.sha256:
                for task, counts in result["validation"].items():
                    counts["unknown"] = old.get("validation", {}).get(task, {}).get("unknown", 0)
            store.update_result(row.id, result)
        except SubmissionError as exc:
            report.append(f"#{row.id} {row.model!r}: kept old scores: answers unreadable: {exc}")
            continue
        report.append(f"#{row.id} {row.model!r}: re-scored (scorer {row.scorer_version} -> "
                      f"{SCORER_VERSION}, split {row.split_sha256[:12]} -> {split.sha256[:12]})")
    return report
