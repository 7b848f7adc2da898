"""Synthetic clips: they decode, carry their frame numbers, and show a collision only when asked."""

from __future__ import annotations

import av
import numpy as np
import pytest

from crashchat import synthetic
from crashchat.synthetic import (
    BROKEN_KINDS,
    crash_time,
    make_examples,
    read_frame_number,
    render_frame,
    write_broken,
    write_clip,
)

FLASH = np.array([255, 200, 60])


def decode_all(path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [f.to_ndarray(format="rgb24") for f in frames], [float(f.pts * f.time_base) for f in frames]


def test_clip_decodes_with_its_frame_numbers(tmp_path):
    path = write_clip(tmp_path / "c.mp4", seconds=2.0, fps=10, size=(64, 48), scene="crash")
    frames, times = decode_all(path)
    assert len(frames) == 20
    assert frames[0].shape == (48, 64, 3)
    assert [read_frame_number(f) for f in frames] == list(range(20))
    assert times == pytest.approx([i / 10 for i in range(20)])


def test_variable_frame_rate_times_are_kept(tmp_path):
    times = [0.0, 0.05, 0.3, 0.33, 0.9, 1.0, 1.7]
    frames, got = decode_all(write_clip(tmp_path / "vfr.mp4", seconds=2.0, times=times))
    assert got == pytest.approx(times)
    assert [read_frame_number(f) for f in frames] == list(range(len(times)))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_delayed_start_is_the_stream_start_time(tmp_path, suffix):
    path = write_clip(tmp_path / f"late{suffix}", seconds=1.0, fps=25, start=1.23)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert float(stream.start_time * stream.time_base) == pytest.approx(1.23)
    frames, times = decode_all(path)
    assert [read_frame_number(f) for f in frames] == list(range(25))
    assert times == pytest.approx([1.23 + i / 25 for i in range(25)], abs=1e-3)


def test_ntsc_rate_is_exact(tmp_path):
    from fractions import Fraction

    path = write_clip(tmp_path / "ntsc.mp4", seconds=1.0, fps=Fraction(30000, 1001))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(30000, 1001)
        pts = sorted(packet.pts for packet in container.demux(stream) if packet.pts is not None)
    assert [Fraction(p) * stream.time_base for p in pts] == [Fraction(1001 * i, 30000) for i in range(30)]


def test_intra_only_avi(tmp_path):
    path = write_clip(tmp_path / "mj.avi", seconds=1.0, fps=10, codec="mjpeg")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "mjpeg"
    frames, _ = decode_all(path)
    assert [read_frame_number(f) for f in frames] == list(range(10))


@pytest.mark.parametrize("suffix", [".mov", ".mkv", ".avi", ".webm"])
def test_other_containers(tmp_path, suffix):
    frames, _ = decode_all(write_clip(tmp_path / f"c{suffix}", seconds=1.0, fps=10))
    assert [read_frame_number(f) for f in frames] == list(range(10))


def has_flash(frame: np.ndarray) -> bool:
    return bool((np.abs(frame.astype(int) - FLASH).sum(-1) < 30).sum() > 20)


def test_crash_shows_an_impact_at_the_crash_time_and_normal_never_does():
    seconds, fps = 5.0, 10
    rng = np.random.default_rng(0)
    crash = [render_frame(i, i / fps, seconds, (128, 96), "crash", rng) for i in range(int(seconds * fps))]
    normal = [render_frame(i, i / fps, seconds, (128, 96), "normal", rng) for i in range(int(seconds * fps))]
    impact = [i / fps for i, f in enumerate(crash) if has_flash(f)]
    assert impact and impact[0] == pytest.approx(crash_time(seconds))
    assert not any(has_flash(f) for f in normal)


def test_rendering_is_deterministic():
    a = render_frame(12, 1.2, 3.0, (64, 64), "crash", np.random.default_rng(3))
    b = render_frame(12, 1.2, 3.0, (64, 64), "crash", np.random.default_rng(3))
    assert np.array_equal(a, b)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="scene"):
        write_clip(tmp_path / "x.mp4", scene="explosion")
    with pytest.raises(ValueError, match="even"):
        write_clip(tmp_path / "x.mp4", size=(63, 64))
    with pytest.raises(ValueError, match="increasing"):
        write_clip(tmp_path / "x.mp4", times=[0.0, 0.2, 0.1])
    with pytest.raises(ValueError, match="AVI"):
        write_clip(tmp_path / "x.avi", times=[0.0, 0.1])
    with pytest.raises(ValueError, match="AVI"):
        write_clip(tmp_path / "x.avi", start=0.5)
    with pytest.raises(ValueError, match="start"):
        write_clip(tmp_path / "x.mp4", start=-1.0)
    with pytest.raises(ValueError, match="kind"):
        write_broken(tmp_path / "x.mp4", "melted")


@pytest.mark.parametrize("kind", BROKEN_KINDS)
def test_write_broken_writes_each_kind(tmp_path, kind):
    path = write_broken(tmp_path / f"{kind}.mp4", kind)
    assert path.exists()
    assert (path.stat().st_size == 0) == (kind == "empty")
    assert not list(tmp_path.glob("*.full.*"))  # the intermediate of the truncated kinds is gone


def test_make_examples(tmp_path):
    paths = make_examples(tmp_path)  # how long it takes is benchmarks' business, not a test's
    assert 2 <= len(paths) <= 3
    for path in paths:
        assert "synthetic" in path.name
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert (stream.width, stream.height) == (640, 360)
            assert 6.0 <= container.duration / 1e6 <= 8.0
    assert {scene for _, scene, _, _ in synthetic.EXAMPLES} == {"crash", "normal"}
