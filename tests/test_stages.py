"""Every stage in one build: CLIP (a tiny random open_clip model through the real loading code),
LLM annotators (the real `openai` client against a local server with injected faults) and
code-made tasks, then a second build that resumes from staged results and the LLM cache."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import tree_digest
from llm_server import FakeLLMServer, Fault

from vidcorpus.config import load_config
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.build import build

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stage-videos")
    write_video(str(folder / "a.mp4"), [Scene(40, 1), Scene(40, 2), Scene(40, 1), Scene(40, 3)], size=(160, 120))
    write_video(str(folder / "b.mp4"), [Scene(50, 4), Scene(50, 5), Scene(50, 6)], size=(160, 120))
    (folder / "broken.mp4").write_bytes(b"\x00" * 1000)
    return folder


@pytest.fixture(scope="module")
def full_config(tmp_path_factory):
    arch = tmp_path_factory.mktemp("arch") / "vidcorpus-stage-tiny.json"
    arch.write_text(json.dumps(TINY_CLIP))
    overrides = [
        "clip.enabled=true", "clip.model=vidcorpus-stage-tiny", f"clip.model_config_path={arch}",
        "clip.pretrained=null", "clip.allow_random_weights=true", "clip.device=cpu", "clip.batch_size=8",
        "clip.queries=[a red square, a blue stripe]", "keyframes.mode=diverse", "keyframes.k=3",
        # a random model finds every picture alike: keep its stitching and grouping from merging all
        "clip.stitch_threshold=1.0", "clip.duplicate_threshold=0.99999", "clip.transition_threshold=-1.0",
        "clip.diverse_threshold=1.0", "tasks.ordering.k=3",
        "llm.concurrency=4", "llm.backoff_base_s=0.01", "llm.backoff_max_s=0.05", "llm.qa_per_video=3",
        "tasks.niah.probes_per_video=1", "tasks.niah.grid.haystack_s=[4.0]",
    ]
    return lambda base_url: load_config("configs/tiny.yaml", overrides + [f"llm.base_url={base_url}"])


@pytest.fixture(scope="module")
def first(inputs, full_config, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("OPENAI_API_KEY", "test-key-not-secret")
    out = tmp_path_factory.mktemp("full")
    with FakeLLMServer(faults=[Fault("rate_limit", nth=2, retry_after=0.01), Fault("server_error", nth=5),
                               Fault("invalid_json", nth=7)]) as server:
        summary = build(str(inputs), str(out), full_config(server.base_url))
        requests = server.request_count
    return out, summary, requests


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def rows(out, table):
    return pq.read_table(out / ("failures" if table == "failures" else f"data/{table}")).to_pylist()


def test_all_stages_ran_and_left_their_tables(first):
    out, summary, requests = first
    assert summary.skipped_stages == {}
    assert requests > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["clip"].startswith("open_clip:vidcorpus-stage-tiny")
    assert manifest["usage"]["tokens_in"] > 0 and manifest["run"]["llm"]["retries"] >= 2
    for table in ("videos", "clips", "frames", "annotations", "sft", "rl", "failures"):
        assert (out / ("failures" if table == "failures" else f"data/{table}")).is_dir(), table
    assert [f["error_class"] for f in rows(out, "failures") if f["item_id"] is None] == ["NotAVideo"]


def test_clip_stage_fills_frames_embeddings_and_duplicate_groups(first):
    out, _, _ = first
    frames = pq.read_table(out / "data" / "frames")
    embedding = frames.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(embedding) and embedding.list_size == 32
    clips = rows(out, "clips")
    assert all(len(c["embedding"]) == 32 for c in clips)
    assert all(len(f["scores"]) == 2 for f in frames.to_pylist())
    assert all(k["mode"] == "diverse" for c in clips for k in c["keyframes"])
    assert all(c["dup_group"] for c in clips) and all(c["detector"] == "content+clip" for c in clips)
    assert len(clips) == 7   # detector scenes survive: nothing stitched at threshold 1.0


def test_annotations_carry_provenance_and_verdicts(first):
    out, _, _ = first
    annotations = rows(out, "annotations")
    kinds = {a["kind"] for a in annotations}
    assert {"caption", "summary"} <= kinds
    for a in annotations:
        assert a["model"] and a["prompt_id"] and a["prompt_version"] >= 1 and a["request_hash"]
        json.loads(a["payload"]), json.loads(a["verdicts"])
    qa = [a for a in annotations if a["kind"] == "qa"]
    assert all("passed" in json.loads(a["verdicts"]) for a in qa)


def test_tasks_are_exported_with_reward_rules(first):
    out, _, _ = first
    rl = rows(out, "rl")
    sft = rows(out, "sft")
    assert rl and sft and not {r["task_id"] for r in rl} & {s["task_id"] for s in sft}  # tasks.rl_share
    assert {r["reward_rule"] for r in rl} >= {"order"}
    probes = list((out / "probes").glob("*.mp4"))
    assert probes and all(p.read_bytes()[4:8] == b"ftyp" for p in probes)


def test_second_build_resumes_without_llm_calls(first, inputs, full_config):
    """A warm cache changes nothing published: only the manifest's `run` section (what this run
    sent) differs."""
    out, _, _ = first
    before = tree_digest(out)
    manifest_before = json.loads((out / "manifest.json").read_text())
    with FakeLLMServer() as server:
        build(str(inputs), str(out), full_config(server.base_url))
        assert server.request_count == 0
    after = tree_digest(out)
    changed = {path for path in before if before[path] != after.get(path)}
    assert changed <= {"manifest.json"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run"]["llm"]["requests"] == 0 and manifest["run"]["llm"]["cache_hits"] > 0
    unrun = lambda m: {**m, "run": None, "config": None, "manifest_digest": None}  # noqa: E731 - the digest covers `run`
    assert unrun(manifest) == unrun(manifest_before)
