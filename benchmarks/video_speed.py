"""python benchmarks/video_speed.py [--repeat 5] [--baseline REV]

Seconds to load a 720p 10 s 30 fps synthetic clip (96 of 100 frames, RGB uint8) with
`crashchat.video.load_video`, beside the loader as it was at git revision REV (default: the
nearest-frame sampler that preceded the authors' fps-filter choice), in the same run, for decord
and for the PyAV fallback. The new loader adds one demuxing pass (no decoding) to list every
frame's pts; both decode the same number of frames. Median of --repeat runs each, old and new
alternating.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BASELINE = "8e9c45a^"  # the commit before "video: pick frames and labels exactly as the authors' loader"


def load_baseline(rev: str):
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:crashchat/video.py"], capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "video_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("video_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def timed_pair(load_old, load_new, path: Path, repeat: int) -> tuple[float, float]:
    """Medians of old and new, run alternately so that a busy machine slows both alike."""
    times: dict[str, list[float]] = {"old": [], "new": []}
    for _ in range(repeat):
        for name, load in (("old", load_old), ("new", load_new)):
            start = time.perf_counter()
            clip = load(path)
            times[name].append(time.perf_counter() - start)
            assert len(clip.frames) == 96
    return statistics.median(times["old"]), statistics.median(times["new"])


def refuse_decord(*args, **kwargs):
    raise ImportError("decord switched off for the benchmark")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", default=BASELINE, help="git revision of the old crashchat/video.py")
    args = parser.parse_args()

    from crashchat import video
    from crashchat.synthetic import write_clip

    old = load_baseline(args.baseline)
    clip_path = Path(tempfile.gettempdir()) / "crashchat_bench_720p_10s.mp4"
    if not clip_path.exists():
        write_clip(clip_path, seconds=10.0, fps=30, size=(1280, 720), scene="crash")
    print(f"{clip_path.name}: 1280x720, 10 s at 30 fps; median of {args.repeat} runs, seconds")
    print(f"{'backend':8} {'old':>7} {'new':>7} {'new/old':>8}")
    for backend in ("decord", "pyav"):
        saved = old._decode_decord, video._decode_decord
        if backend == "pyav":
            old._decode_decord = video._decode_decord = refuse_decord
        try:
            t_old, t_new = timed_pair(old.load_video, video.load_video, clip_path, args.repeat)
        finally:
            old._decode_decord, video._decode_decord = saved
        print(f"{backend:8} {t_old:7.3f} {t_new:7.3f} {t_new / t_old:8.2f}")


if __name__ == "__main__":
    main()
