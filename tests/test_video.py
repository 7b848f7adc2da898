"""Video input: the authors' frames and labels, both backends, bad files, isolation, the processor.

Every clip is written by the test (crashchat.synthetic) and carries its frame number as a barcode,
so the tests check *which* frames came back, not only how many. The reference for which frames and
labels is `tests/video_oracle.py`: libavfilter's real fps filter run through PyAV, plus the authors'
labels and thinning written from their description.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from video_oracle import authors_load, run_fps_filter_on_times

from crashchat import video
from crashchat.synthetic import BROKEN_KINDS, read_frame_number, write_broken, write_clip
from crashchat.video import (
    SUPPORTED_SUFFIXES,
    Clip,
    VideoError,
    VideoLimits,
    authors_labels,
    fps_filter,
    load_video,
    probe,
    run_isolated,
    thin,
)

REPO = Path(__file__).resolve().parents[1]

VFR_TIMES = [0.0, 0.05, 0.3, 0.33, 0.9, 1.0, 1.25, 1.7, 2.2, 2.5, 2.55, 2.6]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("video")
    return {
        "3s": write_clip(d / "three.mp4", seconds=3.0, fps=10),
        "20s": write_clip(d / "twenty.mp4", seconds=20.0, fps=10, scene="normal"),
        "25fps": write_clip(d / "pal.mp4", seconds=2.0, fps=25),
        # Irregular gaps as a dashcam under load writes them.
        "vfr": write_clip(d / "vfr.mp4", seconds=3.0, fps=10, times=VFR_TIMES),
    }


def numbers(frames: np.ndarray) -> list[int]:
    return [read_frame_number(f) for f in frames]


def _jittered_times(seed: int, count: int, gaps: tuple[float, float], long_gap: float | None = None) -> list[float]:
    """VFR presentation times (ms precision): random gaps, optionally one long stall in the middle."""
    rng = np.random.default_rng(seed)
    steps = rng.uniform(*gaps, count - 1)
    if long_gap:
        steps[len(steps) // 2] = long_gap
    return [0.0] + np.cumsum(steps).round(3).tolist()


# The generated clips compared with the oracle: (file name, write_clip arguments). Tiny frames for
# most (the barcode needs 48 px of width for 12 bits); one 320x240 and one 1080p.
ORACLE_CLIPS = {
    "cfr10": ("cfr10.mp4", {"seconds": 3.0, "fps": 10}),
    # 51 frames: the last, alone in slot 20, ends at 2.04 s, inside that slot, so the filter drops it.
    "cfr25_eof": ("cfr25.mp4", {"seconds": 2.04, "fps": 25}),
    "ntsc_320x240": ("ntsc.mp4", {"seconds": 12.0, "fps": Fraction(30000, 1001), "size": (320, 240)}),
    "cfr30_mkv": ("cfr30.mkv", {"seconds": 3.0, "fps": 30}),
    "cfr60_mov": ("cfr60.mov", {"seconds": 2.0, "fps": 60}),
    "vfr_mp4": ("vfr.mp4", {"seconds": 8.0, "times": _jittered_times(1, 80, (0.02, 0.2))}),
    "vfr_mkv_stall": ("vfr.mkv", {"seconds": 6.0, "times": _jittered_times(2, 50, (0.03, 0.15), long_gap=1.2)}),
    "start_0.5_mp4": ("start05.mp4", {"seconds": 2.0, "fps": 25, "start": 0.5}),
    "start_1.23_mkv": ("start123.mkv", {"seconds": 3.0, "fps": 30, "start": 1.23}),
    "start_1.23_ntsc_mp4": ("start123.mp4", {"seconds": 3.0, "fps": 30000 / 1001, "start": 1.23}),
    "start_0.37_webm": ("start037.webm", {"seconds": 2.0, "fps": 25, "start": 0.37}),
    "long_60s": ("long.mp4", {"seconds": 60.0, "fps": 10, "scene": "normal"}),
    "hd_1080p": ("hd.mp4", {"seconds": 2.0, "fps": 25, "size": (1920, 1080)}),
    "avi_mjpeg": ("intra.avi", {"seconds": 2.04, "fps": 25, "codec": "mjpeg"}),
}


@pytest.fixture(scope="module")
def oracle_clip(tmp_path_factory):
    """name -> (path, what the authors' loader gives for it); written and run once per module."""
    folder = tmp_path_factory.mktemp("oracle")
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            filename, kwargs = ORACLE_CLIPS[name]
            kwargs = dict(kwargs, size=kwargs.get("size", (64, 48)))
            path = write_clip(folder / filename, **kwargs)
            cache[name] = path, authors_load(path)
        return cache[name]

    return get


def _no_decord(path, timeline, selection):
    raise ImportError("No module named 'decord'")


# --- the authors' choice of frames -----------------------------------------------------------


def test_fps_filter_replays_libavfilter():
    """Random timelines (bursts, stalls, negative times, odd time bases and rates) through the real filter."""
    rng = random.Random(0)

    def ticks(seconds: float, time_base: Fraction) -> int:
        return int(seconds / time_base)

    for _ in range(150):
        time_base = rng.choice([Fraction(1, 1000), Fraction(1, 90000), Fraction(1001, 30000), Fraction(1, 25)])
        fps = rng.choice(["10", "10", "30000/1001", "2.5"])
        pts = [ticks(rng.uniform(-0.5, 30), time_base)]
        for _ in range(rng.randint(0, 30)):
            pts.append(pts[-1] + max(1, ticks(rng.choice([0.0, rng.uniform(0, 0.4), rng.uniform(0, 3)]), time_base)))
        durations = [ticks(rng.choice([0.0, rng.uniform(0, 0.5)]), time_base) for _ in pts]
        expected = run_fps_filter_on_times(pts, durations, time_base, fps)
        assert fps_filter(pts, pts[-1] + durations[-1], time_base, Fraction(fps)) == expected, (pts, durations, time_base, fps)


def test_fps_filter_documented_patterns():
    # ../shared/reference/authors_eval.md: 3.0 s at 30, 25 and 10 fps.
    assert fps_filter(range(90), 90, Fraction(1, 30), Fraction(10)) == list(range(2, 90, 3))
    assert fps_filter(range(75), 75, Fraction(1, 25), Fraction(10))[:7] == [2, 4, 7, 9, 12, 14, 17]
    assert fps_filter(range(30), 30, Fraction(1, 10), Fraction(10)) == list(range(30))
    # The file's start time is subtracted first: at 25 fps from 1.23 s, slots start at 1.23 s.
    assert fps_filter([123 + 4 * i for i in range(8)], 155, Fraction(1, 100), Fraction(10), origin=123) == [2, 4, 7]


def test_thinning_truncates():
    assert thin(96, 96) == list(range(96))
    kept = thin(200, 96)
    assert len(kept) == 96 and kept[0] == 0 and kept[-1] == 199
    assert kept == [int(k) for k in np.linspace(0, 199, 96).astype(int)]
    assert kept != [int(k) for k in np.linspace(0, 199, 96).round()]  # rounding would pick others


def test_labels_are_numpy_arange_from_the_stream_start():
    labels = authors_labels(1.23, 3.0, 30)
    assert labels.tolist() == np.arange(1.23, 1.23 + 3.0 + 0.1, 0.1)[:30].tolist()
    theirs = np.arange(0.0, 2.6 + 0.1, 0.1)  # too few labels for a header that undercounts 34 frames
    ours = authors_labels(0.0, 2.6, 34)
    assert len(theirs) < 34 == len(ours) and ours.tolist()[:len(theirs)] == theirs.tolist()
    assert round(float(ours[-1]), 6) == 3.3  # continued on the same grid


@pytest.mark.parametrize("name", list(ORACLE_CLIPS))
def test_frames_and_labels_match_the_authors_loader(oracle_clip, name, monkeypatch):
    path, authors = oracle_clip(name)
    assert authors.filtered > 0
    for backend in ("decord", "pyav"):
        if backend == "pyav":
            monkeypatch.setattr(video, "_decode_decord", _no_decord)
        clip = load_video(path)
        assert clip.backend == ("pyav" if path.suffix == ".avi" else backend)  # AVI never goes to decord
        assert numbers(clip.frames) == authors.numbers, backend
        assert list(clip.source_indices) == authors.numbers  # synthetic frame i carries the number i
        assert (clip.filtered_frames, list(clip.filter_indices)) == (authors.filtered, authors.kept)
        assert (clip.start_time, clip.container_duration_s) == (authors.start_time, authors.duration)
        assert clip.labels() == authors.labels.tolist()  # the exact floats, not only their rounding
        assert clip.timestamps == tuple(round(t, 6) for t in clip.labels())
        assert len(clip.frames) == min(authors.filtered, 96)


def test_which_frames_for_common_rates(oracle_clip):
    # The pattern the paper's frames follow: the last source frame of each 0.1 s slot.
    assert authors_load_numbers(oracle_clip, "cfr10") == list(range(30))
    assert authors_load_numbers(oracle_clip, "cfr30_mkv") == list(range(2, 90, 3))
    assert authors_load_numbers(oracle_clip, "cfr25_eof") == [int(np.ceil(2.5 * (k + 1))) - 1 for k in range(20)]
    clip = load_video(oracle_clip("cfr25_eof")[0])
    assert len(clip.frames) == 20 and 50 not in clip.source_indices  # frame 50 (2.0-2.04 s) never comes out


def authors_load_numbers(oracle_clip, name: str) -> list[int]:
    return oracle_clip(name)[1].numbers


def test_start_time_labels_and_source_times(oracle_clip):
    clip = load_video(oracle_clip("start_1.23_ntsc_mp4")[0])
    assert clip.start_time == 1.23 and clip.timestamps[:3] == (1.23, 1.33, 1.43)
    # The slots start at the stream start: the first frame of a 29.97 fps clip lands in slot 0.
    assert clip.source_indices[:4] == (2, 5, 8, 11)
    assert clip.source_times == tuple(round(1.23 + i * 1001 / 30000, 6) for i in clip.source_indices)
    assert clip.duration_s >= clip.timestamps[-1]


def test_variable_frame_rate_uses_real_timestamps(clips):
    clip = load_video(clips["vfr"])
    expected = authors_load(clips["vfr"]).numbers
    assert numbers(clip.frames) == expected
    # Up to the last frame the slots follow the real times; how long the last frame lasts comes
    # from the mp4 (a decode-time duration, 0.5 s here), and its repeats fill the slots to the end.
    ms = [round(t * 1000) for t in VFR_TIMES]
    assert expected[:26] == fps_filter(ms, ms[-1] + 1, Fraction(1, 1000), Fraction(10))
    assert expected[26:] == [11] * (clip.filtered_frames - 26)
    assert clip.source_times == tuple(VFR_TIMES[i] for i in expected)
    # What indexing by time x average fps would have shown instead: different frames.
    naive = [min(round(t * clip.native_fps), len(VFR_TIMES) - 1) for t in clip.timestamps]
    assert naive != expected


def test_short_clip_gives_every_frame(clips):
    clip = load_video(clips["3s"])
    assert clip.frames.shape == (30, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.timestamps == tuple(k / 10 for k in range(30))
    assert numbers(clip.frames) == list(range(30)) == list(clip.source_indices)
    assert (clip.duration_s, clip.native_fps, clip.width, clip.height) == (3.0, 10.0, 64, 64)
    assert (clip.start_time, clip.container_duration_s, clip.filtered_frames) == (0.0, 3.0, 30)
    assert clip.backend == "decord" and clip.notes == ()
    assert clip.path == str(clips["3s"])


def test_long_clip_gives_96_frames_spread_over_it(clips):
    clip = load_video(clips["20s"])
    assert len(clip.frames) == len(clip.timestamps) == 96 and clip.filtered_frames == 200
    assert numbers(clip.frames) == thin(200, 96) == list(clip.filter_indices)
    assert clip.timestamps == tuple(round(k / 10, 6) for k in thin(200, 96))
    assert clip.timestamps[-1] == 19.9


def test_frames_past_an_undercounting_header_are_kept(tmp_path, monkeypatch):
    # With B-frames, ffmpeg's mp4 muxer takes a VFR stream's duration from decode times: here the
    # header says 2.6 s while the last frame starts at 2.95 s.
    frame_times = [0.0, 0.05, 0.3, 0.33, 0.9, 1.0, 1.7, 2.2, 2.5, 2.95]
    path = write_clip(tmp_path / "vfr_tail.mp4", seconds=3.0, times=frame_times)
    assert probe(path)[0] < 2.95
    authors = authors_load(path)
    clip = load_video(path)
    assert numbers(clip.frames) == authors.numbers and 9 in clip.source_indices
    # The authors' labels stop at the header's end; ours continue the grid and say so.
    assert len(authors.labels) < clip.filtered_frames
    assert clip.labels()[:len(authors.labels)] == authors.labels.tolist()
    assert clip.timestamps[-1] == round((clip.filtered_frames - 1) / 10, 6)
    assert clip.duration_s > 2.95 and any("labels after it continue" in note for note in clip.notes)
    monkeypatch.setattr(video, "_decode_decord", _no_decord)
    fallback = load_video(path)
    assert (fallback.duration_s, fallback.timestamps) == (clip.duration_s, clip.timestamps)
    assert numbers(fallback.frames) == numbers(clip.frames)


@pytest.mark.parametrize("name", ["3s", "20s", "25fps", "vfr"])
def test_decord_and_pyav_give_the_same_frames(clips, name, monkeypatch):
    with_decord = load_video(clips[name])
    monkeypatch.setattr(video, "_decode_decord", _no_decord)
    with_pyav = load_video(clips[name])
    assert (with_decord.backend, with_pyav.backend) == ("decord", "pyav")
    assert with_pyav.notes == ("decord is not installed; decoded with PyAV",) + with_decord.notes
    assert with_pyav.timestamps == with_decord.timestamps
    assert with_pyav.source_indices == with_decord.source_indices
    assert numbers(with_pyav.frames) == numbers(with_decord.frames)
    assert np.abs(with_pyav.frames.astype(int) - with_decord.frames).mean() < 1.0


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_every_supported_container(tmp_path, suffix, monkeypatch):
    # 25 fps so that the fps filter has to pick; AVI stores no presentation times at all and is
    # timed by frame count (h264 with B-frames here: see the README on what ffmpeg does instead).
    path = write_clip(tmp_path / f"c{suffix}", seconds=2.0, fps=25)
    expected = [int(np.ceil(2.5 * (k + 1))) - 1 for k in range(20)]  # the last frame of each 0.1 s
    clip = load_video(path)
    # AVI goes to PyAV: decord's seeking in AVI returned neighbouring frames under load (flaky)
    assert clip.backend == ("pyav" if suffix == ".avi" else "decord") and numbers(clip.frames) == expected
    monkeypatch.setattr(video, "_decode_decord", _no_decord)
    assert numbers(load_video(path).frames) == expected


def test_rotation_metadata_is_applied_by_both_backends(tmp_path, monkeypatch):
    import av

    path = tmp_path / "portrait.mp4"
    pictures = [np.full((32, 64, 3), 0, np.uint8) for _ in range(5)]
    for frame in pictures:
        frame[:, :8] = 255  # a white bar on the stored left edge
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)
        for frame in pictures:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    upright = load_video(path)
    monkeypatch.setattr(video, "_decode_decord", _no_decord)
    fallback = load_video(path)
    assert upright.frames.shape[1:3] == fallback.frames.shape[1:3] == (64, 32)
    assert (upright.width, upright.height) == (32, 64)
    assert np.abs(upright.frames.astype(int) - fallback.frames).mean() < 1.0


def test_corrupt_middle_is_recovered_with_a_note(tmp_path):
    path = write_broken(tmp_path / "corrupt.mp4", "corrupt_middle")
    clip = load_video(path)
    assert clip.backend == "pyav" and len(clip.frames) == 30
    assert any("damaged packet" in note for note in clip.notes)
    assert numbers(clip.frames[:10]) == list(range(10))  # before the damage: exact frames


# --- bad input ------------------------------------------------------------------------------


BAD = [kind for kind in BROKEN_KINDS if kind != "corrupt_middle"]
MESSAGES = {
    "empty": "empty",
    "text": "not a readable video",
    "truncated": "not a readable video",
    "truncated_indexed": "truncated or damaged",
    "audio_only": "no video stream",
    "one_pixel": "1x1 is below the minimum side",
}


@pytest.mark.parametrize("isolate", [False, True])
@pytest.mark.parametrize("kind", BAD)
def test_broken_files_raise_one_clear_line_quickly(tmp_path, kind, isolate):
    path = write_broken(tmp_path / f"{kind}.mp4", kind)
    start = time.perf_counter()
    with pytest.raises(VideoError) as info:
        load_video(path, isolate=isolate)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert MESSAGES[kind] in message


def test_missing_directory_and_unknown_suffix(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        load_video(tmp_path / "nope.mp4")
    folder = tmp_path / "folder.mp4"
    folder.mkdir()
    with pytest.raises(VideoError, match="is a directory"):
        load_video(folder)
    notes = tmp_path / "clip.txt"
    notes.write_text("hello")
    with pytest.raises(VideoError, match=r"unsupported file type '\.txt'.*\.mp4, \.mov"):
        load_video(notes)


def test_suffix_is_case_insensitive(tmp_path):
    path = write_clip(tmp_path / "LOUD.MP4", seconds=1.0)
    assert len(load_video(path).frames) == 10


def test_limits_are_checked_before_decoding(clips, monkeypatch):
    def must_not_decode(*args):
        raise AssertionError("decoded a file that is over a limit")

    monkeypatch.setattr(video, "_decode_decord", must_not_decode)
    monkeypatch.setattr(video, "_decode_pyav", must_not_decode)
    size = clips["3s"].stat().st_size
    cases = [
        (VideoLimits(max_bytes=size - 1), "MiB limit"),
        (VideoLimits(max_duration_s=2.5), "3.0 s exceeds the 2.5 s duration limit"),
        (VideoLimits(max_side=32), "64x64 exceeds the maximum side of 32 px"),
        (VideoLimits(min_side=100), "64x64 is below the minimum side of 100 px"),
    ]
    for limits, message in cases:
        with pytest.raises(VideoError, match=re.escape(message)):
            load_video(clips["3s"], limits=limits)


def test_probe(clips):
    assert probe(clips["3s"]) == (3.0, 10.0, 64, 64)
    with pytest.raises(VideoError, match="duration limit"):
        probe(clips["20s"], VideoLimits(max_duration_s=10))


def test_bad_settings_are_value_errors(clips):
    with pytest.raises(ValueError, match="max_bytes"):
        VideoLimits(max_bytes=0)
    with pytest.raises(ValueError, match="min_side"):
        VideoLimits(min_side=100, max_side=50)
    with pytest.raises(ValueError, match="fps"):
        load_video(clips["3s"], fps=0)
    with pytest.raises(ValueError, match="max_frames"):
        load_video(clips["3s"], max_frames=0)


# --- isolation ------------------------------------------------------------------------------


def test_isolated_decoding_returns_the_same_clip(clips):
    inline = load_video(clips["20s"])
    isolated = load_video(clips["20s"], isolate=True)
    assert isinstance(isolated, Clip)
    assert np.array_equal(isolated.frames, inline.frames)
    assert isolated.frames.flags.writeable
    for name in Clip.__dataclass_fields__:
        if name != "frames":
            assert getattr(isolated, name) == getattr(inline, name), name
    copy = pickle.loads(pickle.dumps(inline))
    assert copy.source_indices == inline.source_indices and np.array_equal(copy.frames, inline.frames)


def test_timeout_becomes_a_video_error(clips):
    start = time.perf_counter()
    with pytest.raises(VideoError, match="longer than 0.001 s"):
        load_video(clips["20s"], isolate=True, limits=VideoLimits(timeout_s=0.001))
    assert time.perf_counter() - start < 10


def test_memory_limit_becomes_a_video_error(clips):
    # Under a 1-byte address-space cap decoders fail in their own ways (MemoryError, std::bad_alloc,
    # even a segfault): in the child process every one of them is a VideoError for the caller.
    with pytest.raises(VideoError, match="memory|died"):
        load_video(clips["20s"], isolate=True, limits=VideoLimits(max_memory_bytes=1))


@pytest.mark.parametrize("target,args,how", [(os._exit, (3,), "exit code 3"), (os.abort, (), "signal 6")])
def test_a_dying_decoder_becomes_a_video_error(target, args, how):
    with pytest.raises(VideoError, match=f"x.mp4: the decoder process died \\({how}\\)"):
        run_isolated("x.mp4", 30, target, args)


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "crashchat.video", *args], capture_output=True, text=True,
                          timeout=120, env=env, cwd=REPO, check=False)


def test_command_line_on_a_good_and_a_bad_file(clips, tmp_path):
    # Run as `python -m`, the module is `__main__`; its isolated child must still find `_load`.
    good = run_module(str(clips["3s"]))
    assert good.returncode == 0, good.stderr
    line = f"{clips['3s']}: 3.00 s, 64x64 @ 10.00 fps, 30 of 30 frames at 10 fps, labelled 0.0..2.9 s, via decord"
    assert good.stdout.splitlines() == [line]
    bad = run_module(str(write_broken(tmp_path / "text.mp4", "text")))
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.splitlines()) == 1 and bad.stderr.startswith(f"error: {tmp_path / 'text.mp4'}: not a readable video")


# --- hand-off to the VideoLLaMA3 processor --------------------------------------------------


def crashchat_processor():
    """CrashChat's own processor around the tiny offline tokenizer (wherever they live now)."""
    try:
        from crashchat.prompt import build_processor
    except ImportError:
        from crashchat.model import build_processor
    try:
        from crashchat.tiny import tiny_tokenizer
    except ImportError:
        from crashchat.model import _tiny_tokenizer as tiny_tokenizer
    return build_processor(tiny_tokenizer())


def printed_labels(processor, clip) -> list[str]:
    prompt = "<|im_start|>user\n<|video_pad|>\nWas there a crash in this video?<|im_end|>\n<|im_start|>assistant\n"
    inputs = processor(text=[prompt], videos=[clip.frames], video_metadata=[clip.metadata()], return_tensors="pt")
    assert int(inputs["video_grid_thw"][0][0]) == len(clip.frames)
    return re.findall(r"Time (-?\d+\.\d)s:", processor.tokenizer.decode(inputs["input_ids"][0]))


def test_metadata_fields(clips):
    clip = load_video(clips["20s"])
    meta = clip.metadata()
    assert isinstance(meta, video.LabelledMetadata)
    assert meta.fps == 10.0 and meta.total_num_frames == 200 and meta.frames_indices == thin(200, 96)
    assert meta.timestamps == clip.labels() and len(meta.timestamps) == 96
    assert meta.sampled_fps == pytest.approx(96 / 20)
    assert (meta.width, meta.height, meta.duration, meta.video_backend) == (64, 64, 20.0, "decord")
    assert pickle.loads(pickle.dumps(meta)).timestamps == meta.timestamps


def test_processor_prints_the_authors_labels(tmp_path):
    # A stream starting at 0.05 s puts every label on a rounding edge: np.arange gives
    # 0.15000000000000002 (printed 0.2 by the authors' `round(1)`), whose 6-decimal form 0.15
    # would print 0.1. 12 s at 10 fps is 120 filter outputs, thinned to 96.
    path = write_clip(tmp_path / "edge.mp4", seconds=12.0, fps=10, size=(64, 48), start=0.05)
    authors = authors_load(path)
    clip = load_video(path)
    expected = [str(round(float(t), 1)) for t in authors.labels]  # Jinja's round(1), printed
    assert len(expected) == 96 and expected[:3] == ["0.1", "0.2", "0.3"]
    assert expected != [f"{t:.1f}" for t in clip.timestamps]  # the rounded timestamps would not do
    processor = crashchat_processor()
    assert printed_labels(processor, clip) == expected
    # and through the helper inference and training use
    from crashchat.prompt import prepare_clip

    assert re.findall(r"Time (-?\d+\.\d)s:", prepare_clip(processor, clip).placeholder) == expected


def test_processor_prints_start_offset_labels(oracle_clip):
    clip = load_video(oracle_clip("start_1.23_mkv")[0])
    assert printed_labels(crashchat_processor(), clip) == [str(round(1.23 + k / 10, 1)) for k in range(30)]
