"""What the leaderboard keeps of a scorer JSON, and in which parts.

A stored row carries its scorer JSON in three parts, each stored once:
- the *summary* the tables read for every row: per protocol every task's metrics and 95%
  intervals, the overall score, and the coverage (parsed answers / expected, per task);
- the *detail* read for one row at a time: the per-source breakdown, the validation report, the
  files, the bootstrap settings;
- the split's description (its file digests), shared by every row scored on that split.

`split_result` cuts a scorer JSON into these, `join_result` puts it back together (equal to the
original), `coverage` is the one rule for "answered". When every question was answered readably the
two protocols score the same records, so the strict block equals the paper one: it is then kept
once (`SAME`), which halves what a complete row stores.

>>> coverage({"crash_recognition": {"expected": 4, "matched": 3, "unparseable": 1}})["crash_recognition"]
(2, 4)
"""

from __future__ import annotations

from collections.abc import Mapping

from crashchat.tasks import TASKS


def coverage(validation: Mapping[str, Mapping[str, int]]) -> dict[str, tuple[int, int]]:
    """Task -> (answered, expected): an answer counts when the scorer could read it. A missing,
    `null`, empty or unparseable answer is not answered, whatever the protocol does with it."""
    out = {}
    for task in TASKS:
        v = validation.get(task.id, {})
        answered = int(v.get("matched", 0)) - int(v.get("unparseable", 0))
        out[task.id] = (max(answered, 0), int(v.get("expected", 0)))
    return out


def is_complete(cover: Mapping[str, tuple[int, int]]) -> bool:
    """Every question of every task answered."""
    return all(answered >= expected for answered, expected in cover.values())


def overall_of(result: Mapping) -> dict:
    """The result's overall block; for a result scored before it existed, the point value from its
    strict metrics (no interval: re-scoring adds it)."""
    if result.get("overall") is not None:
        return dict(result["overall"])
    from leaderboard.scoring import OVERALL_METRIC, overall_point

    tasks = result.get("protocols", {}).get("strict", {}).get("tasks", {})
    return {"protocol": "strict", "metrics": {t.id: OVERALL_METRIC[t.kind] for t in TASKS},
            "value": overall_point(tasks), "ci95": None}


SAME = "same as paper"
"""Stored in place of a strict block equal to the paper protocol's."""


def _once(blocks: dict) -> dict:
    if "paper" in blocks and blocks.get("strict") == blocks["paper"]:
        return {**blocks, "strict": SAME}
    return blocks


def _expand(blocks: Mapping) -> dict:
    return {p: (blocks["paper"] if v == SAME else v) for p, v in blocks.items()}


def split_result(result: Mapping) -> tuple[dict, dict, dict]:
    """(summary, detail, split description) of a scorer JSON; `join_result` inverts it."""
    protocols = result.get("protocols", {})
    summary = {
        "protocols": _once({p: {"tasks": v.get("tasks", {}), "ci95": v.get("ci95", {})} for p, v in protocols.items()}),
        "overall": overall_of(result),
        "coverage": {t: list(c) for t, c in coverage(result.get("validation", {})).items()},
        "scorer_version": result.get("scorer_version"),
    }
    if "bertscore" in result:
        summary["bertscore"] = result["bertscore"]
    detail = {k: v for k, v in result.items()
              if k not in ("protocols", "overall", "split", "scorer_version", "bertscore")}
    detail["by_source"] = _once({p: v.get("by_source", {}) for p, v in protocols.items()})
    detail["had_overall"] = "overall" in result
    return summary, detail, dict(result.get("split", {}))


def protocols(summary: Mapping) -> dict:
    """The summary's per-protocol blocks, each in full."""
    return _expand(summary["protocols"])


def join_result(summary: Mapping, detail: Mapping, split_info: Mapping) -> dict:
    """The scorer JSON that `split_result` cut up."""
    rest = {k: v for k, v in detail.items() if k not in ("by_source", "had_overall")}
    out = {"scorer_version": summary.get("scorer_version"), "split": dict(split_info), **rest}
    if "bertscore" in summary:
        out["bertscore"] = summary["bertscore"]
    by_source = _expand(detail.get("by_source", {}))
    out["protocols"] = {p: {"tasks": v["tasks"], "by_source": by_source.get(p, {}), "ci95": v["ci95"]}
                        for p, v in _expand(summary["protocols"]).items()}
    if detail.get("had_overall", True):
        out["overall"] = summary["overall"]
    return out
