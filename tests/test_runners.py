"""Runner options, the GPU resource hint, sizing arithmetic, and the offline Dataflow job check.

The job check builds the real pipeline with DataflowRunner options and Beam's dry run: no
credentials, no network, nothing submitted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
import yaml
from apache_beam.transforms.resources import parse_resource_hints
from pydantic import ValidationError

from vidcorpus.config import load_config
from vidcorpus.config.clip import ClipConfig
from vidcorpus.config.llm import AnnotatorConfig
from vidcorpus.config.runner import DataflowConfig
from vidcorpus.runners import (
    clip_resource_hints,
    gpu_plan_problems,
    local_runner,
    pipeline_flags,
    pipeline_options,
    with_clip_accelerator,
)
from vidcorpus.sizing import (
    Prices,
    StageRates,
    cost_per_1000_video_hours,
    llm_concurrency_for_rate_limit,
    llm_global_request_rate,
    llm_in_flight,
    machine_vcpus,
    sdk_processes_per_worker,
    stage_throughput,
)

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "dataflow-gpu.yaml"
CHECK_SCRIPT = REPO / "bench" / "check_dataflow_graph.py"
T4_ON_N1 = "type:nvidia-tesla-t4;count:1;machine_type:n1-standard-8;install-nvidia-driver"


def submittable(**changes) -> DataflowConfig:
    return DataflowConfig(project="my-project", temp_location="gs://my-bucket/tmp",
                          sdk_container_image="us-central1-docker.pkg.dev/my-project/vc/worker:1", **changes)


def check_module():
    """bench/check_dataflow_graph.py as a module (bench/ is not a package)."""
    if "check_dataflow_graph" not in sys.modules:
        spec = importlib.util.spec_from_file_location("check_dataflow_graph", CHECK_SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["check_dataflow_graph"]


# --- config -----------------------------------------------------------------------------------


def test_dataflow_config_rejects_values_dataflow_would_reject():
    for bad in ({"temp_location": "/local/tmp"}, {"temp_location": "gs://x/tmp"},  # bucket too short
                {"temp_location": "gs://my-bucket"}, {"project": "My Project"}, {"job_name": "Nightly_Run"},
                {"gpu_options": ["install-nvidia-driver;count:8"]}, {"gpu_type": "NVIDIA T4"},
                {"gpu_placement": "all_workers", "gpu_machine_type": None}, {"machine_typo": "n2"}):
        with pytest.raises(ValidationError):
            DataflowConfig(**bad)


def test_dataflow_config_is_frozen_and_loads_from_the_recipe():
    section = yaml.safe_load(RECIPE.read_text())
    df = DataflowConfig.model_validate(section["dataflow"])
    assert (df.gpu_placement, df.gpu_type, df.gpu_machine_type) == ("clip", "nvidia-tesla-t4", "n1-standard-8")
    assert "no_use_multiple_sdk_containers" not in df.experiments
    assert df.missing_for_submit() == ["dataflow.project", "dataflow.temp_location", "dataflow.sdk_container_image"]
    with pytest.raises(ValidationError):
        df.max_num_workers = 3
    clip = ClipConfig.model_validate(section["clip"])
    assert (clip.enabled, clip.device, clip.precision, clip.accelerator) == (True, "cuda", "fp16", None)
    assert AnnotatorConfig.model_validate(section["llm"]).concurrency == section["llm"]["concurrency"]


def test_recipe_loads_as_a_whole_build_config():
    cfg, df = check_module().load_recipe(RECIPE, ["dataflow.max_num_workers=7", "clip.batch_size=32"])
    assert (df.max_num_workers, cfg.clip_model.batch_size, cfg.clip_model.enabled) == (7, 32, True)
    assert cfg.runner.progress is False


# --- pipeline options ---------------------------------------------------------------------------


def test_direct_options_carry_mode_and_workers_and_extra_args_win():
    opts = pipeline_options("direct", "multi_processing", 4, extra_args=["--direct_num_workers=2"]).get_all_options()
    assert (opts["runner"], opts["direct_running_mode"], opts["direct_num_workers"]) == (
        "FnApiRunner", "multi_processing", 2)


def test_dataflow_options_need_project_bucket_and_image():
    with pytest.raises(ValueError, match="dataflow.project, dataflow.temp_location, dataflow.sdk_container_image"):
        pipeline_options("dataflow", dataflow=DataflowConfig())
    with pytest.raises(ValueError, match="dataflow section"):
        pipeline_options("dataflow")
    with pytest.raises(ValueError, match="runner must be one of"):
        pipeline_options("spark")


def test_dataflow_options_right_fit_the_gpu_to_clip_only():
    df = submittable(labels={"team": "video"}, use_public_ips=False)
    opts = pipeline_options("dataflow", dataflow=df, extra_args=["--max_num_workers=5"]).get_all_options()
    assert opts["runner"] == "DataflowRunner"
    assert (opts["project"], opts["region"]) == ("my-project", "us-central1")
    assert opts["temp_location"] == "gs://my-bucket/tmp"
    assert (opts["sdk_container_image"], opts["sdk_location"]) == (df.sdk_container_image, "container")
    assert (opts["machine_type"], opts["disk_size_gb"], opts["max_num_workers"]) == ("n2-standard-4", 50, 5)
    assert opts["experiments"] == ["use_runner_v2"]
    assert opts["labels"] == ["team=video"]
    assert opts["use_public_ips"] is False and opts["save_main_session"] is False
    assert not opts["dataflow_service_options"]  # right fitting excludes worker_accelerator
    assert clip_resource_hints(df) == {"accelerator": T4_ON_N1}


def test_all_workers_placement_uses_the_service_option_and_the_gpu_machine():
    df = submittable(gpu_placement="all_workers", gpu_type="nvidia-l4", gpu_machine_type="g2-standard-8")
    opts = pipeline_options("dataflow", dataflow=df).get_all_options()
    assert opts["dataflow_service_options"] == ["worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver"]
    assert opts["machine_type"] == "g2-standard-8"
    assert clip_resource_hints(df) == {}


def test_extra_options_pass_through_and_typos_fail():
    flags = pipeline_flags("dataflow", dataflow=submittable(extra_options={"worker_zone": "us-central1-a"}))
    assert flags[-1] == "--worker_zone=us-central1-a"
    with pytest.raises(ValueError, match="max_num_worker"):
        pipeline_options("dataflow", dataflow=submittable(extra_options={"max_num_worker": 3}))


# --- GPU placement ------------------------------------------------------------------------------


def test_clip_hints_are_valid_beam_resource_hints():
    hints = clip_resource_hints(submittable(gpu_min_ram_gb=16))
    parsed = parse_resource_hints(hints)
    assert parsed == {"beam:resources:accelerator:v1": T4_ON_N1.encode(),
                      "beam:resources:min_ram_bytes:v1": b"16000000000"}
    assert clip_resource_hints(None) == {} and clip_resource_hints(submittable(gpu_placement="none")) == {}


def test_clip_config_gets_the_accelerator_unless_it_names_its_own():
    df = submittable()
    assert with_clip_accelerator(ClipConfig(enabled=True), df).accelerator == T4_ON_N1
    own = ClipConfig(enabled=True, accelerator="type:nvidia-l4;count:1;install-nvidia-driver")
    assert with_clip_accelerator(own, df).accelerator == own.accelerator
    assert with_clip_accelerator(ClipConfig(enabled=True), submittable(gpu_placement="all_workers")).accelerator is None


def test_gpu_plan_problems_name_the_conflict():
    cuda = ClipConfig(enabled=True, device="cuda")
    assert gpu_plan_problems(cuda, "dataflow", submittable()) == []
    assert "no worker has a GPU" in gpu_plan_problems(cuda, "dataflow", submittable(gpu_placement="none"))[0]
    assert "GPU stays idle" in gpu_plan_problems(ClipConfig(enabled=True, device="cpu"), "dataflow", submittable())[0]
    assert gpu_plan_problems(cuda, "direct", submittable(gpu_placement="none")) == []


# --- sizing -------------------------------------------------------------------------------------


def test_machine_vcpus():
    assert [machine_vcpus(m) for m in ("n2-standard-4", "n1-standard-8", "g2-standard-12", "c3-highmem-22-lssd",
                                       "n1-custom-6-23040", "e2-medium")] == [4, 8, 12, 22, 6, 2]
    with pytest.raises(ValueError):
        machine_vcpus("a2-highgpu-1g")


def test_llm_rate_is_slots_over_latency_and_the_limit_inverts_it():
    assert sdk_processes_per_worker(submittable()) == 4
    assert sdk_processes_per_worker(submittable(experiments=["use_runner_v2", "no_use_multiple_sdk_containers"])) == 1
    assert llm_in_flight(workers=10, processes_per_worker=4, concurrency=2) == 80
    assert llm_global_request_rate(10, 4, 2, mean_latency_s=4.0) == pytest.approx(20.0)
    concurrency = llm_concurrency_for_rate_limit(max_requests_per_s=50, workers=10, processes_per_worker=4,
                                                 mean_latency_s=4.0)
    assert concurrency == 5
    assert llm_global_request_rate(10, 4, concurrency, 4.0) <= 50 < llm_global_request_rate(10, 4, concurrency + 1, 4.0)
    assert llm_concurrency_for_rate_limit(1, 100, 8, 1.0) == 1
    assert llm_in_flight(10, 4, 2, clients_per_process=3) == 240  # a client per DoFn instance, 3 bundles at once
    assert llm_concurrency_for_rate_limit(50, 10, 4, 4.0, clients_per_process=2) == 2
    with pytest.raises(ValueError):
        llm_global_request_rate(1, 1, 1, 0.0)


def test_cost_per_1000_video_hours_follows_the_stage_formulas():
    rates = StageRates(source_fps=30, decode_frames_per_s_per_vcpu=400, clip_frames_per_video_s=1,
                       clip_images_per_s_per_gpu=1000, clips_per_video_hour=600, caption_input_tokens=500,
                       caption_output_tokens=100, per_video_llm_share=0.0)
    prices = Prices(vcpu_hour=0.05, memory_gb_hour=0.0, gpu_hour=0.4, gpu_host_vcpus=8, gpu_host_memory_gb=0,
                    llm_input_per_million=0.2, llm_output_per_million=1.0)
    est = cost_per_1000_video_hours(rates, prices)
    assert est.decode_vcpu_hours == pytest.approx(75.0)        # 1000 h x 30 fps / 400 fps per vCPU
    assert est.decode_usd == pytest.approx(75 * 0.05)
    assert est.clip_gpu_hours == pytest.approx(1.0)             # 3.6M frames / 1000 per s / 3600
    assert est.clip_usd == pytest.approx(1.0 * (0.4 + 8 * 0.05))
    assert est.llm_requests == pytest.approx(600_000)
    assert est.llm_usd == pytest.approx(600_000 * (500 * 0.2 + 100 * 1.0) / 1e6)
    assert est.total_usd == pytest.approx(est.decode_usd + est.clip_usd + est.llm_usd)
    faster = cost_per_1000_video_hours(StageRates(decode_frames_per_s_per_vcpu=480), Prices())
    assert faster.decode_usd == pytest.approx(cost_per_1000_video_hours().decode_usd / 2)


def test_stage_throughput_names_the_bottleneck():
    rates = StageRates()
    t = stage_throughput(rates, cpu_vcpus=80, gpus=1, llm_requests_per_s=40)
    assert t.decode == pytest.approx(80 * 240 / 30)
    assert t.clip == pytest.approx(1000.0 / 2)  # 2 candidates embedded per second of video
    assert t.llm == pytest.approx(40 * 3600 / 750)
    assert t.bottleneck == "llm" and t.video_hours_per_hour == pytest.approx(t.llm)
    assert stage_throughput(rates, cpu_vcpus=4, gpus=1, llm_requests_per_s=40).bottleneck == "decode"


# --- offline job graph --------------------------------------------------------------------------


def test_job_graph_of_the_real_build_puts_only_clip_on_gpu(tmp_path):
    """The script a user runs, in its own process with a time limit: offline, nothing submitted."""
    env = {**os.environ, "NO_GCE_CHECK": "True", "GOOGLE_CLOUD_PROJECT": ""}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    run = subprocess.run([sys.executable, str(CHECK_SCRIPT), "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=240, env=env, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    graph = json.loads((tmp_path / "graph.json").read_text())
    job = json.loads((tmp_path / "job.json").read_text())

    hinted = {name: graph["environments"][step["environment"]]["hints"]
              for name, step in graph["steps"].items()
              if step["environment"] and graph["environments"][step["environment"]]["hints"]}
    assert hinted == {"Embed/Clip/BeamML_RunInference": {"accelerator": T4_ON_N1}}
    assert {"SpreadInputs", "SpreadVideos", "SpreadScanned", "SpreadForLLM"} <= set(graph["reshuffles"])
    assert graph["fusion_breaks"]["Embed/Clip/BeamML_RunInference"] == ["SpreadVideos"]
    assert graph["fusion_breaks"]["Annotate"] == ["SpreadForLLM"]
    assert graph["fusion_breaks"]["WriteShards"] == ["GroupWrites"]   # each file's slices, keyed by file
    assert ["Layout/FlatMap(lay_out)", "StageRows"] in graph["side_inputs"]   # the small index, not results

    pool = job["environment"]["workerPools"][0]
    assert pool["machineType"] == "n2-standard-4"
    assert {i["containerImage"] for i in pool["sdkHarnessContainerImages"]} == {
        "us-central1-docker.pkg.dev/vidcorpus-graph-check/vidcorpus/worker:check"}
    assert not [o for o in job["environment"].get("serviceOptions", []) if o.startswith("worker_accelerator")]
    assert "use_runner_v2" in job["environment"]["experiments"]


def test_job_graph_check_with_every_gpu_on_every_worker(tmp_path, capsys):
    code = check_module().main(["--out", str(tmp_path), "--set", "dataflow.gpu_placement=all_workers"])
    assert code == 0, capsys.readouterr().out
    job = json.loads((tmp_path / "job.json").read_text())
    assert job["environment"]["workerPools"][0]["machineType"] == "n1-standard-8"
    service_options = job["environment"]["serviceOptions"]
    assert "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver" in service_options
    graph = json.loads((tmp_path / "graph.json").read_text())
    assert all(not env["hints"] for env in graph["environments"].values())


def test_job_graph_check_catches_a_missing_hint_and_a_missing_reshuffle():
    from apache_beam.ml.inference.base import RunInference

    from vidcorpus.scoring.clip import keyed_clip_handler

    check = check_module()
    df, _ = check.with_placeholders(DataflowConfig())

    def pipeline(reshuffle: bool, accelerator: str | None):
        def compose(p):
            items = p | beam.Create([1, 2], reshuffle=False)
            if reshuffle:
                items = items | "Spread" >> beam.Reshuffle()
            _ = (items
                 | "Heavy" >> beam.Map(lambda i: (str(i), i))
                 | "Clip" >> RunInference(keyed_clip_handler(ClipConfig(enabled=True, accelerator=accelerator))))
        job, _ = check.dry_run(compose, df)
        return check.graph_summary(job.proto_pipeline), check.job_request(job)

    expect = check.Expectations(image=df.sdk_container_image, machine_type=df.machine_type,
                                disk_size_gb=df.disk_size_gb, max_num_workers=df.max_num_workers,
                                experiments=df.experiments, clip_accelerator=T4_ON_N1, worker_accelerator=None,
                                clip_expected=True, heavy_steps=("Heavy",))
    assert check.check(*pipeline(reshuffle=True, accelerator=T4_ON_N1), expect) == []
    problems = check.check(*pipeline(reshuffle=False, accelerator=None), expect)
    assert any("Clip/BeamML_RunInference has accelerator hint None" in p for p in problems)
    assert any(p.startswith("Heavy is not behind a Reshuffle") for p in problems)


def test_job_graph_check_refuses_a_step_that_reads_every_result():
    check = check_module()
    df, _ = check.with_placeholders(DataflowConfig())

    def summary(gather: bool):
        def compose(p):
            results = p | "Segment" >> beam.Create([{"clips": [1]}, {"clips": [2]}], reshuffle=False)
            index = results | "StageRows" >> beam.Map(lambda r: len(r["clips"]))
            _ = p | "LayoutOnce" >> beam.Create([None]) | "Layout" >> beam.Map(
                lambda _, entries: sorted(entries), beam.pvalue.AsList(index))
            _ = results | "UsageOf" >> beam.Map(lambda r: 1) | "Usage" >> beam.CombineGlobally(sum)
            if gather:
                _ = p | "PlanOnce" >> beam.Create([None]) | "Plan" >> beam.Map(
                    lambda _, everything: len(everything), beam.pvalue.AsList(results))
                _ = results | "AllRows" >> beam.combiners.ToList()
        job, _ = check.dry_run(compose, df)
        return check.graph_summary(job.proto_pipeline)

    assert list(check._check_no_corpus_input(summary(gather=False))) == []
    problems = list(check._check_no_corpus_input(summary(gather=True)))
    assert any(p.startswith("step Plan reads the output of Segment/") for p in problems)
    assert any(p.startswith("combine AllRows/") for p in problems)


# --- the local runner is chosen, not guessed ---------------------------------------------------


def test_a_local_build_runs_on_the_fn_api_runner_in_the_configured_mode_and_never_fetches_prism(
        tmp_path, monkeypatch):
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
    from apache_beam.runners.direct.direct_runner import DirectRunner
    from apache_beam.runners.portability import prism_runner
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    from vidcorpus.media.synth import Scene, write_video
    from vidcorpus.pipelines.build import build

    def forbidden(*args, **kwargs):
        raise AssertionError("the build must not go through DirectRunner's Prism attempt or download Prism")

    monkeypatch.setattr(DirectRunner, "run_pipeline", forbidden)
    monkeypatch.setattr(prism_runner.PrismJobServer, "local_bin", forbidden)
    monkeypatch.setattr(prism_runner.PrismJobServer, "_download_to_local_path", forbidden)
    used = []
    real_run = fn_runner.FnApiRunner.run_pipeline

    def spy(runner, pipeline, options):
        used.append((type(runner).__name__, options.view_as(DirectOptions).direct_running_mode))
        return real_run(runner, pipeline, options)

    monkeypatch.setattr(fn_runner.FnApiRunner, "run_pipeline", spy)
    video = tmp_path / "v.mp4"
    write_video(str(video), [Scene(20, 1), Scene(20, 2)], size=(96, 64))
    cfg = load_config(REPO / "configs" / "tiny.yaml", ["runner.mode=multi_threading", "llm.enabled=false"])
    build(str(video), str(tmp_path / "out"), cfg)
    assert used == [("FnApiRunner", "multi_threading")]
    assert isinstance(local_runner("direct", pipeline_options("direct")), fn_runner.FnApiRunner)
    assert isinstance(local_runner("prism", pipeline_options("prism")), prism_runner.PrismRunner)
    assert local_runner("dataflow", PipelineOptions()) is None


def test_job_graph_check_finds_an_api_key_pickled_into_a_step():
    check = check_module()
    df, _ = check.with_placeholders(DataflowConfig())
    key = "sk-leaked-into-the-graph-0123456789"

    def compose(p):
        _ = p | beam.Create([1], reshuffle=False) | "Leaky" >> beam.Map(lambda i, k: (i, k), key)

    job, _ = check.dry_run(compose, df)
    assert any("Leaky" in p for p in check._check_secret(job.proto_pipeline, "{}", key))
    assert not list(check._check_secret(job.proto_pipeline, "{}", "sk-not-there-0123456789"))
