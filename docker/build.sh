#!/usr/bin/env bash
# Build the Dataflow worker image (docker/Dockerfile) and push it, in one command.
#
#   docker/build.sh IMAGE            build on Cloud Build (needs gcloud, no local Docker)
#   docker/build.sh --local IMAGE    build with the local Docker engine, then push
#
# IMAGE is a full Artifact Registry reference, for example
#   us-central1-docker.pkg.dev/PROJECT/vidcorpus/worker:$(git rev-parse --short HEAD)
# and becomes `dataflow.sdk_container_image` in the recipe.
#
# The Beam and Python versions of the image are taken from the launcher's environment
# (PYTHON, default .venv/bin/python) because the two must match. Optional overrides, read
# from the environment: TORCH_INDEX_URL, TORCH_VERSION, TORCHVISION_VERSION, CLIP_MODEL,
# CLIP_PRETRAINED (empty: do not bake CLIP weights into the image).
set -euo pipefail

usage() {
  sed -n '2,9p' "$0" >&2
  exit 2
}

local_build=false
if [[ "${1:-}" == "--local" ]]; then
  local_build=true
  shift
fi
[[ $# -eq 1 && -n "$1" && "$1" != -* ]] || usage
image=$1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$root/.venv/bin/python}
if [[ ! -x "$python" ]]; then
  echo "build.sh: no launcher Python at $python (set PYTHON=...)" >&2
  exit 2
fi
beam_version=$("$python" -c 'import apache_beam; print(apache_beam.__version__)')
python_version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

build_args=(--build-arg "BEAM_VERSION=$beam_version" --build-arg "PYTHON_VERSION=$python_version")
for name in TORCH_INDEX_URL TORCH_VERSION TORCHVISION_VERSION CLIP_MODEL CLIP_PRETRAINED VLLM_VERSION; do
  if [[ -n "${!name+set}" ]]; then
    build_args+=(--build-arg "$name=${!name}")
  fi
done
echo "build.sh: $image (apache/beam_python${python_version}_sdk:${beam_version})" >&2

if $local_build; then
  docker build --file "$root/docker/Dockerfile" --tag "$image" "${build_args[@]}" "$root"
  docker push "$image"
  exit 0
fi

# Cloud Build: the docker step gets the same arguments; each is written as a JSON string,
# which YAML reads verbatim.
quote() {
  local s=${1//\\/\\\\}
  printf '"%s"' "${s//\"/\\\"}"
}
config=$(mktemp "${TMPDIR:-/tmp}/vidcorpus-cloudbuild.XXXXXX.yaml")
trap 'rm -f "$config"' EXIT
{
  echo "steps:"
  echo "- name: gcr.io/cloud-builders/docker"
  echo "  args:"
  for arg in build --file docker/Dockerfile --tag "$image" "${build_args[@]}" .; do
    echo "  - $(quote "$arg")"
  done
  echo "images:"
  echo "- $(quote "$image")"
  echo "timeout: 3600s"
  echo "options:"
  echo "  machineType: E2_HIGHCPU_8"
  echo "  diskSizeGb: 100"
} >"$config"
gcloud builds submit "$root" --config "$config"
