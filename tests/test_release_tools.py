"""Release tools on a real build: dataset card, validation, report and Hub publishing.

One release is built per module with every stage on (a fake OpenAI-compatible server for the
LLM stages, a tiny random-weight CLIP), then read, loaded with `datasets` and `webdataset`,
damaged in copies, and published to a Hub whose API methods are replaced by recorders.
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import json
import re
import shutil
import tarfile
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from llm_server import FakeLLMServer
from PIL import Image

from vidcorpus.cli import main
from vidcorpus.config import load_config
from vidcorpus.media.synth import Scene, write_video
from vidcorpus.pipelines.build import build
from vidcorpus.publish import ReleaseInvalid, hub, plan_upload, publish, render_card, report, write_card
from vidcorpus.publish.card import PLACEHOLDER, hub_license, size_category
from vidcorpus.publish.charts import histogram, percentiles
from vidcorpus.publish.report import readable, render_report, verdict_of
from vidcorpus.publish.validate import validate_release
from vidcorpus.release.manifest import dataset_hash, file_entry, manifest_digest
from vidcorpus.schemas import TABLES

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
SECRET = "hf_not_a_real_token_0123456789"


def make_release(root: Path, clip: bool = True, llm: bool = True) -> Path:
    """Build a small release (two videos, one bad input); the build writes its card and report."""
    inputs = root / "videos"
    inputs.mkdir(parents=True)
    write_video(str(inputs / "cuts.mp4"), [Scene(30, 1), Scene(25, 2), Scene(35, 3)], size=(160, 120))
    write_video(str(inputs / "fade.mp4"), [Scene(30, 4, fade_out=10), Scene(30, 5, fade_in=10)], size=(160, 120))
    (inputs / "cuts.srt").write_text("1\n00:00:00,200 --> 00:00:01,000\nthe first scene\n")
    (inputs / "notes.mp4").write_text("plain text pretending to be a video\n")
    overrides = ["input.license=cc-by-4.0"]
    if clip:
        arch = root / "vidcorpus-test-tiny.json"
        arch.write_text(json.dumps(TINY_CLIP))
        overrides += ["clip.enabled=true", "clip.model=vidcorpus-test-tiny", f"clip.model_config_path={arch}",
                      "clip.pretrained=null", "clip.allow_random_weights=true", "clip.device=cpu",
                      "clip.stitch_threshold=1.0", "clip.transition_threshold=-1.0", "clip.queries=[a checkerboard]"]
    out = root / "release"
    with FakeLLMServer() as server:
        if llm:
            overrides.append(f"llm.base_url={server.base_url}")
        build(str(inputs), str(out), load_config(TINY, overrides))
    return out


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return make_release(tmp_path_factory.mktemp("release"))


@pytest.fixture
def copy(release, tmp_path):
    """A private copy of the release (without .work) that a test may damage."""
    def make() -> Path:
        target = tmp_path / "copy"
        shutil.copytree(release, target, ignore=shutil.ignore_patterns(".work"))
        return target
    return make


@pytest.fixture
def hf_offline(monkeypatch, tmp_path):
    """`datasets` offline, with its caches in the test's temporary folder."""
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "1")
        monkeypatch.setattr(datasets.config, name, True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")


def manifest_of(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def rows(root: Path, table: str) -> list[dict]:
    folder = root / ("failures" if table == "failures" else f"data/{table}")
    return pq.read_table(folder).to_pylist()


def card_header(root: Path) -> dict:
    return yaml.safe_load((root / "README.md").read_text().split("---\n")[1])


def refresh_manifest(root: Path, **changes) -> None:
    """Re-hash every listed file and apply top-level changes, as a build would have written it."""
    manifest = manifest_of(root)
    manifest.update(changes)
    manifest["files"] = [file_entry(str(root), e["path"]) for e in manifest["files"]]
    manifest["dataset_hash"] = dataset_hash(manifest["files"])
    manifest.pop("manifest_digest")
    manifest["manifest_digest"] = manifest_digest(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def rewrite_parquet(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path, compression="zstd")


# --- the release as built ------------------------------------------------------------------------

def test_fresh_release_is_valid_and_has_every_table(release):
    assert validate_release(str(release)) == []
    tables = {p.name for p in (release / "data").iterdir()}
    assert tables == {"videos", "clips", "transcripts", "frames", "annotations", "sft", "rl"}
    assert (release / ".work").is_dir()  # staging exists but is no part of the release


# --- dataset card --------------------------------------------------------------------------------

def test_card_header_declares_a_config_per_table_licence_and_size(release):
    header = card_header(release)
    configs = {c["config_name"]: c for c in header["configs"]}
    assert set(configs) == {"videos", "clips", "transcripts", "frames", "annotations", "sft", "rl", "failures"}
    assert header["configs"][0]["config_name"] == "clips" and header["configs"][0]["default"] is True
    assert configs["failures"]["data_files"] == [{"split": "train", "path": "failures/*.parquet"}]
    for name, config in configs.items():
        pattern = config["data_files"][0]["path"]
        assert pattern == ("failures/*.parquet" if name == "failures" else f"data/{name}/*.parquet")
        assert list(release.glob(pattern)), pattern
    assert header["license"] == "cc-by-4.0"
    assert header["size_categories"] == ["n<1K"]
    assert header["task_categories"] == ["video-text-to-text", "visual-question-answering"]
    assert {"video", "webdataset", "clip-embeddings", "llm-annotations"} <= set(header["tags"])


def test_card_body_tells_sources_stages_models_and_counts(release):
    text = (release / "README.md").read_text()
    manifest = manifest_of(release)
    assert "| cc-by-4.0 | 2 |" in text
    for stage in ("scenes", "clip", "annotate", "tasks"):
        assert f"| {stage} | run |" in text
    assert f"| `clip` | {manifest['models']['clip']} |" in text
    assert "| `prompts.qa` | 3 |" in text and "| `llm.caption` | gpt-4o-mini |" in text
    assert f"| `tokens_in` | {manifest['usage']['tokens_in']} |" in text
    assert "0.5 frames per second of every clip" in text and "at most 8 consecutive clips" in text
    assert f"| dropped: visual | {manifest['usage']['qa_dropped_visual']} |" in text
    assert f"| clips | {manifest['counts']['clips']} |" in text
    assert manifest["dataset_hash"] in text
    assert render_card(str(release)) == text  # deterministic


def test_card_licence_and_size_rules():
    assert hub_license(Counter({"cc-by-4.0": 3})) == "cc-by-4.0"
    assert hub_license(Counter({"cc-by-4.0": 3, "mit": 1})) == "other"
    assert hub_license(Counter({"unknown": 2})) == "unknown"
    assert hub_license(Counter()) == "unknown"
    assert hub_license(Counter({"CC BY 4.0": 1})) == "other"  # not a Hub licence id
    assert [size_category(n) for n in (0, 999, 1000, 10_000, 2_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]


def test_every_card_config_loads_with_datasets(release, hf_offline):
    manifest = manifest_of(release)
    for config in card_header(release)["configs"]:
        name = config["config_name"]
        ds = datasets.load_dataset(str(release), name, split="train")
        assert ds.num_rows == manifest["counts"][name], name
        assert ds.column_names == TABLES[name].names, name


def test_card_loading_snippets_run_and_shards_load(release, hf_offline):
    text = (release / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(snippets) == 3
    found: dict = {}
    for code in snippets:
        namespace: dict = {}
        exec(code.replace(PLACEHOLDER, str(release)), namespace)  # noqa: S102 - the card's own examples
        found.update(namespace)
    clips = {c["clip_id"]: c for c in rows(release, "clips")}
    assert found["clips"].num_rows == len(clips)
    assert found["clip"]["clip_id"] in clips  # streamed with webdataset
    shards = found["shards"]["train"]  # the datasets WebDataset builder
    assert sorted(shards["__key__"]) == sorted(clips)
    sample = shards[0]
    assert sample["json"]["clip_id"] == sample["__key__"]
    assert sample["json"]["keyframes"] == clips[sample["__key__"]]["keyframes"]
    assert sample["0.jpg"].size[0] > 0 and sample["mp4"]["bytes"][4:8] == b"ftyp"


def test_all_clip_shards_stream_with_webdataset(release):
    clips = {c["clip_id"]: c for c in rows(release, "clips")}
    shards = sorted(str(p) for p in (release / "shards").glob("train-*.tar"))
    seen = {s["__key__"]: json.loads(s["json"]) for s in wds.WebDataset(shards, shardshuffle=False)}
    assert seen == clips


# --- validation ----------------------------------------------------------------------------------

def test_validate_reports_a_flipped_byte_in_a_shard(copy):
    root = copy()
    shard = root / "shards" / "train-000000.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    listed = next(e for e in manifest_of(root)["files"] if e["path"] == "shards/train-000000.tar")
    actual = file_entry(str(root), "shards/train-000000.tar")["sha256"]
    problems = validate_release(str(root))
    assert f"shards/train-000000.tar: sha256 is {actual}, manifest.json says {listed['sha256']}" in problems


def test_validate_reports_a_missing_parquet_file(copy):
    root = copy()
    (root / "data" / "clips" / "part-00000.parquet").unlink()
    problems = validate_release(str(root))
    assert problems[0] == "data/clips/part-00000.parquet: listed in manifest.json but missing"


def test_validate_reports_stray_files_and_edited_card_and_report_but_ignores_work(copy):
    root = copy()
    (root / "shards" / "train-000099.tar").write_bytes(b"")
    shutil.copy(root / "data" / "clips" / "part-00000.parquet", root / "data" / "clips" / "part-00001.parquet")
    (root / "README.md").write_text("edited by hand\n")
    (root / "report.html").write_text("<p>old</p>\n")
    (root / ".work").mkdir()
    (root / ".work" / "leftover.json").write_text("{}")
    problems = sorted(validate_release(str(root)))
    assert [p.split(" is ")[0] for p in problems] == [
        "README.md: sha256", "README.md: size",
        "data/clips/part-00001.parquet: not listed in manifest.json (stray file)",
        "report.html: sha256", "report.html: size",
        "shards/train-000099.tar: not listed in manifest.json (stray file)",
    ]


def test_validate_reports_a_parquet_file_with_the_wrong_schema(copy):
    root = copy()
    path = root / "data" / "videos" / "part-00000.parquet"
    table = pq.read_table(path)
    i = table.schema.get_field_index("width")
    wrong = table.set_column(i, pa.field("width", pa.int64(), nullable=False), table.column("width").cast(pa.int64()))
    j = wrong.schema.get_field_index("uri")
    wrong = wrong.cast(wrong.schema.set(j, pa.field("uri", pa.string(), nullable=True)))
    rewrite_parquet(path, wrong)
    refresh_manifest(root)
    assert validate_release(str(root)) == [
        "data/videos/part-00000.parquet: column 'uri' has nullable=True, expected False",
        "data/videos/part-00000.parquet: column 'width' has type int64, expected int32",
    ]


def test_validate_checks_rows_and_shard_contents(copy):
    root = copy()
    path = root / "data" / "clips" / "part-00000.parquet"
    table = pq.read_table(path)
    clips = table.to_pylist()
    clips[0]["end_s"] = clips[0]["start_s"]  # an empty clip breaks the clip rules
    rewrite_parquet(path, pa.Table.from_pylist(clips, schema=table.schema))
    shard = root / "shards" / clips[0]["shard"]
    with tarfile.open(shard, "a") as tar:
        extra = tarfile.TarInfo("vstranger_0000.json")
        extra.size = 2
        tar.addfile(extra, io.BytesIO(b"{}"))
    refresh_manifest(root)
    problems = validate_release(str(root))
    clip_id, name = clips[0]["clip_id"], clips[0]["shard"]
    assert f"data/clips/part-00000.parquet: row 0 (clip_id={clip_id}): need 0 <= start_s < end_s, got " \
           f"{clips[0]['start_s']}..{clips[0]['start_s']}" in problems
    assert f"shards/{name}: member '{clip_id}.json' differs from its row in table clips" in problems
    assert f"shards/{name}: member 'vstranger_0000.json' belongs to no row of table clips" in problems
    assert len(problems) == 3, problems


def test_validate_reports_a_wrong_dataset_hash_and_counts(copy):
    root = copy()
    manifest = manifest_of(root)
    manifest["counts"]["clips"] += 1
    manifest["dataset_hash"] = "0" * 64
    (root / "manifest.json").write_text(json.dumps(manifest))
    expected = dataset_hash(manifest["files"])
    assert validate_release(str(root)) == [
        f"manifest.json: dataset_hash is {'0' * 64}, its files hash to {expected}",
        f"manifest.json: manifest_digest is {manifest['manifest_digest']}, its content hashes to "
        f"{manifest_digest(manifest)} (the manifest was edited after the build)",
        f"manifest.json: counts.clips is {manifest['counts']['clips']}, table clips has "
        f"{manifest['counts']['clips'] - 1} rows",
    ]


# --- report --------------------------------------------------------------------------------------

class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.tags: Counter = Counter()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        self.urls += [(tag, value or "") for name, value in attrs if name in ("src", "href", "xlink:href", "action")]


def test_report_is_self_contained_with_plots_and_thumbnails(release):
    text = (release / "report.html").read_text()
    links = _Links()
    links.feed(text)
    assert links.urls and all(url.startswith("data:image/jpeg;base64,") for _, url in links.urls)
    assert not re.search(r"https?://", text) and links.tags["script"] == 0 and links.tags["link"] == 0
    for section in ("summary", "videos", "durations", "scenes", "tasks", "files", "annotations", "tokens",
                    "failures", "thumbnails"):
        assert f'<section id="{section}">' in text
    assert links.tags["svg"] >= 14
    assert "qa: passed" in text and "caption: unchecked" in text  # verdicts, from the annotations table
    assert any(a["kind"] == "cot" for a in rows(release, "annotations"))
    assert "cot: unchecked" not in text and "cot: passed" in text  # CoT's verdict is its matches_answer check
    assert ">tokens_in<" in text and ">probe · NotAVideo<" in text
    assert ">failures by stage: probe<" in text and ">p50<" in text and ">p95<" in text
    assert "<h3>By frame timing</h3>" in text and ">stream copy<" in text or ">re-encoded<" in text
    assert "per million input" in text  # cost at the assumed prices
    bad = next(f for f in rows(release, "failures") if f["error_class"] == "NotAVideo")
    row = f"<td>{html.escape(bad['uri'])}</td><td>probe</td><td>NotAVideo</td><td>{html.escape(bad['message'])}</td>"
    assert row in text
    captions = [a for a in rows(release, "annotations") if a["kind"] == "caption"]
    assert captions and text.count('<span class="caption">') >= 1
    clips = rows(release, "clips")
    thumbs = [Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) for _, url in links.urls]
    assert len(thumbs) == min(24, len(clips))
    assert all(max(t.size) <= 160 and t.format == "JPEG" for t in thumbs)
    assert render_report(str(release)) == text  # deterministic


def test_report_thumbnails_are_downscaled_keyframes(release, monkeypatch):
    monkeypatch.setattr(report, "THUMB_SIZE", 64)
    links = _Links()
    links.feed(render_report(str(release)))
    sizes = {Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size for _, url in links.urls}
    assert sizes and all(max(size) == 64 for size in sizes)


def test_report_helpers():
    assert [verdict_of(v) for v in ('{"passed": true}', '{"passed": false}', "{}", None, "not json")] == [
        "passed", "failed", "unchecked", "unchecked", "unchecked"]
    assert [verdict_of(v) for v in ('{"matches_answer": true}', '{"matches_answer": false}',
                                    '{"matches_answer": null}')] == ["passed", "failed", "unchecked"]  # CoT
    assert histogram([2.0, 2.0, 2.0], 10) == ([3], [2.0, 3.0])
    counts, edges = histogram([0.0, 1.0, 2.0, 3.0], 2)
    assert counts == [2, 2] and edges == [0.0, 2.0, 4.0]
    counts, edges = histogram([1.707, 1.813, 2.5, 3.9, 7.8], 12)  # round ticks, every value inside
    assert edges == [0.0, 2.0, 4.0, 6.0, 8.0] and counts == [2, 2, 0, 1]
    assert readable("failures_by_stage.probe") == "failures by stage: probe"
    assert [name for name, _ in percentiles([1.0, 2.0, 3.0])] == [
        "min", "p5", "p25", "p50", "p75", "p95", "mean", "max"]


# --- publishing ----------------------------------------------------------------------------------

def test_dry_run_plans_exactly_the_release_files_and_only_reads_the_repository(release, monkeypatch):
    fake = FakeHub(monkeypatch, existing=[".gitattributes", "README.md", "shards/train-000099.tar"])
    plan = publish(str(release), "someone/corpus", dry_run=True)
    manifest = manifest_of(release)
    assert plan.paths == sorted({"manifest.json", "README.md", "report.html"} | {e["path"] for e in manifest["files"]})
    assert not any(".work" in p or p.startswith("sources/") for p in plan.paths)
    assert plan.left_out == ["2 source video(s): publish.include_sources is not set in the build config"]
    assert plan.version == "v" + manifest["dataset_hash"][:12]
    assert [name for name, _ in fake.calls] == ["__init__", "list_repo_files"]
    assert plan.deleted == ["shards/train-000099.tar"]
    assert plan.dry_run and "would publish" in plan.describe()
    assert "would delete from the repository: shards/train-000099.tar" in plan.describe()


def test_dry_run_offline_still_plans_and_says_deletions_were_not_listed(release, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(HfApi, "list_repo_files", offline)
    plan = publish(str(release), "someone/corpus", dry_run=True)
    assert plan.deleted == [] and "ConnectionError: Name or service not known" in plan.describe()
    assert "deletes every file there that the release does not have" in plan.describe()


def test_publish_without_a_token_stops_first_with_one_plain_paragraph(release, monkeypatch, tmp_path, capsys):
    from huggingface_hub import constants
    for variable in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_ID_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    fake = FakeHub(monkeypatch)
    assert main(["publish", str(release), "--repo-id", "someone/corpus"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vidcorpus: publishing needs a Hugging Face token") and "HF_TOKEN" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and fake.calls == []


class FakeHub:
    """Replaces HfApi's network methods; every call is bound to the real method's signature (so
    a wrong argument fails here as it would against the Hub) and recorded as (name, arguments)."""

    METHODS = ("__init__", "create_repo", "list_repo_files", "create_commit", "create_tag")

    def __init__(self, monkeypatch, existing=()):
        self.calls: list[tuple[str, dict]] = []
        self.existing = list(existing)
        for name in self.METHODS:
            monkeypatch.setattr(HfApi, name, self._method(name, inspect.signature(getattr(HfApi, name))))

    def _method(self, name, signature):
        def method(api, *args, **kwargs):
            arguments = signature.bind(api, *args, **kwargs).arguments
            arguments.pop("self")
            self.calls.append((name, arguments))
            if name == "list_repo_files":
                return self.existing
            if name == "create_commit":
                arguments["operations"] = list(arguments["operations"])
                return SimpleNamespace(oid=f"commit{len(self.named('create_commit'))}")
            return None
        return method

    def named(self, name):
        return [arguments for called, arguments in self.calls if called == name]


def test_publish_creates_repo_commits_the_plan_deletes_stale_files_and_tags(release, monkeypatch, caplog):
    fake = FakeHub(monkeypatch, existing=[".gitattributes", "README.md", "shards/train-000099.tar"])
    monkeypatch.setattr(hub, "FILES_PER_COMMIT", 4)
    caplog.set_level("DEBUG")

    plan = publish(str(release), "someone/corpus", private=True, token=SECRET)

    assert [name for name, _ in fake.calls][:3] == ["__init__", "create_repo", "list_repo_files"]
    assert fake.named("__init__") == [{"token": SECRET}]
    assert fake.named("create_repo") == [{"repo_id": "someone/corpus", "repo_type": "dataset", "private": True,
                                          "exist_ok": True}]
    commits = fake.named("create_commit")
    assert all(c["repo_id"] == "someone/corpus" and c["repo_type"] == "dataset" for c in commits)
    operations = [op for c in commits for op in c["operations"]]
    added = [op for op in operations if isinstance(op, CommitOperationAdd)]
    assert sorted(op.path_in_repo for op in added) == plan.paths and len(added) == len(plan.paths)
    assert all(Path(op.path_or_fileobj) == release / op.path_in_repo for op in added)
    assert len(commits) == -(-(len(plan.paths) - 3) // 4) + 1  # data in fours, then manifest + card + report
    assert {op.path_in_repo for op in commits[-1]["operations"]} == {
        "manifest.json", "README.md", "report.html", "shards/train-000099.tar"}
    deleted = [op.path_in_repo for op in operations if isinstance(op, CommitOperationDelete)]
    assert deleted == plan.deleted == ["shards/train-000099.tar"]
    assert fake.named("create_tag") == [{"repo_id": "someone/corpus", "tag": plan.version, "repo_type": "dataset",
                                         "revision": f"commit{len(commits)}"}]
    assert fake.calls[-1][0] == "create_tag"
    assert SECRET not in plan.describe() + repr(plan) + caplog.text


def test_sources_are_planned_only_when_allowed_and_licensed(copy):
    root = copy()
    manifest = manifest_of(root)
    videos = sorted(rows(root, "videos"), key=lambda v: v["video_id"])
    manifest["config"]["publish"] = {"include_sources": True}
    (root / "manifest.json").write_text(json.dumps(manifest))
    plan = plan_upload(str(root), "someone/corpus")
    sources = [f for f in plan.files if f.path_in_repo.startswith("sources/")]
    assert [(f.path_in_repo, f.source, f.bytes) for f in sources] == [
        (f"sources/{v['video_id']}.mp4", v["uri"], v["size_bytes"]) for v in videos]
    assert plan.left_out == []

    path = root / "data" / "videos" / "part-00000.parquet"
    table = pq.read_table(path)
    unlicensed = [dict(v, license=None) if v["video_id"] == videos[0]["video_id"] else v for v in table.to_pylist()]
    rewrite_parquet(path, pa.Table.from_pylist(unlicensed, schema=table.schema))
    manifest["config"]["input"]["license"] = None
    (root / "manifest.json").write_text(json.dumps(manifest))
    plan = plan_upload(str(root), "someone/corpus")
    assert [f.source for f in plan.files if f.path_in_repo.startswith("sources/")] == [videos[1]["uri"]]
    assert plan.left_out == [f"{videos[0]['uri']}: licence unknown"]


def test_publish_uses_the_manifest_name_and_version_and_refuses_an_invalid_release(copy):
    root = copy()
    refresh_manifest(root, name="street-scenes", version="1.2.0")
    assert publish(str(root), "someone/corpus", dry_run=True).version == "1.2.0"
    card = render_card(str(root))
    assert "pretty_name: street-scenes 1.2.0\n" in card and "\n# street-scenes 1.2.0\n" in card
    assert "<h1>street-scenes 1.2.0</h1>" in render_report(str(root))
    (root / "data" / "videos" / "part-00000.parquet").unlink()
    with pytest.raises(ReleaseInvalid, match="data/videos/part-00000.parquet: listed in manifest.json but missing"):
        publish(str(root), "someone/corpus", dry_run=True)


def test_publish_refuses_a_release_whose_card_is_missing_until_it_is_written_again(copy):
    root = copy()
    card = (root / "README.md").read_bytes()
    (root / "README.md").unlink()
    with pytest.raises(ReleaseInvalid, match="README.md: listed in manifest.json but missing"):
        publish(str(root), "someone/corpus", dry_run=True)
    write_card(str(root))  # the card is made from the manifest: the same bytes come back
    assert (root / "README.md").read_bytes() == card
    plan = publish(str(root), "someone/corpus", dry_run=True)
    assert not next(f for f in plan.files if f.path_in_repo == "README.md").generated


def test_histogram_of_values_equal_up_to_rounding_is_one_bin():
    from vidcorpus.publish.charts import histogram
    counts, edges = histogram([2.4, 2.4 + 1e-13, 2.4], 12)
    assert counts == [3] and len(edges) == 2


def test_llm_ab_captions_the_same_clips_with_two_prompt_versions_side_by_side(copy):
    from vidcorpus.cli import main

    target = copy()
    with FakeLLMServer() as server:
        code = main(["llm", "ab", str(target), "--prompt", "caption", "--versions", "1", "2", "--videos", "1",
                     "--set", f"llm.base_url={server.base_url}", "--set", "llm.differential_captions=false"])
        prompts = [b["messages"][0]["content"] for b in server.bodies]
        unknown = main(["llm", "ab", str(target), "--versions", "1", "99", "--set", f"llm.base_url={server.base_url}"])
    assert code == 0 and unknown == 2
    ab = json.loads((target / "ab" / "caption.v1-v2.json").read_text())
    first = min(v["video_id"] for v in rows(target, "videos"))
    clips = sorted(c["clip_id"] for c in rows(target, "clips") if c["video_id"] == first)
    assert [r["clip_id"] for r in ab["rows"]] == clips
    assert all(r["a"]["version"] == 1 and r["b"]["version"] == 2 and r["a"]["caption"] and r["b"]["caption"]
               for r in ab["rows"])
    assert len(prompts) == 2 * len(clips) and len(set(prompts)) == 2  # each version's system prompt, once per clip
    html = (target / "report.html").read_text()
    assert "<h3>caption: v1 vs v2</h3>" in html and html.count(clips[0]) >= 1
    assert validate_release(str(target)) == []


def test_card_and_report_tell_the_speech_the_transcripts_hold(release):
    text = (release / "README.md").read_text()
    assert "## Speech" in text and "holds 1 timed lines from 1 video(s), by source: sidecar (1)" in text
    html = (release / "report.html").read_text()
    assert '<section id="speech">' in html and "share of video time with speech" in html
