"""Synthetic videos with known structure, for the demo, the tests and the benchmarks.

Each scene is a distinct textured pattern that drifts (so frames are sharp and move) and ends in
a hard cut, optionally with a fade through black; frame times can be made variable and a
display rotation set, so the ground truth for cuts, timestamps and orientation is known.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import av
import numpy as np
from av.video.frame import PictureType

TIME_BASE = Fraction(1, 90000)


@dataclass(frozen=True)
class Scene:
    frames: int
    seed: int
    fade_out: int = 0     # last frames fade to black
    fade_in: int = 0      # first frames fade up from black
    dissolve_in: int = 0  # first frames cross-fade from the previous scene's moving picture


def scene_pattern(seed: int, width: int, height: int) -> np.ndarray:
    """A textured RGB picture unlike other seeds': a coloured checkerboard plus a big bright bar."""
    rng = np.random.default_rng(seed)
    cell = int(rng.integers(8, 24))
    yy, xx = np.mgrid[0:height, 0:width]
    checker = ((yy // cell + xx // cell) % 2).astype(np.float32)
    a, b = rng.integers(0, 256, size=(2, 3))
    img = checker[..., None] * a + (1 - checker[..., None]) * b
    x0 = int(rng.integers(0, width // 2))
    img[:, x0:x0 + width // 4] = rng.integers(128, 256, size=3)
    return img.astype(np.uint8)


def frame_times(count: int, fps: float, vfr: bool) -> list[Fraction]:
    """Frame start times; with `vfr`, intervals alternate between 1/fps and 2/fps."""
    times, t = [], Fraction(0)
    step = Fraction(1) / Fraction(fps).limit_denominator(1000)
    for i in range(count):
        times.append(t)
        t += step * (2 if vfr and i % 3 == 2 else 1)
    return times


def write_video(path: str, scenes: Sequence[Scene], fps: float = 25, size: tuple[int, int] = (320, 240),
                vfr: bool = False, rotation: int = 0, audio: bool = False, codec: str = "libx264",
                gop: int | None = None, key_at_cuts: bool = True, beeps: Sequence[float] = ()) -> list[float]:
    """Write an MP4/MKV; returns each scene's start time in seconds (the true cut times).

    `rotation` is the clockwise turn a player must apply (a phone's portrait video is 90).
    `audio` adds a mono AAC track of silence, with a 1 kHz beep of BEEP_S at each of `beeps`
    (seconds from the first frame), so audio/video sync can be measured.
    """
    width, height = size
    total = sum(s.frames for s in scenes)
    times = frame_times(total, fps, vfr)
    starts, index = [], 0
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with av.open(path, "w", container_options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = TIME_BASE
        stream.codec_context.options = {"flags": "+bitexact", **({"g": str(gop)} if gop else {})}
        if codec == "libx264":
            stream.codec_context.options |= {"preset": "ultrafast", "x264-params": "threads=1"}
        if rotation:
            stream.set_display_rotation(-rotation)
        sound = _add_audio(out) if audio else None
        previous = None
        for scene in scenes:
            starts.append(float(times[index]))
            base = scene_pattern(scene.seed, width, height)
            for i in range(scene.frames):
                picture = np.roll(base, shift=2 * i, axis=1)
                gain = _fade_gain(i, scene)
                if gain < 1:
                    picture = (picture * gain).astype(np.uint8)
                if i < scene.dissolve_in and previous is not None:
                    alpha = (i + 1) / (scene.dissolve_in + 1)
                    picture = _blend(previous[0], previous[1] + i, picture, alpha)
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts, frame.time_base = int(times[index] / TIME_BASE), TIME_BASE
                if i == 0 and key_at_cuts:
                    frame.pict_type = PictureType.I   # as encoders with scene-cut detection do
                out.mux(stream.encode(frame))
                index += 1
            previous = (base, scene.frames)
        out.mux(stream.encode(None))
        if sound is not None:
            _write_audio(out, sound, float(times[-1]) + 1 / fps, beeps)
    return starts


def _blend(base: np.ndarray, step: int, picture: np.ndarray, alpha: float) -> np.ndarray:
    """The previous scene's picture, still drifting at frame `step`, mixed with `picture`."""
    outgoing = np.roll(base, shift=2 * step, axis=1).astype(np.float32)
    return np.round(outgoing * (1 - alpha) + picture.astype(np.float32) * alpha).astype(np.uint8)


def _fade_gain(i: int, scene: Scene) -> float:
    gain = 1.0
    if scene.fade_in and i < scene.fade_in:
        gain = min(gain, i / scene.fade_in)
    if scene.fade_out and i >= scene.frames - scene.fade_out:
        gain = min(gain, (scene.frames - 1 - i) / scene.fade_out)
    return gain


AUDIO_RATE, BEEP_S, BEEP_HZ = 16000, 0.1, 1000.0


def _add_audio(out):
    stream = out.add_stream("aac", rate=AUDIO_RATE)
    stream.layout = "mono"
    return stream


def audio_signal(seconds: float, beeps: Sequence[float] = ()) -> np.ndarray:
    """Mono samples at AUDIO_RATE: silence with a beep starting at each of `beeps` (seconds)."""
    signal = np.zeros(round(seconds * AUDIO_RATE), np.float32)
    tone = 0.5 * np.sin(2 * np.pi * BEEP_HZ * np.arange(int(BEEP_S * AUDIO_RATE)) / AUDIO_RATE)
    for t in beeps:
        at = round(t * AUDIO_RATE)
        part = signal[at:at + len(tone)]
        part[:] = tone[:len(part)]
    return signal


def _write_audio(out, stream, seconds: float, beeps: Sequence[float] = ()) -> None:
    signal, chunk = audio_signal(seconds, beeps), 1024
    for start in range(0, len(signal), chunk):
        frame = av.AudioFrame.from_ndarray(signal[None, start:start + chunk], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def write_audio_only(path: str, seconds: float = 2.0) -> None:
    with av.open(path, "w", format="mp4", container_options={"fflags": "+bitexact"}) as out:
        _write_audio(out, _add_audio(out), seconds)


def write_demo_videos(folder: str) -> list[str]:
    """A small, varied input folder: cuts, a fade, VFR, a portrait phone video, and bad inputs."""
    os.makedirs(folder, exist_ok=True)
    p = lambda name: os.path.join(folder, name)  # noqa: E731
    write_video(p("cuts.mp4"), [Scene(50, 1), Scene(40, 2), Scene(60, 3), Scene(45, 4)])
    write_video(p("fade.mp4"), [Scene(50, 5, fade_out=12), Scene(50, 6, fade_in=12)])
    write_video(p("vfr.mkv"), [Scene(60, 7), Scene(60, 8)], fps=30, vfr=True)
    write_video(p("portrait_phone.mp4"), [Scene(40, 9), Scene(40, 10)], size=(320, 180), rotation=90, audio=True)
    write_audio_only(p("audio_only.mp4"))
    open(p("empty.mp4"), "wb").close()
    with open(p("notes.mp4"), "w") as f:
        f.write("this is a text file, not a video\n")
    return sorted(os.listdir(folder))
