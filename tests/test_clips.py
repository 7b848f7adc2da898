"""`crashchat data fetch`: clips gathered from nested folders, a zip, a tar and an archive inside
an archive, with missing, corrupt and hostile entries; the Hub path through a local stand-in for
`snapshot_download` (never the network); re-runs that read nothing again."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
from mini_split import ANSWERS

from crashchat import clips
from crashchat.tasks import TASKS

# name -> where the source holds it
LAYOUT = {
    "p0.mp4": "CrashChat-resized/videos/deep/p0.mp4",        # nested plain file
    "p1.mp4": "CrashChat-resized/p1.mp4",                    # plain file
    "z0.mp4": "CrashChat-resized_02/part1.zip!clips/z0.mp4",  # in a zip
    "t0.mp4": "CrashChat-resized_02/part2.tar.gz!t0.mp4",     # in a gzipped tar
    "i0.mp4": "CrashChat-resized_02/part2.tar.gz!inner/more.zip!i0.mp4",  # a zip inside the tar
    "bad.mp4": "CrashChat-resized/bad.mp4",                  # text named like a video: corrupt
    "esc.mp4": "CrashChat-resized/evil.tar!../../esc.mp4",   # path traversal: refused
    "lnk.mp4": "CrashChat-resized/evil.tar!lnk.mp4",         # a symlink member: refused
    "m0.mp4": "CrashChat-original/m0.mp4",                   # only in the other variant: missing
}
PRESENT = ["p0.mp4", "p1.mp4", "z0.mp4", "t0.mp4", "i0.mp4"]


def write_split(folder: Path, names: list[str]) -> Path:
    """Six test files in the authors' layout asking about `names` (answers do not matter here,
    but must read as their task's kind: a split whose truth does not parse is refused)."""
    folder.mkdir(parents=True)
    for task in TASKS:
        answer = ANSWERS[task.kind] or "Yes"
        records = [{"video": [f"videos/{n}"], "source": "MM-AU-CAP",
                    "conversations": [{"from": "human", "value": f"<video>\n{task.prompt}"},
                                      {"from": "gpt", "value": answer}]} for n in names]
        (folder / task.split_file()).write_text(json.dumps(records))
    return folder


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> dict[str, bytes]:
    from crashchat.synthetic import write_clip

    folder = tmp_path_factory.mktemp("raw")
    return {name: write_clip(folder / name, seconds=1.0, size=(64, 64), seed=i).read_bytes()
            for i, name in enumerate(PRESENT + ["m0.mp4", "esc.mp4", "lnk.mp4"])}


@pytest.fixture
def dataset(tmp_path, clip_bytes) -> Path:
    """A folder laid out like the Hub dataset might be (see LAYOUT)."""
    root = tmp_path / "download"
    for name in ("p0.mp4", "p1.mp4", "m0.mp4"):
        target = root / LAYOUT[name]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(clip_bytes[name])
    (root / LAYOUT["bad.mp4"]).write_text("not a video\n" * 50)
    (root / "CrashChat-original" / "p0.mp4").write_bytes(clip_bytes["m0.mp4"])  # the other variant's p0
    part2 = root / "CrashChat-resized_02"
    part2.mkdir(parents=True)
    with zipfile.ZipFile(part2 / "part1.zip", "w") as zf:
        zf.writestr("clips/z0.mp4", clip_bytes["z0.mp4"])
        zf.writestr("clips/readme.txt", "ignored")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("i0.mp4", clip_bytes["i0.mp4"])
    with tarfile.open(part2 / "part2.tar.gz", "w:gz") as tf:
        _tar_add(tf, "t0.mp4", clip_bytes["t0.mp4"])
        _tar_add(tf, "inner/more.zip", inner.getvalue())
    with tarfile.open(root / "CrashChat-resized" / "evil.tar", "w") as tf:
        _tar_add(tf, "../../esc.mp4", clip_bytes["esc.mp4"])
        link = tarfile.TarInfo("lnk.mp4")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    return root


@pytest.fixture
def split(tmp_path) -> Path:
    return write_split(tmp_path / "split", list(LAYOUT))


def _fetch(*args: str) -> int:
    return clips.main(["fetch", "--no-progress", *args])


def test_fetch_from_a_folder(dataset, split, tmp_path, capsys):
    dest = tmp_path / "clips"
    assert _fetch("--source", str(dataset), "--dest", str(dest), "--split-dir", str(split)) == 1
    out, err = capsys.readouterr()
    assert f"5 of {len(LAYOUT)} clips of the split present in {dest}" in out
    assert "error: 3 clips missing: esc.mp4, lnk.mp4, m0.mp4" in err  # m0 is only in the other variant
    assert "corrupt: bad.mp4: not a readable video" in err
    assert "error: 1 clips do not open as videos: bad.mp4" in err
    assert "evil.tar!../../esc.mp4: refused: its path leaves the destination" in err
    assert "evil.tar!lnk.mp4: refused: a symbolic link" in err
    assert not (tmp_path / "esc.mp4").exists() and not (dest.parent / "esc.mp4").exists()
    assert sorted(p.name for p in dest.iterdir()) == sorted(PRESENT + ["manifest.json"])  # no partials, no staging

    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["present"] == 5 and manifest["needed"] == len(LAYOUT)
    assert manifest["missing"] == ["esc.mp4", "lnk.mp4", "m0.mp4"] and list(manifest["corrupt"]) == ["bad.mp4"]
    assert manifest["dataset"] == str(dataset) and manifest["split"]["official"] is False
    for name in PRESENT:
        entry = manifest["clips"][name]
        assert entry["source"] == LAYOUT[name], name
        assert entry["sha256"] == clips.sha256_file(dest / name)
        assert entry["size"] == (dest / name).stat().st_size and entry["duration_s"] == pytest.approx(1.0, abs=0.15)
    # plain files are hard links (no second copy); archive members are extracted
    assert (dest / "p0.mp4").stat().st_ino == (dataset / LAYOUT["p0.mp4"]).stat().st_ino
    assert manifest["clips"]["p0.mp4"]["how"] == "hardlink" and manifest["clips"]["t0.mp4"]["how"] == "extracted"
    # the other variant's clip of the same name was not used
    assert (dest / "p0.mp4").read_bytes() == (dataset / LAYOUT["p0.mp4"]).read_bytes()


def test_rerun_reads_nothing_again(dataset, split, tmp_path, monkeypatch, capsys):
    dest = tmp_path / "clips"
    needed = list(PRESENT)
    calls = {"source": 0, "hash": 0}
    real_hash = clips.sha256_file

    def source():
        calls["source"] += 1
        return clips.local_source(dataset)

    def counting_hash(path):
        calls["hash"] += 1
        return real_hash(path)

    monkeypatch.setattr(clips, "sha256_file", counting_hash)
    first = clips.fetch(needed, dest, source, progress=False)
    assert first.complete and first.present == needed and calls == {"source": 1, "hash": 5}
    again = clips.fetch(needed, dest, source, progress=False)
    assert again.complete and again.how == {"kept": 5}
    assert calls == {"source": 1, "hash": 5}  # no source read, no hash: size and mtime matched

    # a clip touched since (same bytes) is recognised by its hash; a replaced one is checked again
    os.utime(dest / "p1.mp4", ns=(1, 1))
    (dest / "z0.mp4").unlink()
    shutil.copy(dest / "t0.mp4", dest / "z0.mp4")
    third = clips.fetch(needed, dest, source, progress=False)
    assert third.complete and third.how == {"kept": 4, "adopted": 1}
    assert calls["source"] == 1
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["clips"]["z0.mp4"]["source"] == "already in the destination"
    assert manifest["dataset"] == str(dataset)  # what the first fetch knew of its source is kept


def test_corrupt_clip_in_the_destination_is_replaced_from_the_source(dataset, tmp_path):
    dest = tmp_path / "clips"
    dest.mkdir()
    (dest / "p1.mp4").write_text("garbage")
    report = clips.fetch(["p1.mp4"], dest, lambda: clips.local_source(dataset), progress=False)
    assert report.complete and report.how == {"hardlink": 1}
    assert (dest / "p1.mp4").read_bytes() == (dataset / LAYOUT["p1.mp4"]).read_bytes()


def test_hub_download_only_the_variants_folders(dataset, split, tmp_path, monkeypatch, capsys):
    """A stand-in for `snapshot_download` that copies from a local folder into a snapshot-shaped
    path, honouring `allow_patterns` as the Hub does (fnmatch, `*` crosses `/`)."""
    import fnmatch

    import huggingface_hub

    calls = []
    commit = "0123456789abcdef0123456789abcdef01234567"

    def fake_snapshot_download(repo_id, *, repo_type=None, revision=None, allow_patterns=None, **kwargs):
        calls.append({"repo_id": repo_id, "repo_type": repo_type, "revision": revision,
                      "allow_patterns": allow_patterns, **kwargs})
        snap = tmp_path / "hub" / f"datasets--{repo_id.replace('/', '--')}" / "snapshots" / commit
        for path in dataset.rglob("*"):
            rel = path.relative_to(dataset).as_posix()
            if path.is_file() and any(fnmatch.fnmatchcase(rel, p) for p in allow_patterns):
                (snap / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, snap / rel)
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setenv("CRASHCHAT_CACHE", str(tmp_path / "cache"))
    assert _fetch("--split-dir", str(split)) == 1  # the defaults: hf:KDliang/CrashChat, resized, the cache
    out, _ = capsys.readouterr()
    dest = tmp_path / "cache" / "videos" / "resized"
    assert dest == clips.default_dest("resized")
    assert f"5 of {len(LAYOUT)} clips of the split present in {dest} from hf:KDliang/CrashChat @ 0123456789ab" in out
    assert calls == [{"repo_id": "KDliang/CrashChat", "repo_type": "dataset", "revision": None,
                      "allow_patterns": ["CrashChat-resized/*", "CrashChat-resized_02/*"]}]
    assert not (tmp_path / "hub").joinpath("datasets--KDliang--CrashChat", "snapshots", commit,
                                           "CrashChat-original").exists()
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["revision"] == commit and manifest["clips"]["z0.mp4"]["revision"] == commit

    assert _fetch("--split-dir", str(split), "--variant", "original", "--source", "hf:KDliang/CrashChat@v1") == 1
    assert calls[-1]["allow_patterns"] == ["CrashChat-original/*", "CrashChat-original_02/*"]
    assert calls[-1]["revision"] == "v1"
    out, _ = capsys.readouterr()
    assert "2 of 9 clips" in out  # the original folders hold m0 and their own p0
    original = clips.default_dest("original")
    assert (original / "p0.mp4").read_bytes() == (dataset / "CrashChat-original" / "p0.mp4").read_bytes()


def test_unreachable_hub_is_one_line(split, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'\nmore detail")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    assert _fetch("--split-dir", str(split), "--dest", str(tmp_path / "d")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "downloading CrashChat-resized, CrashChat-resized_02 of hf:KDliang/CrashChat (resumable)"
    assert err[1].startswith("error: cannot download hf:KDliang/CrashChat (ConnectionError: Failed to resolve")
    assert "--source DIR" in err[1] and len(err) == 2


@pytest.mark.parametrize("argv, message", [
    (["--source", "/no/such/folder"], "error: --source /no/such/folder: no such folder"),
    (["--source", "hf:justaname"], "error: --source hf:justaname: expected hf:OWNER/NAME[@REVISION] or a folder"),
])
def test_bad_source_is_one_line(split, tmp_path, capsys, argv, message):
    assert _fetch("--split-dir", str(split), "--dest", str(tmp_path / "d"), *argv) == 2
    assert capsys.readouterr().err.strip() == message


def test_hostile_archive_members_are_refused(tmp_path, clip_bytes):
    src = tmp_path / "src"
    src.mkdir()
    with zipfile.ZipFile(src / "a.zip", "w") as zf:
        zf.writestr("/abs/a0.mp4", clip_bytes["p0.mp4"])
        zf.writestr("..\\..\\a1.mp4", clip_bytes["p0.mp4"])
        link = zipfile.ZipInfo("a2.mp4")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
        zf.writestr("ok/a3.mp4", clip_bytes["p1.mp4"])
    with tarfile.open(src / "b.tar", "w") as tf:
        huge = tarfile.TarInfo("b0.mp4")
        huge.size = 0
        tf.addfile(huge)
        dev = tarfile.TarInfo("b1.mp4")
        dev.type = tarfile.CHRTYPE
        tf.addfile(dev)
    (src / "c.zip").write_bytes(b"PK\x03\x04 not really a zip")
    dest = tmp_path / "out" / "dest"
    report = clips.fetch(["a0.mp4", "a1.mp4", "a2.mp4", "a3.mp4", "b0.mp4", "b1.mp4"], dest,
                         lambda: clips.local_source(src), progress=False)
    assert report.present == ["a3.mp4"] and report.missing == ["a0.mp4", "a1.mp4", "a2.mp4", "b1.mp4"]
    assert report.corrupt == {"b0.mp4": "the file is empty (0 bytes)"}
    assert any(r.startswith("a.zip!/abs/a0.mp4: refused: its path leaves") for r in report.refused)
    assert any(r.startswith("a.zip!..\\..\\a1.mp4: refused: its path leaves") for r in report.refused)
    assert "a.zip!a2.mp4: refused: a symbolic link" in report.refused
    assert "b.tar!b1.mp4: refused: not a regular file" in report.refused
    assert any(r.startswith("c.zip: not a readable archive") for r in report.refused)
    assert sorted(p.name for p in tmp_path.rglob("*.mp4") if src not in p.parents) == ["a3.mp4"]


def test_member_larger_than_declared_is_cut(tmp_path):
    """A member may not write more than the size its header declares (a lying zip bomb)."""
    with pytest.raises(ValueError, match="holds more than its declared 10 bytes"):
        clips._copy_bounded(io.BytesIO(b"x" * (3 << 20)), tmp_path / "out", 10)
    assert (tmp_path / "out").stat().st_size == 0


def test_split_names_that_cannot_be_file_names(tmp_path):
    with pytest.raises(clips.FetchError, match="cannot be a file name"):
        clips.fetch([".."], tmp_path / "d", lambda: clips.local_source(tmp_path), progress=False)


def test_data_is_a_command():
    from crashchat.__main__ import COMMANDS

    assert COMMANDS["data"][0] == "crashchat.clips:main"


def test_a_newcomer_needs_two_commands(tmp_path, monkeypatch, capsys, one_thread):
    """`crashchat data fetch` then `crashchat predict --out ...` with every default (the split from
    CRASHCHAT_SPLIT_DIR, the Hub served by a local mirror holding the clips in a zip), then scored."""
    import huggingface_hub
    from mini_split import VIDEOS, write_mini_split

    from crashchat import predict
    from leaderboard.__main__ import score_command

    readable = [v for v in VIDEOS if v[2] == "ok"]
    split, root = write_mini_split(tmp_path / "data", readable)
    mirror = tmp_path / "mirror" / "snapshots" / ("f" * 40)
    (mirror / "CrashChat-resized").mkdir(parents=True)
    with zipfile.ZipFile(mirror / "CrashChat-resized" / "videos.zip", "w") as zf:
        for name, _, _ in readable:
            zf.write(root / "videos" / name, f"videos/{name}")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: str(mirror))
    monkeypatch.setenv("CRASHCHAT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CRASHCHAT_SPLIT_DIR", str(split))
    monkeypatch.chdir(tmp_path)

    assert clips.main(["fetch", "--no-progress"]) == 0
    assert f"3 of 3 clips of the split present in {clips.default_dest()}" in capsys.readouterr().out
    assert predict.main(["--out", "preds.jsonl", "--model", "tiny-random", "--device", "cpu", "--max-new-tokens", "3",
                         "--no-progress"]) == 0
    assert "videos: 3 of 3 found" in capsys.readouterr().err
    assert score_command(["preds.jsonl", "--bootstrap", "0"]) == 0
