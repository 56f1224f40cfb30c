"""Embedded text subtitles (mov_text in MP4, subrip in MKV) and sidecar files become
`transcripts` rows with exact times from the first video frame, and clips carry the words said
inside them."""

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vidcorpus import ids
from vidcorpus.config import load_config
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.discover import Input
from vidcorpus.pipelines.scan import scan_video
from vidcorpus.pipelines.segment import segment_video

CUES = [(500, 1500, "Hello there"), (2250, 3750, "{\\i1}Second{\\i0} line")]
SUBTITLE_PAYLOADS = {"mov_text": lambda text: struct.pack(">H", len(text.encode())) + text.encode(),
                     "subrip": lambda text: text.encode()}


def write_subtitled(path: Path, fmt: str, codec: str, language: str = "eng") -> None:
    """4 s of video at 25 fps (a cut at 2 s) with one text subtitle stream holding CUES (ms)."""
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        subs = out.add_mux_stream(codec)
        subs.time_base = Fraction(1, 1000)
        subs.metadata["language"] = language
        for i in range(100):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 if i < 50 else 200, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for start, end, text in CUES:
            packet = av.Packet(SUBTITLE_PAYLOADS[codec](text))
            packet.stream, packet.pts, packet.dts = subs, start, start
            packet.duration, packet.time_base = end - start, Fraction(1, 1000)
            out.mux(packet)


def segmented(tmp_path: Path, source: Path):
    item = Input(str(source), source.stat().st_size, ids.video_id(str(source), source.stat().st_size))
    cfg = load_config(None, ["keyframes.k=1", "scenes.min_scene_s=0.5"])
    work = str(tmp_path / "work")
    result = segment_video(scan_video(item, cfg, work), cfg, work)
    assert result["video"] is not None, result["failures"]
    return result


@pytest.mark.parametrize("name, fmt, codec", [("movtext.mp4", "mp4", "mov_text"), ("subrip.mkv", "matroska", "subrip")])
def test_embedded_text_subtitles_round_trip_with_exact_times(tmp_path, name, fmt, codec):
    source = tmp_path / name
    write_subtitled(source, fmt, codec)
    result = segmented(tmp_path, source)
    rows = [(r["source"], r["language"], r["start_s"], r["end_s"], r["text"]) for r in result["tables"]["transcripts"]]
    assert rows == [("embedded", "eng", 0.5, 1.5, "Hello there"), ("embedded", "eng", 2.25, 3.75, "Second line")]
    assert [c["speech"] for c in result["clips"]] == ["Hello there", "Second line"]
    assert result["failures"] == []


def test_a_sidecar_srt_and_a_language_vtt_are_picked_up(tmp_path):
    source = tmp_path / "talk.mp4"
    write_video(str(source), [Scene(50, 1), Scene(50, 2)], fps=25)
    (tmp_path / "talk.srt").write_text("1\n00:00:00,400 --> 00:00:01,600\n<i>Good</i> morning\n\n"
                                       "2\n00:00:02,500 --> 00:00:03,100\nand welcome\n")
    (tmp_path / "talk.fr.vtt").write_text("WEBVTT\n\n00:00:00.400 --> 00:00:01.600\nBonjour\n")
    (tmp_path / "talker.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nanother video's\n")
    result = segmented(tmp_path, source)
    rows = [(r["source"], r["language"], r["start_s"], r["end_s"], r["text"]) for r in result["tables"]["transcripts"]]
    assert rows == [("sidecar", None, 0.4, 1.6, "Good morning"), ("sidecar", "fr", 0.4, 1.6, "Bonjour"),
                    ("sidecar", None, 2.5, 3.1, "and welcome")]
    # the track with most lines speaks for the video (no audio language to prefer)
    assert [c["speech"] for c in result["clips"]] == ["Good morning", "and welcome"]


def test_an_unreadable_sidecar_costs_one_failures_row(tmp_path):
    source = tmp_path / "talk.mp4"
    write_video(str(source), [Scene(50, 1), Scene(50, 2)], fps=25)
    (tmp_path / "talk.ass").write_bytes(b"\x00\x01 not subtitles at all")
    result = segmented(tmp_path, source)
    assert [(f["stage"], f["error_class"]) for f in result["failures"]] == [("subtitles", "SubtitleError")]
    assert len(result["clips"]) == 2 and result["tables"]["transcripts"] == []


def test_speech_coverage_counts_overlaps_once_per_video():
    from vidcorpus.media.transcripts import speech_coverage

    rows = [{"video_id": "a", "source": "embedded", "language": "eng", "start_s": 0.0, "end_s": 2.0},
            {"video_id": "a", "source": "sidecar", "language": "fr", "start_s": 1.0, "end_s": 3.0},
            {"video_id": "b", "source": "asr", "language": None, "start_s": 5.0, "end_s": 6.0}]
    coverage = speech_coverage(rows, {"a": 10.0, "b": 10.0, "c": 20.0})
    assert coverage == {"lines": 3, "videos_with_speech": 2, "by_source": {"asr": 1, "embedded": 1, "sidecar": 1},
                        "languages": {"eng": 1, "fr": 1, "unknown": 1}, "speech_s": 4.0, "video_s": 40.0,
                        "share": 0.1}
