"""A baseline row made the way a researcher makes one: a transformers video-LLM through `predict
--model hf:DIR` on a mini split, its output and provenance through the live app's `/submit`, and
the row in `/leaderboard` saying how it was produced (issue 12's check)."""

from __future__ import annotations

import pytest
from hf_families import write_family
from live_app import LiveApp
from mini_split import expected_rows, write_mini_split

from crashchat import predict, provenance

FAMILIES = ("qwen2_vl", "llava_onevision")


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    """Each family's predictions and provenance on the mini split (the model runs once per family)."""
    root = tmp_path_factory.mktemp("e2e")
    split, videos = write_mini_split(root / "data")
    outputs = {}
    for family in FAMILIES:
        checkpoint = write_family(family, root / family)
        out = root / f"{family}.jsonl"
        assert predict.main(["--split-dir", str(split), "--videos-dir", str(videos), "--out", str(out), "--model",
                             f"hf:{checkpoint}", "--max-new-tokens", "3", "--no-progress", "--device", "cpu"]) == 0
        outputs[family] = (out, out.with_name(out.name + provenance.SUFFIX))
    return split, outputs


def test_baseline_rows_show_how_they_were_produced(produced, tmp_path):
    from gradio_client import Client, handle_file

    split, outputs = produced
    app = LiveApp(tmp_path / "board.sqlite3", split)
    app.start()
    try:
        client = Client(app.url, verbose=False)
        for family, (out, meta) in outputs.items():
            result = client.predict(files=[handle_file(str(out)), handle_file(str(meta))], model=f"tiny {family}",
                                    notes="tiny random checkpoint, end-to-end test", api_name="/submit")
            assert result["leaderboard"]["added"], result["leaderboard"]
            assert result["leaderboard"]["provenance"]["model"]["family"] == family
            assert result["validation"]["crash_recognition"]["matched"] == 3
        rows = {r["model"]: r for r in client.predict("strict", api_name="/leaderboard")["rows"]}
        for family, (_, meta) in outputs.items():
            row = rows[f"tiny {family}"]
            assert row["how_produced"] == provenance.describe(provenance.loads(meta.read_bytes()))
            assert row["how_produced"].startswith(f"zero-shot, {family}, 96 frames @ 10 fps, greedy, max 3 tokens")
            answered = len(expected_rows())
            assert row["complete"] is False and answered < 26  # two of the five videos cannot be read
    finally:
        app.stop()
