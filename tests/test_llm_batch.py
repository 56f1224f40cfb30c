"""Batch mode against the local server's Batch API: files, batches, polling, failed and expired
lines retried in the next batch, resume of a killed batch build without resubmission, and the
export/import path for `vllm run-batch`."""

from __future__ import annotations

import json
from pathlib import Path

from llm_server import FakeLLMServer, Fault
from test_annotators import make_config, make_video
from test_llm_engine import not_dropped

from vidcorpus.annotators import VideoAnnotator
from vidcorpus.annotators.batch import BatchCollector, batch_line, export_requests, import_results, split_lines
from vidcorpus.cli import main


def annotate(config, env=None):
    video, clips, jpegs = make_video()
    annotator = VideoAnnotator.from_config(config, env=env or {})
    try:
        return annotator.annotate(video, clips, jpegs)
    finally:
        annotator.close()


def batch_config(server, tmp_path: Path, **overrides):
    """Batch mode with captions in one round (differential captions chain one round per clip)."""
    return make_config(server, mode="batch", batch_poll_s=0.01, cache_dir=str(tmp_path / "cache"),
                       differential_captions=False, **overrides)


def test_batch_mode_annotates_a_video_round_by_round_through_files_and_batches(tmp_path):
    with FakeLLMServer() as online:
        expected, _, _ = annotate(make_config(online, differential_captions=False))
    with FakeLLMServer(faults=[Fault("server_error", pattern="Clip 2 of")]) as server:
        server.expire_batches = 1
        annotations, failures, usage = annotate(batch_config(server, tmp_path))
        batches = list(server.batches.values())
    assert not_dropped(failures) == []
    assert annotations == expected  # the same rows as online: same requests, same answers
    assert {b["status"] for b in batches} == {"completed", "expired"}
    assert batches[0]["status"] == "expired"  # the captions round: half its lines were retried
    first_input = server.files[batches[0]["input_file_id"]].decode().splitlines()
    assert all(json.loads(line)["url"] == "/v1/chat/completions" for line in first_input)
    keys = {a["request_hash"] for a in annotations}
    assert {json.loads(line)["custom_id"] for line in first_input} <= keys | {k + "-repair" for k in keys}
    assert usage["run"]["retries"] >= 3  # expired half of the captions, and the failed line


def test_a_killed_batch_build_resumes_polling_instead_of_resubmitting(tmp_path):
    with FakeLLMServer() as server:
        config = batch_config(server, tmp_path, batch_wait=False)
        annotations, failures, usage = annotate(config)
        assert annotations == [] and {f["error_class"] for f in failures} == {"BatchPending"}
        assert usage["run"]["batch_pending"] == len(failures) and len(server.batches) == 1
        annotations, failures, _ = annotate(config.model_copy(update={"batch_wait": True}))
        assert not_dropped(failures) == [] and annotations
        captions_batch = server.files[server.batches["batch-1"]["input_file_id"]]
        resubmitted = [b for b in server.batches.values() if server.files[b["input_file_id"]] == captions_batch]
        assert len(resubmitted) == 1  # the recorded batch was polled, not sent again


def test_input_files_are_split_at_the_batch_limits():
    lines = [batch_line(f"k{i}", {"model": "m", "messages": [{"role": "user", "content": "x" * 50}]})
             for i in range(7)]
    assert [len(p) for p in split_lines(lines, max_lines=3)] == [3, 3, 1]
    assert [len(p) for p in split_lines(lines, max_bytes=2 * len(lines[0]))] == [2, 2, 2, 1]


def test_export_and_import_run_the_same_jsonl_offline(tmp_path, capsys):
    work = tmp_path / "work"
    cache = work / "llm-cache"
    with FakeLLMServer() as server:
        config = make_config(server, mode="batch", batch_submit=False, cache_dir=str(cache))
        _, failures, _ = annotate(config)
        assert {f["error_class"] for f in failures} == {"BatchPending"} and server.request_count == 0
        out = tmp_path / "requests.jsonl"
        assert main(["llm", "export", str(work), "--output", str(out)]) == 0
        lines = out.read_bytes().splitlines()
        # what `vllm run-batch -i requests.jsonl -o results.jsonl` does, here by the local server
        collector = BatchCollector(server_client(server), str(tmp_path / "elsewhere"), poll_s=0.01)
        results = collector.run({json.loads(line)["custom_id"]: line + b"\n" for line in lines})
        results_file = tmp_path / "results.jsonl"
        results_file.write_text("".join(json.dumps({"custom_id": cid, "error": None, "response": {
            "status_code": 200, "body": completion}}) + "\n" for cid, completion in results.items()))
        assert main(["llm", "import", str(results_file), "--work-dir", str(work)]) == 0
        assert f"{len(lines)} results imported" in capsys.readouterr().out
        sent = server.request_count
        _, failures, usage = annotate(config)
        assert server.request_count == sent  # the captions came from the imported file
    assert usage["calls"] > len(lines)  # so the next rounds could be asked (and are pending now)
    assert export_requests(str(cache)) and import_results(str(cache), b"") == 0


def server_client(server):
    import openai
    return openai.OpenAI(api_key="k", base_url=server.base_url, max_retries=0)
