"""Random prediction files for the scorer's tests, in all three layouts, from the same answers."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from crashchat.tasks import TASKS, get_task

WORDS = ("ego-car hits a car truck pedestrian the driver should slow down no collision accident "
         "cause. distracted speeding Vehicles must keep distance").split()


def random_responses(split_dir: Path, seed: int = 0, missing: float = 0.05) -> dict[tuple[str, str], str]:
    """(task id, video) -> raw text: right, wrong, garbled, empty or missing answers."""
    rng = random.Random(seed)
    out = {}
    for task in TASKS:
        for record in json.loads((Path(split_dir) / task.split_file()).read_text()):
            if rng.random() < missing:
                continue
            video = record["video"][0].split("/")[-1]
            truth = record["conversations"][1]["value"]
            roll = rng.random()
            if task.kind == "yes_no":
                text = rng.choice(["Yes", "No", " yes.", "No, I don't think so", "I do not know", "maybe", truth])
            elif task.kind == "time_range":
                a, b = round(rng.uniform(0, 12), 1), round(rng.uniform(0, 12), 1)
                text = (truth if roll < 0.2 else f"{a} - {b} seconds" if roll < 0.8
                        else rng.choice(["from 1.5s to 3.0s", "no idea", "...", f"{a}-{b}", "1.2.3 - 4"]))
            elif task.kind == "time":
                text = (truth if roll < 0.2 else f"{round(rng.uniform(0, 10), 1)} seconds" if roll < 0.85
                        else rng.choice(["soon", ". 3.0", "0.2 seconds", "at 1.0s"]))
            else:
                text = (truth if roll < 0.25 else "" if roll < 0.3
                        else " ".join(rng.choices(WORDS, k=rng.randint(1, 40))))
            out[(task.id, video)] = text
    return out


def write_jsonl(path: Path, responses: dict, video_prefix: str = "") -> Path:
    with open(path, "w") as f:
        for (task, video), text in responses.items():
            f.write(json.dumps({"video": video_prefix + video, "task": task, "response": text}) + "\n")
    return path


def write_csv(path: Path, responses: dict) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "task", "response"])
        for (task, video), text in responses.items():
            writer.writerow([video, get_task(task).split_name, text])  # split names work too
    return path


def write_authors(folder: Path, responses: dict) -> list[Path]:
    """One JSON list per task with the authors' gt_*/pred_* fields (gt values deliberately wrong)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for task in TASKS:
        records = []
        for i, ((task_id, video), text) in enumerate(responses.items()):
            if task_id != task.id:
                continue
            record = {"data_id": i, "video_path": f"/data/videos/{video}", "prompt": task.prompt,
                      "raw_response": text}
            parsed = task.parse(text)
            if task.kind == "yes_no":
                record.update(gt_label="No", pred_label=parsed or "")
            elif task.kind == "time_range":
                record.update(gt_start=0.0, gt_end=1.0, pred_start=parsed and parsed[0], pred_end=parsed and parsed[1])
            elif task.kind == "time":
                record.update(gt_time=9.9, pred_time=parsed)
            else:
                record.update({task.gt_fields[0]: "wrong truth", task.pred_fields[0]: parsed or ""})
            records.append(record)
        path = folder / f"{task.id}_predictions.json"
        path.write_text(json.dumps(records, indent=2))
        paths.append(path)
    return paths


def write_mini_split(split_dir: Path, folder: Path, size: int) -> Path:
    """The first `size` records of each task file; pre-crash records of the crash-localization videos."""
    folder.mkdir(parents=True, exist_ok=True)
    loaded = {t.id: json.loads((Path(split_dir) / t.split_file()).read_text()) for t in TASKS}
    loc_videos = {r["video"][0] for r in loaded["crash_localization"][:size]}
    for task in TASKS:
        records = loaded[task.id]
        if task.id == "pre_crash_localization":
            records = [r for r in records if r["video"][0] in loc_videos]
        (folder / task.split_file()).write_text(json.dumps(records[:size]))
    return folder
