#!/usr/bin/env bash
# Starts JupyterLab on the repository (inside the container started by scripts/docker/interactive.sh PORT, or on any
# machine with the project and JupyterLab installed). Open the URL it prints, then notebooks/VAE.ipynb,
# notebooks/DeepRec.ipynb or notebooks/MF.ipynb, and run all cells.
#
#   scripts/jupyter-run.sh              # port $JUPYTER_PORT (interactive.sh sets it), else 8888
#   scripts/jupyter-run.sh 9000         # another port
#
# The access token is Jupyter's own (printed in the URL); set JUPYTER_TOKEN to choose it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${1:-${JUPYTER_PORT:-8888}}"
command -v jupyter >/dev/null ||
  { echo "jupyter-run.sh: JupyterLab is not installed; pip install jupyterlab (the Docker image has it)" >&2; exit 1; }
# 0.0.0.0: the published container port reaches the server only on the container's outside interface.
exec jupyter lab --no-browser --ip=0.0.0.0 --port="$port" --ServerApp.root_dir="$root" --allow-root
