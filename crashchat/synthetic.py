"""Synthetic dashcam-like clips, rendered with numpy and encoded with PyAV, for tests and app examples.

    python -c "from crashchat.synthetic import make_examples; print(make_examples('examples'))"

A clip is a forward-facing road view: sky, grass, a two-lane road in perspective with moving
dashed markings, and two cars drawn as rectangles. In a ``"crash"`` clip the car in the left lane
cuts in and hits the car ahead at ``crash_time(seconds)``; both then stop and the ego car brakes.
In a ``"normal"`` clip the left car simply overtakes. Nothing third-party is used: every pixel is
computed here, so the clips are free to ship and to regenerate.

Each frame carries its own frame number as a row of black/white blocks along the bottom edge (the
way a dashcam burns a clock into its picture), so tests can check *which* frame a decoder returned
with `read_frame_number`, not just how many.

`write_broken` writes the bad inputs a video loader must refuse (or recover from) cleanly.
"""

from __future__ import annotations

import fractions
from collections.abc import Sequence
from pathlib import Path

import numpy as np

SCENES = ("crash", "normal")
BROKEN_KINDS = ("empty", "text", "truncated", "truncated_indexed", "audio_only", "corrupt_middle", "one_pixel")
CRASH_FRACTION = 0.6  # the collision happens 60 % of the way into a "crash" clip
BARCODE_BITS = 12  # frame numbers up to 4095: 6.8 minutes at 10 fps

# World units are metres; the camera sits 1.3 m above the road looking along it.
_CAMERA_HEIGHT = 1.3
_LANE_WIDTH = 3.5
_CAR_WIDTH, _CAR_HEIGHT = 1.8, 1.5
_EGO_SPEED = 15.0  # m/s, drives the dashed markings
_DASH_PERIOD = 12.0  # metres: 3 m of paint, 9 m of gap
_DASH_LENGTH = 3.0


def crash_time(seconds: float) -> float:
    """When the two cars of a ``"crash"`` clip of this length touch, in seconds.

    >>> crash_time(5.0)
    3.0
    """
    return round(CRASH_FRACTION * seconds, 3)


def _background(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Static picture (sky, grass, road) plus per-row road geometry used by the moving parts."""
    horizon = int(0.42 * height)
    img = np.empty((height, width, 3), np.uint8)
    rows = np.arange(height, dtype=np.float32)
    sky = np.clip(rows[:horizon, None] / max(horizon, 1), 0, 1)
    img[:horizon] = (np.array([110, 160, 220]) + sky * np.array([60, 50, 25])).astype(np.uint8)[:, None, :]
    img[horizon:] = (70, 120, 60)
    # Depth of each row below the horizon: a pinhole camera with focal length ~ image width.
    focal = float(width)
    below = np.maximum(rows - horizon + 0.5, 0.5)
    depth = _CAMERA_HEIGHT * focal / below  # metres ahead, per row
    cx = width / 2.0
    xs = np.arange(width, dtype=np.float32)
    lateral = (xs[None, :] - cx) * depth[:, None] / focal  # metres from the camera axis, per pixel
    road = (np.abs(lateral + _LANE_WIDTH / 2) <= _LANE_WIDTH) & (rows[:, None] >= horizon)
    img[road] = (90, 90, 95)
    edge = (np.abs(np.abs(lateral + _LANE_WIDTH / 2) - _LANE_WIDTH) <= 0.12) & (rows[:, None] >= horizon)
    img[edge] = (235, 235, 235)
    return img, depth, lateral


def _project(lateral: float, depth: float, width: int, height: int) -> tuple[float, float, float]:
    """Screen x of the centre, screen y of the ground contact, and pixels per metre at that depth."""
    horizon = int(0.42 * height)
    focal = float(width)
    scale = focal / depth
    return width / 2.0 + lateral * scale, horizon + _CAMERA_HEIGHT * scale, scale


def _draw_car(img: np.ndarray, lateral: float, depth: float, color: tuple[int, int, int]) -> None:
    height, width = img.shape[:2]
    x, y, s = _project(lateral, depth, width, height)
    half = _CAR_WIDTH * s / 2
    x0, x1 = int(round(x - half)), int(round(x + half))
    y0, y1 = int(round(y - _CAR_HEIGHT * s)), int(round(y))
    x0, x1, y0, y1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return
    img[y0:y1, x0:x1] = color
    # A darker rear window and two red lights make the rectangles read as cars at 640x360.
    wy0, wy1 = y0 + (y1 - y0) // 8, y0 + (y1 - y0) * 2 // 5
    wx0, wx1 = x0 + (x1 - x0) // 6, x1 - (x1 - x0) // 6
    img[wy0:wy1, wx0:wx1] = (40, 45, 60)
    ly0, ly1 = y0 + (y1 - y0) * 3 // 5, y0 + (y1 - y0) * 3 // 4
    lw = max((x1 - x0) // 6, 1)
    img[ly0:ly1, x0 : x0 + lw] = (220, 30, 30)
    img[ly0:ly1, x1 - lw : x1] = (220, 30, 30)


def _car_states(scene: str, t: float, seconds: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(lateral, depth) of the lead car and the left-lane car at time t."""
    lead_depth = 14.0
    left_lane = -_LANE_WIDTH
    if scene == "normal":
        # The left car starts level with the ego car and pulls away: no contact, ever.
        return [(0.0, lead_depth), (left_lane, 6.0 + 3.0 * t)]
    tc = crash_time(seconds)
    cut_start = max(tc - 1.5, 0.0)
    if t < cut_start:
        return [(0.0, lead_depth), (left_lane, lead_depth - 1.0)]
    if t < tc:
        # Cut-in: the left car slides sideways until its flank reaches the lead car's.
        frac = (t - cut_start) / max(tc - cut_start, 1e-6)
        return [(0.0, lead_depth), (left_lane + frac * (_LANE_WIDTH - _CAR_WIDTH * 0.9), lead_depth - 1.0)]
    # After impact both cars stop dead; the ego car brakes and closes in, then stops too.
    after = t - tc
    closing = min(after, 1.5) * (_EGO_SPEED * 0.5) * (1 - min(after, 1.5) / 3.0)
    depth = max(lead_depth - closing, 5.0)
    jitter = float(rng.normal(0, 0.03)) if after < 0.5 else 0.0
    return [(0.15 + jitter, depth), (-_CAR_WIDTH * 0.9 + 0.3 - jitter, depth - 1.0)]


def render_frame(index: int, t: float, seconds: float, size: tuple[int, int], scene: str,
                 rng: np.random.Generator, _cache: dict | None = None) -> np.ndarray:
    """One RGB frame (H, W, 3) uint8 of a synthetic clip at time t, its number burnt in."""
    width, height = size
    cache = _cache if _cache is not None else {}
    if "bg" not in cache:
        bg, depth, lateral = _background(width, height)
        horizon = int(0.42 * height)
        line = (np.abs(lateral + _LANE_WIDTH / 2) <= 0.1) & (depth[:, None] < 200)
        line[: horizon + 1] = False
        cache["bg"] = bg, depth, np.nonzero(line)  # the centre line's pixels, painted per frame
    bg, depth, (line_y, line_x) = cache["bg"]
    img = bg.copy()
    # Dashed centre line: paint where (depth + distance travelled) falls on a dash.
    travelled = _EGO_SPEED * (t if scene == "normal" or t < crash_time(seconds) else crash_time(seconds))
    dash_rows = ((depth + travelled) % _DASH_PERIOD) < _DASH_LENGTH
    on = dash_rows[line_y]
    img[line_y[on], line_x[on]] = (240, 240, 240)
    cars = _car_states(scene, t, seconds, rng)
    # Far car first so the nearer one hides it.
    colors = [(30, 90, 200), (200, 170, 40)]
    for (lat, dep), color in sorted(zip(cars, colors, strict=True), key=lambda c: -c[0][1]):
        _draw_car(img, lat, dep, color)
    if scene == "crash":
        tc = crash_time(seconds)
        if tc <= t < tc + 0.4:
            # Impact flash where the cars meet.
            x, y, s = _project(-_CAR_WIDTH * 0.45, cars[0][1], width, height)
            r = max(int(1.2 * s * (1 - (t - tc) / 0.4)), 2)
            cy = y - s
            y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, height)
            x0, x1 = max(int(x - r), 0), min(int(x + r) + 1, width)
            yy, xx = np.ogrid[y0:y1, x0:x1]
            img[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - x) ** 2 <= r * r] = (255, 200, 60)
    _burn_frame_number(img, index)
    return img


def _barcode_geometry(width: int, height: int) -> tuple[int, int]:
    # Small and even-sized: 4 px on tiny test clips, 10 px at 640 wide; 4:2:0 chroma keeps it crisp.
    block = max(4, width // 64 // 2 * 2)
    return block, height - block


def _burn_frame_number(img: np.ndarray, index: int) -> None:
    height, width = img.shape[:2]
    block, top = _barcode_geometry(width, height)
    for bit in range(min(BARCODE_BITS, width // block)):
        value = 255 if (index >> bit) & 1 else 0
        img[top:, bit * block : (bit + 1) * block] = value


def read_frame_number(frame: np.ndarray) -> int:
    """The frame number burnt into a synthetic frame (robust to lossy encoding).

    >>> rng = np.random.default_rng(0)
    >>> read_frame_number(render_frame(37, 3.7, 5.0, (64, 64), "crash", rng))
    37
    """
    height, width = frame.shape[:2]
    block, top = _barcode_geometry(width, height)
    number = 0
    for bit in range(min(BARCODE_BITS, width // block)):
        q = block // 4
        patch = frame[top + q : height - q, bit * block + q : (bit + 1) * block - q]
        if patch.mean() > 127:
            number |= 1 << bit
    return number


def write_clip(path: str | Path, seconds: float = 1.0, fps: float | fractions.Fraction = 10,
               size: tuple[int, int] = (64, 64), scene: str = "crash", seed: int = 0, *,
               times: Sequence[float] | None = None, start: float = 0.0, codec: str | None = None,
               crf: int = 18) -> Path:
    """Render and encode a clip (h264 with B-frames; VP9 for .webm); returns its path.

    size is (width, height), both even (h264 4:2:0). fps may be fractional: ``30000 / 1001`` or
    ``Fraction(30000, 1001)`` gives NTSC's 29.97 fps exactly. ``times`` gives explicit presentation
    times in seconds for a variable-frame-rate clip (then ``fps`` only sets the encoder's nominal
    rate). ``start`` delays the whole video stream: its first frame is presented at ``start``
    seconds, which the container records as the stream's start time (mp4 through an edit list).
    ``codec="mjpeg"`` writes intra-only frames (as many AVI dashcams do) instead.
    Frame i always carries the number i (see `read_frame_number`) and is rendered as if ``t``
    seconds into the clip, ``t`` counted from its first frame.
    """
    import av

    if scene not in SCENES:
        raise ValueError(f"scene must be one of {SCENES}, got {scene!r}")
    width, height = size
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"size must be even and at least 16x16, got {width}x{height}")
    if not start >= 0:
        raise ValueError(f"start must be zero or positive, got {start!r}")
    vfr = times is not None
    avi = Path(path).suffix.lower() == ".avi"
    if avi and (vfr or start):
        raise ValueError("AVI stores no presentation times: variable-frame-rate or delayed clips need .mp4/.mov/.mkv/.webm")
    if times is None:
        count = max(int(round(seconds * fps)), 1)
        times = [i / fps for i in range(count)]
    times = [float(t) for t in times]
    if any(b <= a for a, b in zip(times, times[1:], strict=False)):
        raise ValueError("times must be strictly increasing")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rate = fractions.Fraction(fps).limit_denominator(1001)
    # A constant rate gets the 1/fps time base (the only one AVI can store); explicit VFR times
    # get milliseconds; a delayed start 1/90000 s (MPEG's clock), which holds both the usual
    # frame rates and start times such as 1.23 s exactly. (Matroska and WebM store
    # milliseconds whatever is asked.)
    time_base = fractions.Fraction(1, 1000) if vfr else fractions.Fraction(1, 90000) if start else 1 / rate
    cache: dict = {}
    with av.open(str(path), "w") as container:
        # WebM only holds VP8/VP9/AV1; every other container here takes h264.
        webm = path.suffix.lower() == ".webm"
        codec = codec or ("libvpx-vp9" if webm else "libx264")
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.options = ({"crf": str(crf), "b": "0", "deadline": "realtime"} if codec == "libvpx-vp9"
                          else {"crf": str(crf), "preset": "veryfast"} if codec == "libx264" else {})
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(render_frame(i, t, seconds, size, scene, rng, cache), format="rgb24")
            frame.pts = int(round((start + t) / time_base))
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_broken(path: str | Path, kind: str) -> Path:
    """Write one of `BROKEN_KINDS`: inputs a loader must refuse (or, for corrupt_middle, survive).

    - empty: 0 bytes; text: a text file named like a video;
    - truncated: the first half of an mp4 whose index (moov) sits at the end, so it is lost;
    - truncated_indexed: the first half of an mp4 whose index sits at the start (faststart), so the
      header promises frames the file no longer holds;
    - audio_only: an mp4 with one AAC stream and no video;
    - corrupt_middle: a 3 s clip with a run of random bytes written over its middle;
    - one_pixel: a valid 1x1 video.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("This is not a video, just some text with a video suffix.\n" * 20)
    elif kind in ("truncated", "truncated_indexed"):
        full = path.with_name(path.stem + ".full" + path.suffix)
        _write_encoded(full, seconds=3.0, faststart=kind == "truncated_indexed")
        data = full.read_bytes()
        full.unlink()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "audio_only":
        with av.open(str(path), "w") as container:
            stream = container.add_stream("aac", rate=16000)
            stream.layout = "mono"
            samples = (0.2 * np.sin(np.arange(16000 * 2) * 2 * np.pi * 440 / 16000)).astype(np.float32)
            for start in range(0, len(samples), 1024):
                frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="fltp", layout="mono")
                frame.sample_rate = 16000
                frame.pts = start
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    elif kind == "corrupt_middle":
        write_clip(path, seconds=3.0, fps=10, size=(64, 64), scene="crash", seed=1)
        data = bytearray(path.read_bytes())
        rng = np.random.default_rng(7)
        start = len(data) // 2
        data[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        path.write_bytes(bytes(data))
    elif kind == "one_pixel":
        with av.open(str(path), "w") as container:
            # 4:4:4 so that the 1x1 size is legal for x264 (4:2:0 needs even sides).
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = 1, 1, "yuv444p"
            for i in range(10):
                frame = av.VideoFrame.from_ndarray(np.full((1, 1, 3), i * 20, np.uint8), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    else:
        raise ValueError(f"kind must be one of {BROKEN_KINDS}, got {kind!r}")
    return path


def _write_encoded(path: Path, seconds: float, faststart: bool) -> None:
    import av

    rng = np.random.default_rng(0)
    cache: dict = {}
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(int(seconds * 10)):
            img = render_frame(i, i / 10, seconds, (64, 64), "crash", rng, cache)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode(None))


EXAMPLES = (
    # (file name, scene, seconds, seed)
    ("synthetic_crash_cut_in.mp4", "crash", 7.0, 0),
    ("synthetic_normal_overtake.mp4", "normal", 6.0, 1),
    ("synthetic_crash_late.mp4", "crash", 8.0, 2),
)


def make_examples(out_dir: str | Path, size: tuple[int, int] = (640, 360), fps: float = 25) -> list[Path]:
    """Write the app's example clips (each name contains "synthetic"); returns their paths."""
    out = Path(out_dir)
    return [write_clip(out / name, seconds=seconds, fps=fps, size=size, scene=scene, seed=seed)
            for name, scene, seconds, seed in EXAMPLES]
