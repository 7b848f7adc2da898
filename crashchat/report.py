"""The six-task report: a JSON dict (what `analyze --json` writes and the app downloads) and its Markdown."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from crashchat.pipeline import RECOGNITION, wall_seconds
from crashchat.tasks import TASK_IDS, get_task

if TYPE_CHECKING:
    from crashchat.model import CrashChat


def build_report(clip, model: CrashChat, results: dict, generation: dict | None = None) -> dict:
    """The report JSON: video, model, how the model was asked, the gate's verdict and every task's answer.

    `generation` is what `crashchat.pipeline.analyze` was given (max_new_tokens, guided,
    repetition_stop); it is recorded with the prompt format under `input`. `wall_s` is the
    analysis's wall time (when its last answer was ready), never a sum of per-answer seconds;
    the model block names the base (repo, subfolder, revision) and the processor settings its
    configs set, each with where it came from.
    """
    recognition = results.get(RECOGNITION)
    crash = None if recognition is None or recognition["parsed"] is None else recognition["parsed"] == "Yes"
    base, settings = getattr(model, "base", None), getattr(model, "settings", None)
    report = {
        "video": {"path": str(clip.path), "duration_s": round(float(clip.duration_s), 3),
                  "frames": int(len(clip.frames)), "width": int(clip.width), "height": int(clip.height),
                  "timestamps": [round(float(t), 3) for t in clip.timestamps]},
        "model": {"name": model.name, "random_weights": bool(model.random_weights),
                  "groups": list(model.groups) or ["base"], "device": model.device,
                  **({"base": base.to_json()} if base is not None else {}),
                  **({"processor": settings.to_json()} if settings is not None else {})},
        "input": {"prompt_format": getattr(model, "prompt_format", "authors-eval"),
                  "sample_fps": float(getattr(clip, "sample_fps", 10.0)), "frames": int(len(clip.frames)),
                  **_frame_policy(model), **(generation or {})},
        "crash_detected": crash,
        "wall_s": wall_seconds(results.values()),
        "tasks": {t: results[t] for t in TASK_IDS if t in results},
    }
    if model.random_weights:
        report["warning"] = "RANDOM WEIGHTS: the tiny random model's answers are meaningless"
    return report


def _frame_policy(model) -> dict:
    """`hf:` models: which frame policy (`--frames`), and for `model-card` where each value came from."""
    if not hasattr(model, "frame_policy"):
        return {}  # CrashChat: always the benchmark's frames
    policy = getattr(model, "frames", None)
    return {"frame_policy": model.frame_policy, **({"frame_sources": dict(policy.sources)} if policy else {})}


def _asked(given: dict) -> str:
    """How the model was asked, in a few words (the `input` block of the report)."""
    formats = {"authors-eval": "as the authors' evaluation (split question with <video>, no system prompt)",
               "chat-template": "with the model's own chat template"}
    parts = [formats.get(given.get("prompt_format"), given.get("prompt_format") or "as the authors' evaluation")]
    if "max_new_tokens" in given:
        parts.append(f"up to {given['max_new_tokens']} new tokens")
    if given.get("guided"):
        parts.append("format-guided answers")
    if given.get("frame_policy") == "model-card":
        parts.append(f"the model card's frames ({given['sample_fps']:g} fps)")
    return ", ".join(parts)


def _verdict(crash) -> str:
    return {True: "crash detected", False: "no crash detected", None: "recognition answer unreadable"}[crash]


def report_markdown(report: dict) -> str:
    """A readable summary of a report (terminal output and the app's download)."""
    video, model = report["video"], report["model"]
    lines = [f"# CrashChat report: {Path(video['path']).name}", ""]
    if model["random_weights"]:
        lines += [f"> **{report.get('warning', 'RANDOM WEIGHTS')}**", ""]
    base = (model.get("base") or {}).get("id")
    lines += [
        f"- Video: {video['duration_s']:.1f} s, {video['frames']} frames analysed",
        f"- Model: {model['name']}{' (random weights)' if model['random_weights'] else ''}"
        + (f", base {base}" if base else ""),
        f"- Asked: {_asked(report.get('input') or {})}",
        f"- Verdict: **{_verdict(report['crash_detected'])}**",
    ]
    if report.get("wall_s") is not None:
        lines.append(f"- Time: {report['wall_s']:.1f} s wall clock for {len(report['tasks'])} tasks")
    lines.append("")
    for task_id, result in report["tasks"].items():
        task = get_task(task_id)
        lines.append(f"## {task.title} ({result['group']})")
        if result["skipped"]:
            lines.append("Skipped: crash recognition did not answer Yes, so there is no crash to localize.")
        else:
            lines.append(result["response"] or "(empty answer)")
            ready = f"ready after {result['elapsed_s']:.2f} s" if result.get("elapsed_s") is not None else ""
            if task.kind != "text":
                parsed = result["parsed"] if result["parsed"] is not None else "unparseable"
                lines.append(f"Parsed: {parsed}" + (f" ({ready})" if ready else ""))
            elif ready:
                lines.append(f"({ready})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
