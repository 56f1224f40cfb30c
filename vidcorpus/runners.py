"""Where a build runs: Beam options for the local runner and for Google Cloud Dataflow.

Two things live here, free of torch imports so that loading a recipe stays cheap:

- `local_runner`, the Beam runner object for `runner.name` `direct` (the FnApiRunner, never
  Beam's DirectRunner, which switches to a downloaded Prism binary when it can) or `prism`.
- `pipeline_options`, which turns a runner name plus the `dataflow:` section
  (`vidcorpus.config.runner`) into Beam `PipelineOptions`.
- The GPU placement. By default only the CLIP inference step asks for a GPU, through a Beam
  resource hint (`clip_resource_hints`, `with_clip_accelerator`); Dataflow's right fitting then
  runs that step alone on GPU workers and everything else on CPU workers. Google's right-fitting
  page says not to combine resource hints with the `worker_accelerator` service option, so that
  option is only set when `gpu_placement: all_workers` puts a GPU on every worker instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from vidcorpus.config.runner import RUNNERS, DataflowConfig

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.runner import PipelineRunner

    from vidcorpus.config.clip import ClipConfig

# ---------------------------------------------------------------------------------------------
# Runner and pipeline options


def local_runner(runner: str, options: "PipelineOptions") -> "PipelineRunner | None":
    """The runner object a local build runs on; None for Dataflow, which the options name.

    `direct` is the FnApiRunner built the way Beam's DirectRunner builds it (with the options as
    provision info, so worker processes see them), minus the DirectRunner's attempt to run on
    Prism first.
    """
    if runner == "dataflow":
        return None
    if runner == "prism":
        from apache_beam.runners.portability.prism_runner import PrismRunner
        return PrismRunner()
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(provision))


def pipeline_options(
    runner: str,
    mode: str = "in_memory",
    workers: int = 1,
    dataflow: DataflowConfig | None = None,
    extra_args: Sequence[str] = (),
) -> "PipelineOptions":
    """Beam options for `runner` ('direct', 'prism' or 'dataflow'); `extra_args` (raw Beam flags) come last
    and so override anything derived from the config.

    `mode` and `workers` are the local runner's (`runner.mode`, `runner.workers`); Dataflow
    sizes itself from the `dataflow` section and ignores them.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    options = PipelineOptions(pipeline_flags(runner, mode, workers, dataflow) + list(extra_args))
    _reject_unknown_options(options, dataflow)
    return options


def pipeline_flags(
    runner: str, mode: str = "in_memory", workers: int = 1, dataflow: DataflowConfig | None = None
) -> list[str]:
    """The same options as command-line flags: what `pipeline_options` parses, and what the
    runbook shows for a manual launch."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {sorted(RUNNERS)}, got {runner!r}")
    if runner == "direct":
        return ["--runner=FnApiRunner", f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]
    if runner == "prism":
        return ["--runner=PrismRunner"]
    if dataflow is None:
        raise ValueError("runner 'dataflow' needs the dataflow section of the recipe")
    missing = dataflow.missing_for_submit()
    if missing:
        raise ValueError(f"runner 'dataflow' needs {', '.join(missing)}")
    return _dataflow_flags(dataflow)


def _dataflow_flags(df: DataflowConfig) -> list[str]:
    all_gpus = df.gpu_placement == "all_workers"
    values: dict[str, Any] = {
        "runner": "DataflowRunner",
        "project": df.project,
        "region": df.region,
        "temp_location": df.temp_location,
        "staging_location": df.staging_location,
        "job_name": df.job_name,
        "sdk_container_image": df.sdk_container_image,
        "sdk_location": df.sdk_location,
        "machine_type": df.gpu_machine_type if all_gpus else df.machine_type,
        "num_workers": df.num_workers,
        "max_num_workers": df.max_num_workers,
        "autoscaling_algorithm": df.autoscaling_algorithm,
        "disk_size_gb": df.disk_size_gb,
        "service_account_email": df.service_account_email,
        "network": df.network,
        "subnetwork": df.subnetwork,
        "number_of_worker_harness_threads": df.number_of_worker_harness_threads,
        "experiments": list(df.experiments),
        "labels": [f"{k}={v}" for k, v in sorted(df.labels.items())],
        "dataflow_service_options": [f"worker_accelerator={worker_accelerator(df)}"] if all_gpus else [],
    }
    flags = _as_flags(values)
    if df.use_public_ips is not None:
        flags.append("--use_public_ips" if df.use_public_ips else "--no_use_public_ips")
    flags.append("--save_main_session" if df.save_main_session else "--no_save_main_session")
    return flags + _as_flags(dict(sorted(df.extra_options.items())))


def _as_flags(values: Mapping[str, Any]) -> list[str]:
    """`{key: value}` → `--key=value`; lists repeat the flag, True is a bare flag, None and
    False are left out (Beam's boolean flags have no `=False` form)."""
    flags: list[str] = []
    for key, value in values.items():
        if value is None or value is False:
            continue
        if value is True:
            flags.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            flags += [f"--{key}={item}" for item in value]
        else:
            flags.append(f"--{key}={value}")
    return flags


def _reject_unknown_options(options: "PipelineOptions", dataflow: DataflowConfig | None) -> None:
    """Beam only logs a warning for a flag it does not know; a typo in `extra_options` should fail."""
    if dataflow is None or not dataflow.extra_options:
        return
    known = options.get_all_options(retain_unknown_options=False)
    unknown = sorted(set(dataflow.extra_options) - set(known))
    if unknown:
        raise ValueError(f"dataflow.extra_options: unknown Beam pipeline options {unknown}")


# ---------------------------------------------------------------------------------------------
# GPU placement


def accelerator_spec(df: DataflowConfig, machine_type: str | None = None) -> str:
    """`type:T;count:N[;machine_type:M];options...`, the string Dataflow reads for a GPU."""
    parts = [f"type:{df.gpu_type}", f"count:{df.gpu_count}"]
    if machine_type:
        parts.append(f"machine_type:{machine_type}")
    return ";".join([*parts, *df.gpu_options])


def worker_accelerator(df: DataflowConfig) -> str:
    """The `worker_accelerator` service option value (every worker gets the GPU)."""
    return accelerator_spec(df)


def clip_resource_hints(df: DataflowConfig | None) -> dict[str, str]:
    """Beam resource hints for the CLIP inference step, for `with_resource_hints(**hints)`.

    Empty unless `gpu_placement` is `clip`. The accelerator names the GPU machine type as well,
    so the GPU workers get a shape that fits the GPU while CPU workers keep `machine_type`.
    """
    if df is None or df.gpu_placement != "clip":
        return {}
    hints = {"accelerator": accelerator_spec(df, df.gpu_machine_type)}
    if df.gpu_min_ram_gb is not None:
        hints["min_ram"] = f"{df.gpu_min_ram_gb:g}GB"
    return hints


def with_clip_accelerator(clip: "ClipConfig", df: DataflowConfig | None) -> "ClipConfig":
    """`clip` with `accelerator` filled from the dataflow section, so the CLIP handler's
    resource hint (`OpenClipImageHandler.get_resource_hints`) puts RunInference on GPU workers.

    An accelerator already set in the `clip:` section is kept as written.
    """
    accelerator = clip_resource_hints(df).get("accelerator")
    if accelerator is None or clip.accelerator is not None:
        return clip
    return clip.model_copy(update={"accelerator": accelerator})


def gpu_plan_problems(clip: "ClipConfig", runner: str, df: DataflowConfig | None) -> list[str]:
    """Combinations of runner, GPU placement and CLIP device that would fail or waste a GPU."""
    if runner != "dataflow" or df is None or not clip.enabled:
        return []
    problems = []
    if df.gpu_placement == "none" and clip.device == "cuda":
        problems.append("clip.device is cuda but dataflow.gpu_placement is none: no worker has a GPU")
    if df.gpu_placement != "none" and clip.device == "cpu":
        problems.append(f"dataflow.gpu_placement is {df.gpu_placement} but clip.device is cpu: the GPU stays idle")
    if df.gpu_placement == "all_workers" and clip.accelerator is not None:
        problems.append("clip.accelerator is a resource hint; do not combine it with gpu_placement all_workers "
                        "(Dataflow's right fitting and the worker_accelerator option exclude each other)")
    return problems
