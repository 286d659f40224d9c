#!/usr/bin/env bash
# Builds the tfcf image from the Dockerfile at the repository root.
#
#   scripts/docker/build.sh                     # image "tfcf"
#   TFCF_IMAGE=mine scripts/docker/build.sh     # another name
#   scripts/docker/build.sh --build-arg CUDA_APT=12-5   # extra arguments go to `docker build`
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
command -v docker >/dev/null ||
  { echo "build.sh: docker is not installed (see https://docs.docker.com/engine/install/)" >&2; exit 1; }
exec docker build -t "${TFCF_IMAGE:-tfcf}" "$@" "$root"
