"""Where a build runs: the `runner:` section (local runner or Dataflow) and the `dataflow:` section."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from vidcorpus.config.base import Section

RUNNERS = {"direct": "FnApiRunner", "prism": "PrismRunner", "dataflow": "DataflowRunner"}
"""Runner names a recipe may use (`runner.name`) and the Beam runner each one selects. `direct`
is the Python FnApiRunner that Beam's DirectRunner wraps, named explicitly: the DirectRunner
itself first tries Prism (downloading a binary) and falls back only when that fails, so the
same build would run on different runners on a networked and an offline machine."""

GpuPlacement = Literal["clip", "all_workers", "none"]


class DataflowConfig(Section):
    """The `dataflow:` section: everything a Dataflow job needs beyond the build recipe.

    `project`, `temp_location` and `sdk_container_image` have no defaults because they name
    the user's own resources; `pipeline_options` refuses to build Dataflow options without them.
    """

    project: str | None = None
    region: str = "us-central1"
    temp_location: str | None = None
    """`gs://bucket/path` for Beam's temporary files."""
    staging_location: str | None = None
    """`gs://bucket/path` for the staged job graph; defaults to `temp_location`."""
    job_name: str | None = None
    """Lowercase letters, digits and dashes; None lets Beam generate one."""
    sdk_container_image: str | None = None
    """The worker image built from docker/Dockerfile (same Beam and Python versions as the launcher)."""
    sdk_location: str = "container"
    """`container`: use the Beam SDK inside the worker image and stage no SDK tarball."""

    machine_type: str = "n2-standard-4"
    """CPU workers: probe, decode, scenes, keyframes, clip cutting, LLM calls, writes."""
    num_workers: int | None = Field(None, ge=1)
    """Workers at start; None lets Dataflow choose."""
    max_num_workers: int = Field(20, ge=1)
    autoscaling_algorithm: Literal["THROUGHPUT_BASED", "NONE"] = "THROUGHPUT_BASED"
    disk_size_gb: int = Field(50, ge=10)
    """Boot disk per worker; the CUDA-enabled worker image alone takes several GB."""
    service_account_email: str | None = None
    network: str | None = None
    subnetwork: str | None = None
    """Full URL or `regions/REGION/subnetworks/NAME`."""
    use_public_ips: bool | None = None
    """False keeps workers on private IPs (the network then needs Cloud NAT to reach a hosted
    LLM API); None keeps Dataflow's default."""
    labels: dict[str, str] = Field(default_factory=dict)

    gpu_placement: GpuPlacement = "clip"
    """`clip`: only the CLIP step runs on GPU workers (resource hint, right fitting);
    `all_workers`: every worker gets a GPU (`worker_accelerator` service option, every worker
    is `gpu_machine_type`); `none`: no GPUs (CLIP, if enabled, runs on CPU)."""
    gpu_type: str = "nvidia-tesla-t4"
    gpu_count: int = Field(1, ge=1)
    gpu_machine_type: str | None = "n1-standard-8"
    """Machine for GPU workers: T4, P4, V100 and P100 attach to N1 machines; L4 needs G2."""
    gpu_min_ram_gb: float | None = Field(None, gt=0)
    """Optional `min_ram` hint for the CLIP step, in GB."""
    gpu_options: tuple[str, ...] = ("install-nvidia-driver",)
    """Appended to the accelerator string as Dataflow's GPU page documents them."""

    experiments: tuple[str, ...] = ("use_runner_v2",)
    """`no_use_multiple_sdk_containers` is deliberately not a default: it leaves one Python
    process per worker VM, which serialises decoding behind the GIL on CPU workers. GPU memory
    is bounded with `clip.model_copies` instead (one shared model per GPU worker)."""
    number_of_worker_harness_threads: int | None = Field(None, ge=1)
    save_main_session: bool = False
    """All pipeline code is in the installed package, so nothing from `__main__` is pickled."""
    extra_options: dict[str, Any] = Field(default_factory=dict)
    """Any other Beam pipeline option by its Python name, e.g. `{worker_zone: us-central1-a}`;
    unknown names are rejected when the options are built."""

    @field_validator("temp_location", "staging_location")
    @classmethod
    def _on_cloud_storage(cls, value: str | None) -> str | None:
        # Beam's own check; a path it rejects makes it try to create a default bucket instead.
        if value is not None and not re.fullmatch(r"gs://[a-z0-9][-_a-z0-9.]+[a-z0-9]/.*", value, re.DOTALL):
            raise ValueError(f"must be gs://BUCKET/PATH with a valid bucket name, got {value!r}")
        return value

    @field_validator("project")
    @classmethod
    def _project_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z][-a-z0-9:.]+[a-z0-9]", value):
            raise ValueError(f"expected a project ID (not its display name or number), got {value!r}")
        return value

    @field_validator("job_name")
    @classmethod
    def _dataflow_job_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", value):
            raise ValueError(f"job names use lowercase letters, digits and dashes, got {value!r}")
        return value

    @field_validator("gpu_type", "gpu_machine_type")
    @classmethod
    def _plain_token(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
            raise ValueError(f"expected lowercase letters, digits and dashes, got {value!r}")
        return value

    @field_validator("gpu_options")
    @classmethod
    def _no_separators(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for option in value:
            if not option or ";" in option or "," in option:
                raise ValueError(f"gpu option {option!r} must be non-empty without ';' or ','")
        return value

    @model_validator(mode="after")
    def _gpu_machine_for_all_workers(self) -> "DataflowConfig":
        if self.gpu_placement == "all_workers" and self.gpu_machine_type is None:
            raise ValueError("gpu_placement all_workers needs gpu_machine_type")
        return self

    def missing_for_submit(self) -> list[str]:
        """Keys a Dataflow job cannot start without, as dotted recipe keys."""
        needed = ("project", "temp_location", "sdk_container_image")
        return [f"dataflow.{key}" for key in needed if not getattr(self, key)]


class RunnerConfig(Section):
    name: Literal["direct", "prism", "dataflow"] = "direct"
    """`direct`: Beam's Python FnApiRunner on this machine (`mode`, `workers`); `prism`: Beam's Go
    Prism runner, only when asked for (Beam downloads its binary on first use); `dataflow`:
    Google Cloud Dataflow (`dataflow:`)."""
    mode: Literal["in_memory", "multi_threading", "multi_processing"] = "multi_threading"
    workers: int = Field(2, ge=1)
    """Videos processed at once by the local runner. Two threads keep two cores busy: decoding,
    scaling and encoding run in FFmpeg and OpenCV outside the GIL, and a video's own decode pass
    leaves about a core idle. Raise it on a machine with more cores (memory grows with it)."""
    progress: bool = True
