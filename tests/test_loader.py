"""The training loader: right frames, clean worker/rank splits, remote reads, padded batches."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vidcorpus.loader import FrameSampling, ReaderPlace, ReleaseReader, VideoDataset, collate, iter_samples, shards_for
from vidcorpus.release.files import ReleaseFiles
from vidcorpus.release.frames import decord_available, frame_indices, read_frames
from vidcorpus.release.media import ReleaseMedia, media_recipes

BACKENDS = ["pyav"] + (["decord"] if decord_available() else [])


def numbered_video(path: Path, frames: int = 30, fps: int = 10) -> bytes:
    """Frame i is a flat grey of level 8 * i, so a decoded picture tells which frame it is."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "0", "g": "8"}
        for i in range(frames):
            picture = np.full((48, 64, 3), 8 * i, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


def decode_independently(data: bytes, times) -> np.ndarray:
    """Every frame with PyAV from the start, then the one on screen at each time."""
    with av.open(io.BytesIO(data)) as container:
        decoded = [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    starts = np.array([t for t, _ in decoded]) - decoded[0][0]
    return np.stack([decoded[i][1] for i in frame_indices(starts, times)])


def shard_member(root: Path, shard: str, name: str) -> bytes:
    with tarfile.open(root / "shards" / shard) as tar:
        return tar.extractfile(name).read()


@pytest.mark.parametrize("backend", BACKENDS)
def test_frame_reader_returns_the_frame_on_screen_at_each_time(tmp_path, backend):
    data = numbered_video(tmp_path / "numbered.mp4")
    times = [2.05, 0.0, 0.31, 0.99, 1.0, 2.9, 5.0]  # unordered, on a frame edge, past the end
    frames, used = read_frames(data, times, backend=backend)
    assert used == backend and frames.shape == (7, 48, 64, 3)
    expected = [20, 0, 3, 9, 10, 29, 29]
    assert [round(float(f.mean()) / 8) for f in frames] == expected
    resized, _ = read_frames(data, times, size=(24, 32), backend=backend)
    assert resized.shape == (7, 24, 32, 3)


def test_uniform_fps_and_task_sampling():
    assert FrameSampling("uniform", frames=4).times(2.0) == [0.25, 0.75, 1.25, 1.75]
    assert FrameSampling("fps", fps=2.0).times(1.6) == [0.25, 0.75, 1.25]
    assert FrameSampling("fps", fps=30.0, max_frames=4).times(2.0) == [0.25, 0.75, 1.25, 1.75]
    assert FrameSampling("task", frames=2).times(4.0, [0.5, 3.0, 3.5]) == [0.5, 3.0, 3.5]
    assert FrameSampling("task", frames=2).times(4.0, None) == [1.0, 3.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_frames_equal_independent_decoding_of_the_clip(task_release, backend):
    samples = list(iter_samples(str(task_release), "clips", sampling=FrameSampling("fps", fps=4.0), backend=backend,
                                skip_errors=False))
    clips = ReleaseFiles(str(task_release)).table("clips").to_pylist()
    assert sorted(s["key"] for s in samples) == sorted(c["clip_id"] for c in clips)
    for sample in samples:
        clip = sample["row"]
        mp4 = shard_member(task_release, clip["shard"], f"{clip['clip_id']}.mp4")
        assert sample["backend"] == backend
        assert len(sample["frames"]) == int((clip["end_s"] - clip["start_s"]) * 4 + 1e-9)
        assert np.array_equal(sample["frames"], decode_independently(mp4, sample["frame_times"]))


def test_task_sampling_reads_a_clip_at_its_keyframes(task_release):
    sample = next(iter_samples(str(task_release), "clips", sampling=FrameSampling("task")))
    clip = sample["row"]
    assert list(sample["frame_times"]) == pytest.approx([k["timestamp_s"] - clip["start_s"] for k in clip["keyframes"]])


def test_ordering_windows_are_read_from_the_clip_mp4s_inside_the_release(task_release):
    rows = [s for s in iter_samples(str(task_release), "sft", sampling=FrameSampling(frames=3), skip_errors=False)
            if s["row"]["family"] == "order"]
    assert rows
    files = ReleaseFiles(str(task_release))
    clips = {c["clip_id"]: c for c in files.table("clips").to_pylist()}
    table_rows = {r["sample_id"]: r for r in files.table("sft").to_pylist()}
    for sample in rows:
        assert "answer_key" not in sample["row"]  # media recipes are read by the loader, never handed on
        for index, media in enumerate(media_recipes(table_rows[sample["row"]["sample_id"]])):
            clip = clips[media["clip_id"]]
            mp4 = shard_member(task_release, clip["shard"], f"{clip['clip_id']}.mp4")
            mine = sample["frame_media"] == index
            offset = media["start_s"] - clip["start_s"]
            expected = decode_independently(mp4, sample["frame_times"][mine] + offset)
            assert np.array_equal(sample["frames"][mine], expected)


def test_a_window_across_two_clips_reads_each_time_from_the_clip_on_screen(task_release):
    media = ReleaseMedia(ReleaseFiles(str(task_release)))
    first, second = media.clips_of(media.files.table("clips")["video_id"][0].as_py())[:2]
    start = first["end_s"] - 0.5
    window = {"kind": "window", "video_id": first["video_id"], "uri": "elsewhere.mp4", "duration_s": 1.0,
              "start_s": start, "end_s": start + 1.0}
    assert [p.member for p in media.pieces(window)] == [f"{first['clip_id']}.mp4", f"{second['clip_id']}.mp4"]
    frames, _ = media.frames(window, [0.7, 0.2])
    clip_bytes = [shard_member(task_release, c["shard"], f"{c['clip_id']}.mp4") for c in (first, second)]
    assert np.array_equal(frames[1], decode_independently(clip_bytes[0], [first["end_s"] - first["start_s"] - 0.3])[0])
    assert np.array_equal(frames[0], decode_independently(clip_bytes[1], [0.2])[0])


@pytest.mark.parametrize("table", ["clips", "sft"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_ranks_and_workers_read_every_sample_once(task_release, table, shuffle):
    everything = sorted(s["key"] for s in iter_samples(str(task_release), table, sampling=FrameSampling(frames=1)))
    seen = []
    for rank in range(2):
        for worker in range(2):
            place = ReaderPlace(rank, 2, worker, 2)
            seen += [s["key"] for s in iter_samples(str(task_release), table, sampling=FrameSampling(frames=1),
                                                    place=place, shuffle=shuffle, seed=7)]
    assert len(everything) == len(set(everything)) > 4
    assert sorted(seen) == everything


def test_shard_order_is_shuffled_per_epoch_and_the_same_on_every_rank():
    urls = [f"s-{i:02d}.tar" for i in range(12)]
    epoch0 = [shards_for(urls, ReaderPlace(r, 3), True, 1, 0) for r in range(3)]
    assert sorted(sum(epoch0, [])) == urls
    assert sum(epoch0, []) != urls[0::3] + urls[1::3] + urls[2::3]
    assert [shards_for(urls, ReaderPlace(r, 3), True, 1, 1) for r in range(3)] != epoch0
    assert epoch0 == [shards_for(urls, ReaderPlace(r, 3), True, 1, 0) for r in range(3)]


def test_torch_dataloader_workers_split_the_shards(task_release):
    data = VideoDataset(str(task_release), "clips", sampling=FrameSampling(frames=2, size=(32, 32)), shuffle=True)
    loader = torch.utils.data.DataLoader(data, batch_size=3, num_workers=2, collate_fn=collate)
    keys = [key for batch in loader for key in batch["keys"]]
    assert sorted(keys) == sorted(c["clip_id"] for c in ReleaseFiles(str(task_release)).table("clips").to_pylist())


def test_collate_pads_to_the_longest_frame_sequence(task_release):
    samples = list(iter_samples(str(task_release), "rl", sampling=FrameSampling(frames=2, size=(24, 40))))
    lengths = sorted({len(s["frames"]) for s in samples})
    assert lengths == [2, 6]  # a probe, and three ordering clips
    batch = collate(samples)
    assert batch["frames"].shape == (len(samples), 6, 24, 40, 3) and batch["frames"].dtype == torch.uint8
    assert batch["frame_mask"].sum(dim=1).tolist() == [len(s["frames"]) for s in samples]
    assert (batch["frame_media"][~batch["frame_mask"]] == -1).all()
    with pytest.raises(ValueError, match="FrameSampling.size"):
        collate(list(iter_samples(str(task_release), "rl", sampling=FrameSampling(frames=1)))[:1] +
                [dict(samples[0], frames=np.zeros((1, 8, 8, 3), np.uint8))])


@pytest.fixture(scope="module")
def served(task_release):
    """The task_release behind a local HTTP server (127.0.0.1 only)."""
    handler = functools.partial(QuietHandler, directory=str(task_release))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.parametrize("table", ["clips", "sft"])
def test_a_release_served_over_http_reads_like_the_local_one(task_release, served, table):
    sampling = FrameSampling(frames=3, size=(32, 32))
    local = list(iter_samples(str(task_release), table, sampling=sampling, skip_errors=False))
    remote = list(iter_samples(served, table, sampling=sampling, skip_errors=False))
    assert [s["key"] for s in remote] == [s["key"] for s in local]
    for a, b in zip(local, remote):
        assert np.array_equal(a["frames"], b["frames"])


def test_webdataset_shard_urls_select_shards(task_release, served):
    spec = served + "/shards/train-{000001..000002}.tar"
    keys = [s["key"] for s in ReleaseReader(served, "clips", sampling=FrameSampling(frames=1), shards=spec)]
    clips = ReleaseFiles(str(task_release)).table("clips").to_pylist()
    assert keys == [c["clip_id"] for c in clips if c["shard"] in ("train-000001.tar", "train-000002.tar")]


def test_unknown_table_and_missing_split_are_plain_errors(task_release):
    with pytest.raises(ValueError, match="one of"):
        ReleaseReader(str(task_release), "frames")
    with pytest.raises(FileNotFoundError, match="no clips shards of split 'test'"):
        next(iter_samples(str(task_release), "clips", "test"))


@pytest.mark.parametrize("table", ["sft", "rl"])
def test_every_task_sample_s_media_loads_from_the_release_alone(task_release, table):
    """The fixture deleted the source videos: windows come from clip MP4s, probes from probes/."""
    rows = ReleaseFiles(str(task_release)).table(table).to_pylist()
    samples = list(iter_samples(str(task_release), table, sampling=FrameSampling(frames=2), skip_errors=False))
    assert len(samples) == len(rows) > 0
    assert {r["family"] for r in rows} >= {"order", "niah"}
    assert all(len(s["frames"]) >= len(s["row"]["media"]) and s["frames"].any() for s in samples)
