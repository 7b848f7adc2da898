"""A five-video mini split in the authors' layout: synthetic clips, one broken and one missing video."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from crashchat.tasks import TASKS

ANSWERS = {"yes_no": None, "time_range": "0.5 - 0.9 seconds", "time": "0.4 seconds", "text": "car hits a car."}
# name, scene, what is on disk
VIDEOS = [("c0.mp4", "crash", "ok"), ("n1.mp4", "normal", "ok"), ("c2.mp4", "crash", "ok"),
          ("c3.mp4", "crash", "broken"), ("n4.mp4", "normal", "missing")]


def write_mini_split(root: Path, videos: list[tuple[str, str, str]] = VIDEOS,
                     names: Sequence[str] | None = None) -> tuple[Path, Path]:
    """`root/split` (six test files) and `root/videos`; returns (split dir, data root).

    `videos` picks other entries of the `VIDEOS` form (e.g. only the readable ones); `names` gives
    them other file names, e.g. real split videos, so that predictions on the mini split can be
    submitted against the real one."""
    from crashchat.synthetic import write_broken, write_clip

    (root / "videos").mkdir(parents=True)
    (root / "split").mkdir()
    if names is not None:
        videos = [(n, scene, state) for n, (_, scene, state) in zip(names, videos, strict=True)]
    for i, (name, scene, state) in enumerate(videos):
        if state == "ok":
            write_clip(root / "videos" / name, seconds=1.0, scene=scene, seed=i)
        elif state == "broken":
            write_broken(root / "videos" / name, "text")
    for task in TASKS:
        records = []
        for name, scene, _ in videos:
            if task.group == "perception" and scene != "crash":
                continue  # as in the real split: localization only for crash videos
            answer = ANSWERS[task.kind] or ("Yes" if scene == "crash" else "No")
            records.append({"video": [f"videos/{name}"], "source": "MM-AU-CAP" if scene == "crash" else "D2City",
                            "conversations": [{"from": "human", "value": f"<video>\n{task.prompt}"},
                                              {"from": "gpt", "value": answer}]})
        (root / "split" / task.split_file()).write_text(json.dumps(records))
    return root / "split", root


def expected_rows() -> set[tuple[str, str]]:
    """(video, task) of every question whose video can be read."""
    return {(name, t.id) for name, scene, state in VIDEOS if state == "ok"
            for t in TASKS if not (t.group == "perception" and scene != "crash")}
