"""ASR through an OpenAI-compatible `/audio/transcriptions` endpoint: audio cut into chunks at
quiet points, each chunk's segments shifted back to video time, cached like every LLM call."""

from pathlib import Path

import pytest
from llm_server import FakeLLMServer

from vidcorpus import ids
from vidcorpus.annotators.client import LLMClient
from vidcorpus.config import load_config
from vidcorpus.config.asr import asr_endpoint
from vidcorpus.media.audio import SPEECH_RATE, speech_chunks
from vidcorpus.media.synth import BEEP_S, Scene, write_video
from vidcorpus.pipelines.asr import transcribe_result
from vidcorpus.pipelines.discover import Input
from vidcorpus.pipelines.scan import scan_video
from vidcorpus.pipelines.segment import segment_video

BEEPS = [2.0, 5.3, 10.6]   # one in each 4 s chunk of a 12 s video (chunk_s=5: cut in the last fifth)


def segmented(tmp_path: Path, cfg):
    source = tmp_path / "talk.mp4"
    if not source.exists():
        write_video(str(source), [Scene(100, 1), Scene(100, 2), Scene(100, 3)], fps=25, audio=True, beeps=BEEPS)
    item = Input(str(source), source.stat().st_size, ids.video_id(str(source), source.stat().st_size))
    return segment_video(scan_video(item, cfg, str(tmp_path / "work")), cfg, str(tmp_path / "work"))


OPENED: list[LLMClient] = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while OPENED:
        OPENED.pop().close()


def client_for(cfg, server) -> LLMClient:
    OPENED.append(LLMClient.from_config(cfg.llm, "asr", endpoint=asr_endpoint(cfg.asr, cfg.llm, env={})))
    return OPENED[-1]


def asr_config(tmp_path, server, *more):
    return load_config(None, ["asr.enabled=true", "asr.chunk_s=5", f"llm.base_url={server.base_url}",
                              f"llm.cache_dir={tmp_path / 'cache'}", "llm.mode=batch", *more])


def test_chunks_are_cut_at_quiet_points_and_cover_the_audio(tmp_path):
    source = tmp_path / "talk.mp4"
    write_video(str(source), [Scene(300, 1)], fps=25, audio=True, beeps=BEEPS)
    chunks = list(speech_chunks(str(source), 0, 0.0, 5.0))
    assert [round(start, 3) for start, _ in chunks] == [0.0, 4.0, 8.0]
    assert sum(samples.size for _, samples in chunks) == pytest.approx(12.0 * SPEECH_RATE, abs=SPEECH_RATE * 0.1)
    # a beep in the cut window moves the cut off it, to the quiet after it
    loud = tmp_path / "loud.mp4"
    write_video(str(loud), [Scene(300, 1)], fps=25, audio=True, beeps=[4.0 + k * BEEP_S for k in range(5)] + [4.7])
    starts = [round(start, 2) for start, _ in speech_chunks(str(loud), 0, 0.0, 5.0)]
    assert 4.5 <= starts[1] <= 4.7


def test_a_three_chunk_video_lands_at_the_right_video_times_and_is_cached(tmp_path):
    with FakeLLMServer() as server:
        cfg = asr_config(tmp_path, server)
        result = segmented(tmp_path, cfg)
        client = client_for(cfg, server)
        out = transcribe_result(result, client, cfg)
        sent = [b for b in server.bodies if b.get("path") == "/audio/transcriptions"]
        assert len(sent) == 3   # online, though llm.mode is batch
        assert {b["response_format"] for b in sent} == {"verbose_json"}
        assert {b["timestamp_granularities[]"] for b in sent} == {"segment"}
        rows = out["tables"]["transcripts"]
        assert [(r["source"], r["text"]) for r in rows] == [("asr", "tone 0")] * 3
        for row, beep in zip(rows, BEEPS):
            assert row["start_s"] == pytest.approx(beep, abs=0.01)
            assert row["end_s"] == pytest.approx(beep + BEEP_S, abs=0.01)
        assert [c["speech"] for c in out["clips"]] == ["tone 0", "tone 0", "tone 0"]
        assert out["failures"] == [] and result["tables"]["transcripts"] == []   # a new result
        again = transcribe_result(result, client_for(cfg, server), cfg)
        assert again["tables"]["transcripts"] == rows
        assert len([b for b in server.bodies if b.get("path") == "/audio/transcriptions"]) == 3   # all cached
        # the manifest's usage and run sections count transcription calls like chat ones
        assert out["usage"]["calls"] == 3 and "asr" in out["usage"]["by_prompt"] and "run" not in out["usage"]
        assert (out["llm_run"]["requests"], again["llm_run"]["requests"], again["llm_run"]["cache_hits"]) == (3, 0, 3)
        client.close()


def test_videos_with_subtitles_are_skipped_unless_forced(tmp_path):
    with FakeLLMServer() as server:
        cfg = asr_config(tmp_path, server)
        result = segmented(tmp_path, cfg)
        subtitled = {**result, "tables": {**result["tables"], "transcripts": [
            {"video_id": result["video"]["video_id"], "source": "sidecar", "language": "en", "start_s": 1.0,
             "end_s": 2.0, "text": "hello"}]}}
        assert transcribe_result(subtitled, client_for(cfg, server), cfg) is subtitled
        forced = load_config(None, ["asr.enabled=true", "asr.chunk_s=5", "asr.force=true",
                                    f"llm.base_url={server.base_url}"])
        out = transcribe_result(subtitled, client_for(forced, server), forced)
        assert sorted({r["source"] for r in out["tables"]["transcripts"]}) == ["asr", "sidecar"]
        # the sidecar track (before asr in SOURCE_ORDER) speaks for the clips
        assert [c["speech"] for c in out["clips"]] == ["hello", None, None]


def test_a_failing_endpoint_costs_a_failures_row_per_chunk(tmp_path):
    from llm_server import Fault

    with FakeLLMServer(faults=[Fault("server_error", pattern="audio/transcriptions", times=100)]) as server:
        cfg = asr_config(tmp_path, server, "llm.max_retries=0")
        result = segmented(tmp_path, cfg)
        out = transcribe_result(result, client_for(cfg, server), cfg)
        assert [(f["stage"], f["error_class"]) for f in out["failures"]] == [("asr", "InternalServerError")] * 3
        assert out["tables"]["transcripts"] == [] and len(out["clips"]) == 3


def test_a_dead_asr_endpoint_stops_the_build_before_it_starts(tmp_path, capsys):
    from conftest import TINY

    from vidcorpus.cli import main

    source = tmp_path / "in" / "talk.mp4"
    source.parent.mkdir()
    write_video(str(source), [Scene(50, 1)], fps=25, audio=True, beeps=[0.5])
    with FakeLLMServer() as server:
        url = server.base_url
    code = main(["build", "--input", str(source.parent), "--output", str(tmp_path / "out"), "--config", str(TINY),
                 "--set", "llm.enabled=false", "--set", "asr.enabled=true", "--set", f"asr.base_url={url}"])
    err = capsys.readouterr().err
    assert code != 0 and "ASR endpoint" in err and url in err and "asr.enabled=false" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
