import json
import os
import subprocess
import sys
from pathlib import Path

from submissions import random_responses, write_jsonl

from leaderboard.__main__ import main


def test_score_writes_json_and_table(tmp_path, split_dir, capsys):
    path = write_jsonl(tmp_path / "p.jsonl", random_responses(split_dir, seed=4))
    out = tmp_path / "r.json"
    code = main(["score", str(path), "--split-dir", str(split_dir), "--bootstrap", "50",
                 "--protocol", "strict", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "protocol strict" in printed and "Prevention reasoning" in printed
    result = json.loads(out.read_text())
    assert set(result["protocols"]) == {"paper", "strict"} and result["bootstrap"]["resamples"] == 50


def test_user_errors_are_one_line_exit_2(tmp_path, split_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "x.mp4", "task": "crash_recognition", "response": "Yes"}\n{oops}\n')
    for args in ([str(bad)], [str(tmp_path / "missing.csv")]):
        run = subprocess.run([sys.executable, "-m", "leaderboard", "score", *args, "--split-dir", str(split_dir)],
                             capture_output=True, text=True)
        assert run.returncode == 2
        assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ") and "Traceback" not in run.stderr
    assert "bad.jsonl:2: not valid JSON" in subprocess.run(
        [sys.executable, "-m", "leaderboard", "score", str(bad), "--split-dir", str(split_dir)],
        capture_output=True, text=True).stderr


def test_bad_split_dir(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text("{}")
    assert main(["score", str(path), "--split-dir", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_says_what_a_user_needs_to_know(tmp_path, split_dir):
    """A binary file is not a text file; an empty store says so."""
    repo = Path(__file__).resolve().parents[1]
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    done = subprocess.run([sys.executable, "-m", "leaderboard", "score", str(video), "--split-dir", str(split_dir)],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "clip.mp4: not a text file" in done.stderr
    listed = subprocess.run([sys.executable, "-m", "leaderboard", "list"], cwd=repo, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "CRASHCHAT_DB": str(tmp_path / "db.sqlite3")})
    assert listed.returncode == 0 and "no verified rows yet" in listed.stdout


def test_unavailable_bertscore_is_said_in_the_terminal(tmp_path, split_dir, monkeypatch, capsys):
    from leaderboard import scoring

    monkeypatch.setattr(scoring, "_bertscore", lambda pairs: (None, "roberta-large cannot be loaded (offline)"))
    path = write_jsonl(tmp_path / "p.jsonl", random_responses(split_dir, seed=3, missing=0.9))
    assert main(["score", str(path), "--split-dir", str(split_dir), "--bootstrap", "0", "--bertscore"]) == 0
    assert "note: BERTScore not computed: roberta-large cannot be loaded (offline)" in capsys.readouterr().err
