"""Video input: paper sampling, real-timestamp frame choice, both backends, bad files, isolation.

Every clip is written by the test (crashchat.synthetic) and carries its frame number as a barcode,
so the tests check *which* frames came back, not only how many.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from crashchat import video
from crashchat.synthetic import BROKEN_KINDS, read_frame_number, write_broken, write_clip
from crashchat.video import (SUPPORTED_SUFFIXES, Clip, VideoError, VideoLimits, load_video, nearest_frames, probe,
                             run_isolated, sample_times)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("video")
    return {
        "3s": write_clip(d / "three.mp4", seconds=3.0, fps=10),
        "20s": write_clip(d / "twenty.mp4", seconds=20.0, fps=10, scene="normal"),
        "25fps": write_clip(d / "pal.mp4", seconds=2.0, fps=25),
        # Irregular gaps as a dashcam under load writes them.
        "vfr": write_clip(d / "vfr.mp4", seconds=3.0, fps=10,
                          times=[0.0, 0.05, 0.3, 0.33, 0.9, 1.0, 1.25, 1.7, 2.2, 2.5, 2.55, 2.6]),
    }


def numbers(frames: np.ndarray) -> list[int]:
    return [read_frame_number(f) for f in frames]


def brute_force_nearest(frame_times: list[float], t: float) -> int:
    """Nearest frame, ties to the earlier one: the rule `load_video` documents."""
    distances = [abs(ft - t) for ft in frame_times]
    best = min(distances)
    return next(i for i, d in enumerate(distances) if d <= best + 1e-4)


# --- sampling -------------------------------------------------------------------------------


def test_sample_times_short_clip_is_the_full_10fps_grid():
    times = sample_times(3.0)
    assert len(times) == 30
    assert times == tuple(round(k / 10, 1) for k in range(30))


def test_sample_times_long_clip_is_thinned_to_96_on_the_grid():
    times = sample_times(20.0)
    assert len(times) == 96
    assert times[0] == 0.0 and times[-1] == 19.9
    assert all(b > a for a, b in zip(times, times[1:]))
    assert all(abs(t * 10 - round(t * 10)) < 1e-9 for t in times)  # still k / 10 s
    gaps = np.diff(times)
    assert gaps.max() - gaps.min() <= 0.1 + 1e-9  # uniformly spread


@pytest.mark.parametrize("duration,expected", [(9.6, 96), (9.65, 96), (9.7, 96), (0.05, 1), (600.0, 96)])
def test_sample_times_counts(duration, expected):
    assert len(sample_times(duration)) == expected


def test_sample_times_other_rates():
    assert sample_times(2.0, fps=2) == (0.0, 0.5, 1.0, 1.5)
    assert len(sample_times(10.0, fps=10, max_frames=8)) == 8


def test_nearest_frames_matches_brute_force():
    rng = np.random.default_rng(0)
    frame_times = np.cumsum(rng.uniform(0.01, 0.4, 60)).round(3).tolist()
    frame_times = [0.0] + frame_times
    targets = sample_times(frame_times[-1])
    assert nearest_frames(frame_times, targets) == [brute_force_nearest(frame_times, t) for t in targets]


# --- decoding -------------------------------------------------------------------------------


def test_short_clip_gives_every_frame(clips):
    clip = load_video(clips["3s"])
    assert clip.frames.shape == (30, 64, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.timestamps == tuple(k / 10 for k in range(30))
    assert numbers(clip.frames) == list(range(30))
    assert (clip.duration_s, clip.native_fps, clip.width, clip.height) == (3.0, 10.0, 64, 64)
    assert clip.backend == "decord" and clip.notes == ()
    assert clip.path == str(clips["3s"])


def test_long_clip_gives_96_frames_spread_over_it(clips):
    clip = load_video(clips["20s"])
    assert len(clip.frames) == len(clip.timestamps) == 96
    assert numbers(clip.frames) == [round(t * 10) for t in clip.timestamps]
    assert clip.timestamps[-1] == 19.9


def test_other_rate_picks_the_nearest_frame(clips):
    clip = load_video(clips["25fps"])
    frame_times = [i / 25 for i in range(50)]
    assert numbers(clip.frames) == [brute_force_nearest(frame_times, t) for t in clip.timestamps]


def test_variable_frame_rate_uses_real_timestamps(clips):
    frame_times = [0.0, 0.05, 0.3, 0.33, 0.9, 1.0, 1.25, 1.7, 2.2, 2.5, 2.55, 2.6]
    clip = load_video(clips["vfr"])
    expected = [brute_force_nearest(frame_times, t) for t in clip.timestamps]
    assert numbers(clip.frames) == expected
    # What indexing by time x average fps would have shown instead: different frames.
    naive = [min(round(t * clip.native_fps), len(frame_times) - 1) for t in clip.timestamps]
    assert naive != expected


def test_frames_past_an_undercounting_header_are_kept(tmp_path, monkeypatch):
    # With B-frames, ffmpeg's mp4 muxer takes a VFR stream's duration from decode times: here the
    # header says 2.6 s while the last frame starts at 2.95 s.
    frame_times = [0.0, 0.05, 0.3, 0.33, 0.9, 1.0, 1.7, 2.2, 2.5, 2.95]
    path = write_clip(tmp_path / "vfr_tail.mp4", seconds=3.0, times=frame_times)
    assert probe(path)[0] < 2.95
    clip = load_video(path)
    assert clip.duration_s > 2.95 and clip.timestamps[-1] >= 2.9
    assert numbers(clip.frames) == [brute_force_nearest(frame_times, t) for t in clip.timestamps]
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
    assert with_pyav.notes == ("decord is not installed; decoded with PyAV",)
    assert with_pyav.timestamps == with_decord.timestamps
    assert numbers(with_pyav.frames) == numbers(with_decord.frames)
    assert np.abs(with_pyav.frames.astype(int) - with_decord.frames).mean() < 1.0


def _no_decord(path, plan):
    raise ImportError("No module named 'decord'")


@pytest.mark.parametrize("suffix", SUPPORTED_SUFFIXES)
def test_every_supported_container(tmp_path, suffix, monkeypatch):
    # 25 fps so that the 10 fps grid has to pick; AVI stores no presentation times at all.
    path = write_clip(tmp_path / f"c{suffix}", seconds=2.0, fps=25)
    expected = [brute_force_nearest([i / 25 for i in range(50)], t) for t in sample_times(2.0)]
    clip = load_video(path)
    assert clip.backend == "decord" and numbers(clip.frames) == expected
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
    for name in ("path", "timestamps", "duration_s", "native_fps", "width", "height", "backend", "notes"):
        assert getattr(isolated, name) == getattr(inline, name)


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


# --- hand-off to the VideoLLaMA3 processor --------------------------------------------------


def tiny_processor(frames_per_video: int):
    """A VideoLlama3Processor with a byte-level BPE trained here: no download, no model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (PreTrainedTokenizerFast, VideoLlama3ImageProcessor, VideoLlama3Processor,
                              VideoLlama3VideoProcessor)

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["Time 1.5s: the two cars collide.", "Was there a crash in this video?"], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        extra_special_tokens={"image_token": "<|image_pad|>",
                                                              "video_token": "<|video_pad|>"})
    # A small pixel budget (56x56 a frame) keeps the test fast; labels do not depend on it.
    budget = {"shortest_edge": 28 * 28, "longest_edge": frames_per_video * 56 * 56}
    return VideoLlama3Processor(image_processor=VideoLlama3ImageProcessor(), tokenizer=tokenizer,
                                video_processor=VideoLlama3VideoProcessor(size=budget))


def test_metadata_fields(clips):
    meta = load_video(clips["20s"]).metadata()
    assert meta.fps == 10.0 and meta.total_num_frames == 200 and len(meta.frames_indices) == 96
    assert meta.timestamps == pytest.approx(list(load_video(clips["20s"]).timestamps))
    assert meta.sampled_fps == pytest.approx(96 / 20)
    assert (meta.width, meta.height, meta.duration, meta.video_backend) == (64, 64, 20.0, "decord")


def test_processor_labels_frames_with_the_clip_timestamps(clips):
    clip = load_video(clips["20s"])
    processor = tiny_processor(len(clip.frames))
    prompt = "<|im_start|>user\n<|video_pad|>\nWas there a crash in this video?<|im_end|>\n<|im_start|>assistant\n"
    inputs = processor(text=[prompt], videos=[clip.frames], video_metadata=[clip.metadata()], return_tensors="pt")
    text = processor.tokenizer.decode(inputs["input_ids"][0])
    labels = re.findall(r"Time (\d+\.\d)s:", text)
    assert labels == [f"{t:.1f}" for t in clip.timestamps]
    assert labels[:3] == ["0.0", "0.2", "0.4"] and labels[-1] == "19.9"
    assert int(inputs["video_grid_thw"][0][0]) == 96
