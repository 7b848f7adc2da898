"""A baseline row made the way a researcher makes one: a transformers video-LLM through `predict
--model hf:DIR` on a mini split, its output and provenance through the live app's `/submit`, and
the row in `/leaderboard` saying how it was produced (issue 12's check).

The mini split's videos carry the names of real test-split videos, so its predictions are a
(partial) submission to the session's live app, which scores against the real split."""

from __future__ import annotations

import json

import pytest
from hf_families import write_family
from mini_split import expected_rows, write_mini_split

from crashchat import predict, provenance

FAMILIES = ("qwen2_vl", "llava_onevision")


def _real_names(split_dir) -> list[str]:
    """Five real video names in the mini split's order (crash, normal, crash, crash, normal); the
    crash ones have both localization records in the real split."""
    def names(task: str, answer: str | None = None) -> list[str]:
        records = json.loads((split_dir / f"crashchat_dada_video_total_{task}_test.json").read_text())
        return [r["video"][0].rsplit("/", 1)[-1] for r in records
                if answer is None or r["conversations"][1]["value"] == answer]

    located = set(names("crash_localization")) & set(names("pre_crash_localization"))
    crash = [n for n in names("crash_recognition", "Yes") if n in located][:3]
    normal = names("crash_recognition", "No")[:2]
    return [crash[0], normal[0], crash[1], crash[2], normal[1]]


@pytest.fixture(scope="module")
def produced(tmp_path_factory, split_dir):
    """Each family's predictions and provenance on the mini split (the model runs once per family)."""
    root = tmp_path_factory.mktemp("e2e")
    split, videos = write_mini_split(root / "data", names=_real_names(split_dir))
    outputs = {}
    for family in FAMILIES:
        checkpoint = write_family(family, root / family)
        out = root / f"{family}.jsonl"
        assert predict.main(["--split-dir", str(split), "--videos-dir", str(videos), "--out", str(out), "--model",
                             f"hf:{checkpoint}", "--max-new-tokens", "3", "--no-progress", "--device", "cpu"]) == 0
        outputs[family] = (out, out.with_name(out.name + provenance.SUFFIX))
    return split, outputs


def test_baseline_rows_show_how_they_were_produced(produced, live_board):
    from gradio_client import Client, handle_file

    _, outputs = produced
    client = Client(live_board.url, verbose=False)
    for family, (out, meta) in outputs.items():
        assert len(out.read_text().splitlines()) == len(expected_rows())  # two of the five videos cannot be read
        result = client.predict(files=[handle_file(str(out)), handle_file(str(meta))], model=f"e2e tiny {family}",
                                notes="tiny random checkpoint, end-to-end test", api_name="/submit")
        assert result["leaderboard"]["added"], result["leaderboard"]
        assert result["leaderboard"]["provenance"]["model"]["family"] == family
        assert result["validation"]["crash_recognition"]["matched"] == 3
    rows = {r["model"]: r for r in client.predict("strict", api_name="/leaderboard")["rows"]}
    for family, (_, meta) in outputs.items():
        row = rows[f"e2e tiny {family}"]
        assert row["how_produced"] == provenance.describe(provenance.loads(meta.read_bytes()))
        assert row["how_produced"].startswith(f"zero-shot, {family}, 96 frames @ 10 fps, greedy, max 3 tokens")
        assert row["complete"] is False  # a handful of the split's 9,679 questions
