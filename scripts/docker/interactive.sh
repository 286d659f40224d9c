#!/usr/bin/env bash
# Starts a shell (or a command) in the tfcf image with the GPUs, this checkout and a data folder.
#
#   scripts/docker/interactive.sh                       # a shell
#   scripts/docker/interactive.sh 8888                  # ... publishing port 8888 for scripts/jupyter-run.sh
#   scripts/docker/interactive.sh 8888 python main.py --train --test --use_tf_amp
#
# Mounts: this checkout at /workspace/tfcf (the image's editable install runs the mounted code), the data mirror
# $TFCF_DATA_MIRROR (default ../shared/data beside the checkout) read-only at /data, and the cache $TFCF_DATA_DIR
# (default ~/.cache/tfcf: prepared splits, downloads) at /cache. Runs as the calling user so that files written
# under runs/ stay yours. TFCF_IMAGE picks the image (default tfcf); TFCF_GPUS the `--gpus` value (default all;
# "none" on a host without GPUs).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"

port=""
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  port="$1"
  shift
  if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    echo "interactive.sh: port $port is out of range; give a port in 1..65535 (e.g. 8888)" >&2
    exit 2
  fi
fi

data="${TFCF_DATA_MIRROR:-$root/../shared/data}"
if [ ! -d "$data" ]; then
  echo "interactive.sh: no data folder at $data; set TFCF_DATA_MIRROR to a folder holding ml-100k/ etc." >&2
  exit 2
fi
data="$(cd "$data" && pwd)"
cache="${TFCF_DATA_DIR:-$HOME/.cache/tfcf}"
mkdir -p "$cache"

args=(--rm --interactive
      --volume "$root:/workspace/tfcf" --workdir /workspace/tfcf
      --volume "$data:/data:ro" --env TFCF_DATA_MIRROR=/data
      --volume "$cache:/cache" --env TFCF_DATA_DIR=/cache
      --user "$(id -u):$(id -g)" --env HOME=/tmp/home
      # NCCL moves data between the GPU workers through shared memory.
      --ipc=host)
[ -t 0 ] && args+=(--tty)
gpus="${TFCF_GPUS:-all}"
[ "$gpus" != none ] && args+=(--gpus "$gpus")
[ -n "$port" ] && args+=(--publish "$port:$port" --env "JUPYTER_PORT=$port")

exec docker run "${args[@]}" "${TFCF_IMAGE:-tfcf}" "${@:-bash}"
