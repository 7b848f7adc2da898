"""The benchmark's video clips: `crashchat data fetch` gathers every clip the test split names into one checked folder.

    crashchat data fetch [--variant resized|original] [--source hf:REPO[@REV] | DIR] [--dest DIR] [--split-dir DIR]

The authors publish the clips in the Hub dataset `KDliang/CrashChat`, one variant per pair of
folders (`CrashChat-resized` + `CrashChat-resized_02`, `CrashChat-original` + `CrashChat-original_02`).
Nobody here could list them, so the layout inside is not assumed: plain videos at any depth, and
zip/tar archives (also inside each other, two levels deep) are all searched for the split's names.

- Source: the Hub (`huggingface_hub.snapshot_download` of the variant's folders only: resumable,
  with its own progress bars, into the Hub cache) or a folder downloaded by hand (`--source DIR`;
  when it holds the variant folders, only the chosen variant's are read).
- Destination: `DEST/<name>.mp4` for every clip the split names as `videos/<name>.mp4`, hard-linked
  from the source (no second copy), else symlinked, else copied; archive members are extracted
  there directly, and only the members the split needs. Default `DEST`: `default_dest(variant)`
  in the cache (`CRASHCHAT_CACHE`), which `predict --videos-dir` uses by default.
- Archives are hostile until checked: a member whose path is absolute or climbs out (`..`), a
  link, a device, an encrypted or over-size member is refused and reported, never written.
- Every clip is probed (`crashchat.video.probe`: container header, duration, size; no decoding).
  A clip that does not open is reported with the reason and not counted present.
- `DEST/manifest.json` records each present clip (size, mtime, sha256, duration, where it came
  from, the dataset revision) and what is missing or corrupt. A re-run skips clips whose entry
  still matches (size and mtime, else the hash), and touches no source when nothing is missing.
- Exit code 0 when every clip of the split is present, 1 when some are missing or corrupt (count
  and first names printed), 2 for unusable arguments or an unreachable source.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from crashchat.video import SUPPORTED_SUFFIXES, VideoError, VideoLimits, probe
from crashchat.weights import cache_root, revision_of

DATASET = "KDliang/CrashChat"
VARIANTS = {
    # The dataset card names no split between a folder and its `_02` twin: both are read.
    "resized": ("CrashChat-resized", "CrashChat-resized_02"),
    "original": ("CrashChat-original", "CrashChat-original_02"),
}
DEFAULT_VARIANT = "resized"
MANIFEST = "manifest.json"
FORMAT = "crashchat-clips/1"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
MAX_ARCHIVE_DEPTH = 2
"""Archives inside archives are opened this deep (1: only archives found in the source)."""
MAX_ARCHIVE_MEMBER_BYTES = 200 * 1024**3
"""An archive inside an archive larger than this is refused (a video member obeys `VideoLimits.max_bytes`)."""
MAX_MEMBERS = 1_000_000
"""Members read per archive: a listing longer than this is not a clip collection."""
SHOWN = 10
"""How many names a message lists before `(+N more)`."""
_PARTIAL = ".partial."
_STAGING = ".unpack"


class FetchError(Exception):
    """The clips cannot be fetched at all (bad source, unreachable Hub, bad split); one line."""


def default_dest(variant: str = DEFAULT_VARIANT) -> Path:
    """Where `data fetch` puts a variant's clips, and where `predict` looks for them by default."""
    return cache_root() / "videos" / variant


def is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def listing(names: list[str], shown: int = SHOWN) -> str:
    """`a, b, c (+4 more)`.

    >>> listing(["a", "b", "c"], 2)
    'a, b (+1 more)'
    """
    head = ", ".join(names[:shown])
    return head + (f" (+{len(names) - shown} more)" if len(names) > shown else "")


# --- where the clips come from ------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A local folder holding the clips (a Hub snapshot or a manual download)."""

    root: Path
    label: str
    """What the manifest and the messages call it: `hf:KDliang/CrashChat` or the folder."""
    revision: str | None = None
    """The dataset's commit, when known (a Hub snapshot, or a folder `hf download --local-dir` wrote)."""


def patterns(variant: str) -> list[str]:
    """`allow_patterns` that download only the variant's folders (fnmatch: `*` crosses `/`)."""
    return [f"{folder}/*" for folder in VARIANTS[variant]]


def hub_source(repo: str, variant: str, *, revision: str | None = None, download: Callable | None = None) -> Source:
    """Download (or resume) the variant's folders of a Hub dataset; `download` stands in for
    `huggingface_hub.snapshot_download` in tests."""
    if download is None:
        from huggingface_hub import snapshot_download as download
    try:
        folder = Path(download(repo, repo_type="dataset", revision=revision, allow_patterns=patterns(variant)))
    except Exception as exc:  # offline, unknown repo, gated: one line with advice
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise FetchError(f"cannot download hf:{repo} ({type(exc).__name__}: {first}); check the network or "
                         "HF_TOKEN, or download it yourself and pass --source DIR") from None
    return Source(folder, f"hf:{repo}", revision_of(folder) or revision)


def local_source(folder: Path) -> Source:
    if not folder.is_dir():
        raise FetchError(f"--source {folder}: no such folder")
    return Source(folder, str(folder), revision_of(folder) or _local_dir_revision(folder))


def _local_dir_revision(folder: Path) -> str | None:
    """The commit `hf download --local-dir` recorded (first line of its `.metadata` files), if one."""
    meta = folder / ".cache" / "huggingface" / "download"
    if not meta.is_dir():
        return None
    for path in sorted(meta.rglob("*.metadata"))[:1]:
        with contextlib.suppress(OSError, IndexError):
            line = path.read_text(encoding="utf-8").splitlines()[0].strip()
            if len(line) == 40 and all(c in "0123456789abcdef" for c in line):
                return line
    return None


def scan_roots(source: Path, variant: str) -> list[Path]:
    """The variant's folders when the source holds any variant folder, else the whole source."""
    known = {name for folders in VARIANTS.values() for name in folders}
    if any((source / name).is_dir() for name in known):
        return [source / name for name in VARIANTS[variant] if (source / name).is_dir()]
    return [source]


@dataclass
class Found:
    """What a source holds: video files by basename (in path order) and archives."""

    videos: dict[str, list[Path]] = field(default_factory=dict)
    archives: list[Path] = field(default_factory=list)


def scan(roots: list[Path], skip: Path | None = None) -> Found:
    """Walk the roots (no symlinked folders, no hidden folders, not `skip`) for videos and archives."""
    found = Found()
    skip_resolved = skip.resolve() if skip is not None else None
    for root in roots:
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != skip_resolved)
            for name in sorted(files):
                if name.startswith("."):
                    continue
                if is_archive(name):
                    found.archives.append(here / name)
                elif Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                    found.videos.setdefault(name, []).append(here / name)
    return found


# --- the manifest -------------------------------------------------------------------------------


def read_manifest(dest: Path) -> dict:
    """The manifest's clip entries by name; an unreadable or foreign manifest counts as empty."""
    try:
        data = json.loads((dest / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("clips"), dict):
        return {}
    return {k: v for k, v in data["clips"].items() if isinstance(v, dict)}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _still_valid(path: Path, entry: dict | None) -> bool:
    """The clip at `path` is the one its manifest entry describes (size and mtime, else the hash)."""
    if entry is None:
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != entry.get("size"):
        return False
    if st.st_mtime_ns == entry.get("mtime_ns"):
        return True
    if sha256_file(path) == entry.get("sha256"):
        entry["mtime_ns"] = st.st_mtime_ns
        return True
    return False


# --- placing one clip ---------------------------------------------------------------------------


def link_or_copy(src: Path, dst: Path) -> str:
    """Hard link, else symlink, else copy `src` (symlinks resolved) to `dst`; returns which."""
    target = src.resolve()
    try:
        os.link(target, dst)
        return "hardlink"
    except OSError:
        pass
    try:
        os.symlink(target, dst)
        return "symlink"
    except OSError:
        pass
    shutil.copy2(target, dst)
    return "copy"


def _partial(dest: Path, name: str) -> Path:
    """A hidden staging name in DEST that keeps the clip's suffix (the probe checks it)."""
    path = dest / f"{_PARTIAL}{name}"
    path.unlink(missing_ok=True)
    return path


def _finish(tmp: Path, dest: Path, name: str, how: str, source: str, revision: str | None,
            limits: VideoLimits) -> tuple[dict | None, str | None]:
    """Probe the staged clip; move it into place and return its entry, or remove it and say why."""
    try:
        duration, fps, width, height = probe(tmp, limits)
    except VideoError as exc:
        if tmp != dest / name:
            tmp.unlink(missing_ok=True)
        return None, str(exc).replace(f"{tmp}: ", "", 1)
    final = dest / name
    if tmp != final:
        os.replace(tmp, final)
    st = final.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(final),
            "duration_s": round(duration, 3), "fps": round(fps, 3), "width": width, "height": height,
            "source": source, "revision": revision, "how": how}, None


# --- archives -----------------------------------------------------------------------------------


def safe_member_path(name: str) -> PurePosixPath | None:
    """The member's relative path, or None when it is absolute, climbs out or is empty.

    >>> str(safe_member_path("a/b/c.mp4")), safe_member_path("../c.mp4"), safe_member_path("/etc/x")
    ('a/b/c.mp4', None, None)
    >>> safe_member_path("C:\\\\x.mp4"), safe_member_path("a\\\\..\\\\..\\\\x.mp4")
    (None, None)
    """
    if "\x00" in name:
        return None
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return None
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return PurePosixPath(*parts)


@dataclass(frozen=True)
class Member:
    """One archive member, read-only view over zip and tar."""

    name: str
    size: int
    problem: str | None
    """Why it may not be extracted (a link, a device, encrypted), None when it is a plain file."""
    handle: object


def _zip_members(zf: zipfile.ZipFile) -> Iterator[Member]:
    for info in zf.infolist():
        if info.is_dir():
            continue
        mode = (info.external_attr >> 16) & 0o170000
        problem = ("a symbolic link" if mode == 0o120000 else "not a regular file" if mode not in (0, 0o100000)
                   else "encrypted" if info.flag_bits & 0x1 else None)
        yield Member(info.filename, info.file_size, problem, info)


def _tar_members(tf: tarfile.TarFile) -> Iterator[Member]:
    for info in tf:
        if info.isdir():
            continue
        problem = ("a symbolic link" if info.issym() else "a hard link" if info.islnk()
                   else None if info.isfile() else "not a regular file")
        yield Member(info.name, info.size, problem, info)


@contextlib.contextmanager
def open_archive(path: Path):
    """(members, open_member) of a zip or tar; tar is read as a stream (forward only, once)."""
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            yield _zip_members(zf), zf.open
    else:
        with tarfile.open(path, "r|*") as tf:
            yield _tar_members(tf), tf.extractfile


def _copy_bounded(src, dst: Path, limit: int) -> None:
    """Copy a member's stream, never writing more than `limit` bytes (its declared size)."""
    written = 0
    with open(dst, "wb") as out:
        for block in iter(lambda: src.read(1 << 20), b""):
            written += len(block)
            if written > limit:
                raise ValueError(f"holds more than its declared {limit} bytes")
            out.write(block)


# --- the fetch ----------------------------------------------------------------------------------


@dataclass
class Report:
    """What one fetch found; `present` + `missing` + `corrupt` cover every clip the split names."""

    dest: Path
    needed: list[str]
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    corrupt: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    """One line per archive member or archive refused (path leaves the destination, link, size...)."""
    how: dict[str, int] = field(default_factory=dict)
    """How present clips got there this run: kept, hardlink, symlink, copy, extracted."""
    duplicates: int = 0
    """Names found more than once in the source (the first, in path order, is used)."""
    unused: list[str] = field(default_factory=list)
    """Videos in the source that the split does not name (a hint when names do not match)."""
    source: Source | None = None

    @property
    def complete(self) -> bool:
        return not self.missing and not self.corrupt


class _Fetcher:
    def __init__(self, needed: list[str], dest: Path, limits: VideoLimits, progress: bool):
        self.dest, self.limits, self.progress = dest, limits, progress
        self.report = Report(dest, list(needed))
        self.entries = read_manifest(dest)
        self.todo: set[str] = set()
        self.source: Source | None = None
        self.counted: set[str] = set()
        self.bar = None
        """A progress bar over the clips placed from the source (checking hashes and headers)."""

    def start_bar(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=len(self.todo), desc="clips", unit="clip", disable=not self.progress, file=sys.stderr)

    def _placed(self, name: str, entry: dict | None, why: str | None) -> None:
        if self.bar is not None and name not in self.counted:
            self.counted.add(name)
            self.bar.update(1)
        if entry is not None:
            self.entries[name] = entry
            self.report.corrupt.pop(name, None)
            self.todo.discard(name)
            self.report.how[entry["how"]] = self.report.how.get(entry["how"], 0) + 1
        else:
            self.report.corrupt.setdefault(name, why or "unreadable")

    def check_existing(self) -> None:
        """Clips already in DEST: kept when their manifest entry matches; a clip the manifest does
        not describe (put there by hand, or changed since) is kept when it opens; others are fetched."""
        for name in self.report.needed:
            path = self.dest / name
            if _still_valid(path, self.entries.get(name)):
                self.report.how["kept"] = self.report.how.get("kept", 0) + 1
                continue
            self.todo.add(name)
            if path.is_file():
                entry, why = _finish(path, self.dest, name, "adopted", "already in the destination", None,
                                     self.limits)
                self._placed(name, entry, why)

    def from_folder(self, roots: list[Path], source_root: Path, depth: int) -> None:
        found = scan(roots, skip=self.dest)
        if depth == 0:
            needed = set(self.report.needed)
            self.report.duplicates += sum(1 for n, paths in found.videos.items() if len(paths) > 1 and n in needed)
            self.report.unused = sorted(n for n in found.videos if n not in needed)
        for name in sorted(self.todo & found.videos.keys()):
            candidates = found.videos[name]
            for src in candidates:  # the first that opens; a corrupt duplicate does not hide a good one
                tmp = _partial(self.dest, name)
                how = link_or_copy(src, tmp)
                entry, why = _finish(tmp, self.dest, name, how, self._where(src, source_root), self._revision(),
                                     self.limits)
                self._placed(name, entry, why)
                if entry is not None:
                    break
        for archive in found.archives:
            if not self.todo:
                break
            self.from_archive(archive, self._where(archive, source_root), depth + 1)

    def from_archive(self, archive: Path, label: str, depth: int) -> None:
        staging = self.dest / _STAGING / str(depth)
        inner: list[tuple[Path, str]] = []
        try:
            with open_archive(archive) as (members, open_member):
                for count, member in enumerate(members, start=1):
                    if count > MAX_MEMBERS:
                        self.report.refused.append(f"{label}: more than {MAX_MEMBERS} members; the rest not read")
                        break
                    base = member.name.replace("\\", "/").rsplit("/", 1)[-1]
                    nested = is_archive(base) and depth < MAX_ARCHIVE_DEPTH
                    if base not in self.todo and not nested:
                        continue
                    where = f"{label}!{member.name}"
                    path = safe_member_path(member.name)
                    limit = MAX_ARCHIVE_MEMBER_BYTES if nested else self.limits.max_bytes
                    problem = (member.problem or ("its path leaves the destination" if path is None else None)
                               or (f"declared size {member.size} bytes exceeds the {limit}-byte limit"
                                   if member.size > limit else None)
                               or ("not enough free disk space for it"
                                   if member.size > shutil.disk_usage(self.dest).free else None))
                    if problem:
                        self.report.refused.append(f"{where[:300]}: refused: {problem}")
                        continue
                    if nested:
                        target = staging / path
                        try:
                            target.parent.mkdir(parents=True, exist_ok=True)
                            with open_member(member.handle) as src:
                                _copy_bounded(src, target, member.size)
                        except (ValueError, OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
                            target.unlink(missing_ok=True)
                            self.report.refused.append(f"{where[:300]}: cannot extract ({exc})"[:400])
                            continue
                        inner.append((target, where))
                        continue
                    tmp = _partial(self.dest, base)
                    try:
                        with open_member(member.handle) as src:
                            _copy_bounded(src, tmp, member.size)
                    except (ValueError, OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
                        tmp.unlink(missing_ok=True)
                        self._placed(base, None, f"{where}: cannot extract ({exc})")
                        continue
                    self._placed(base, *_finish(tmp, self.dest, base, "extracted", where, self._revision(),
                                                self.limits))
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError, ValueError) as exc:
            self.report.refused.append(f"{label}: not a readable archive ({type(exc).__name__}: {exc})"[:300])
        for path, where in inner:
            if self.todo:
                self.from_archive(path, where, depth + 1)
            path.unlink(missing_ok=True)
        if depth == 1:
            shutil.rmtree(self.dest / _STAGING, ignore_errors=True)

    def _where(self, path: Path, root: Path) -> str:
        with contextlib.suppress(ValueError):
            return path.relative_to(root).as_posix()
        return str(path)

    def _revision(self) -> str | None:
        return self.source.revision if self.source is not None else None

    def finish(self, split_info: dict | None) -> Report:
        report = self.report
        for name in report.needed:
            if name in self.todo:
                if name not in report.corrupt:
                    report.missing.append(name)
            else:
                report.present.append(name)
        report.source = self.source
        present = set(report.present)
        clips = {n: e for n, e in sorted(self.entries.items())
                 if (n in present or n not in report.needed) and (self.dest / n).is_file()}
        manifest = {"format": FORMAT, "dataset": self.source.label if self.source else None,
                    "revision": self.source.revision if self.source else None, "split": split_info,
                    "needed": len(report.needed), "present": len(report.present), "missing": report.missing,
                    "corrupt": report.corrupt, "refused": report.refused, "clips": clips}
        if self.source is None:  # nothing fetched this run: keep what the last fetch knew of its source
            with contextlib.suppress(OSError, ValueError):
                old = json.loads((self.dest / MANIFEST).read_text(encoding="utf-8"))
                manifest["dataset"], manifest["revision"] = old.get("dataset"), old.get("revision")
        tmp = self.dest / (_PARTIAL + MANIFEST)
        tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(self.dest / MANIFEST)
        return report


def check_names(needed: list[str]) -> None:
    """The split's basenames become file names in DEST: no empty, hidden or path-like ones."""
    for name in needed:
        if not name or name.startswith(".") or "/" in name or "\\" in name or "\x00" in name:
            raise FetchError(f"the split names a video {name!r} that cannot be a file name in the destination")


def fetch(needed: list[str], dest: Path, source: Callable[[], Source], *, variant: str = DEFAULT_VARIANT,
          split_info: dict | None = None, limits: VideoLimits | None = None, progress: bool = True) -> Report:
    """Make `dest/<name>` a checked clip for every name in `needed`; `source()` is called only when
    something is missing (a re-run with everything in place reads no source)."""
    check_names(needed)
    dest.mkdir(parents=True, exist_ok=True)
    fetcher = _Fetcher(needed, dest, limits or VideoLimits(), progress)
    fetcher.check_existing()
    if fetcher.todo:
        fetcher.source = source()
        root = fetcher.source.root
        if root.resolve() == dest.resolve():
            raise FetchError(f"--source {root} is the destination itself; pass the download folder")
        fetcher.start_bar()
        try:
            fetcher.from_folder(scan_roots(root, variant), root, depth=0)
        finally:
            fetcher.bar.close()
    return fetcher.finish(split_info)


# --- command line -------------------------------------------------------------------------------


def needed_clips(split) -> list[str]:
    """Every video basename the split names, in task then file order, once each."""
    return list(dict.fromkeys(rec.video for records in split.records.values() for rec in records))


def parse_source(text: str | None) -> tuple[str, str | None] | Path:
    """`hf:REPO[@REV]` -> (repo, revision); anything else is a folder."""
    text = text or f"hf:{DATASET}"
    if not text.startswith("hf:"):
        return Path(text).expanduser()
    repo, _, rev = text[3:].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise FetchError(f"--source {text}: expected hf:OWNER/NAME[@REVISION] or a folder")
    return repo, rev or None


def fetch_command(args: argparse.Namespace) -> int:
    from leaderboard.split import SplitError, load_split

    try:
        split = load_split(args.split_dir)
        needed = needed_clips(split)
        if not needed:
            raise FetchError(f"the split in {split.dir} names no videos")
        where = parse_source(args.source)
        if isinstance(where, Path):
            def source() -> Source:
                return local_source(where)
        else:
            def source() -> Source:
                print(f"downloading {', '.join(VARIANTS[args.variant])} of hf:{where[0]} (resumable)", file=sys.stderr)
                return hub_source(where[0], args.variant, revision=where[1])
        dest = args.dest.expanduser() if args.dest else default_dest(args.variant)
        report = fetch(needed, dest, source, variant=args.variant, progress=not args.no_progress,
                       split_info={"dir": str(split.dir), "sha256": split.sha256, "official": split.official})
    except (FetchError, SplitError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a destination that cannot be written
        print(f"error: {exc.filename or args.dest}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return print_report(report)


def print_report(report: Report) -> int:
    for line in report.refused[:SHOWN]:
        print(f"warning: {line}", file=sys.stderr)
    if len(report.refused) > SHOWN:
        print(f"warning: {len(report.refused) - SHOWN} more archive members refused (see the manifest)", file=sys.stderr)
    for name, why in list(report.corrupt.items())[:SHOWN]:
        print(f"corrupt: {name}: {why}", file=sys.stderr)
    if len(report.corrupt) > SHOWN:
        print(f"corrupt: {len(report.corrupt) - SHOWN} more (see the manifest)", file=sys.stderr)
    if report.duplicates:
        print(f"note: {report.duplicates} clip names were found more than once; the first in path order "
              "that opens was used", file=sys.stderr)
    how = ", ".join(f"{v} {k}" for k, v in sorted(report.how.items()))
    origin = f" from {report.source.label}" if report.source else ""
    revision = f" @ {report.source.revision[:12]}" if report.source and report.source.revision else ""
    print(f"{len(report.present)} of {len(report.needed)} clips of the split present in {report.dest}"
          f"{origin}{revision}" + (f" ({how})" if how else ""))
    if report.complete:
        return 0
    if report.missing:
        print(f"error: {len(report.missing)} clips missing: {listing(report.missing)}", file=sys.stderr)
        if report.unused and report.source is not None:
            print(f"note: the source holds {len(report.unused)} videos the split does not name, e.g. "
                  f"{listing(report.unused, 3)}", file=sys.stderr)
    if report.corrupt:
        print(f"error: {len(report.corrupt)} clips do not open as videos: {listing(list(report.corrupt))}",
              file=sys.stderr)
    return 1


def main(argv: list[str], prog: str = "python -m crashchat data") -> int:
    parser = argparse.ArgumentParser(prog=prog, description="The benchmark's video clips.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("fetch", help="download (or take) and check every clip the test split names",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", choices=sorted(VARIANTS), default=DEFAULT_VARIANT,
                   help=f"which published clips (default {DEFAULT_VARIANT})")
    p.add_argument("--source", metavar="hf:REPO[@REV] | DIR",
                   help=f"the Hub dataset (default hf:{DATASET}) or a folder you downloaded yourself")
    p.add_argument("--dest", type=Path, metavar="DIR",
                   help="where the clips go (default $CRASHCHAT_CACHE/videos/VARIANT, which predict reads by default)")
    p.add_argument("--split-dir", metavar="DIR",
                   help="the test split (default CRASHCHAT_SPLIT_DIR, else a verified download)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while checking clips")
    args = parser.parse_args(argv)
    return fetch_command(args)
