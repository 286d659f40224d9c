#!/usr/bin/env bash
# Builds Horovod 0.28.1 from source against the TensorFlow installed in this Python.
#
#   bash scripts/install_horovod.sh            # Gloo (CPU, loopback or TCP); NCCL too when a GPU and NCCL exist
#   PYTHON=/path/to/python bash scripts/install_horovod.sh
#   HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_HOME=/opt/nccl bash scripts/install_horovod.sh
#
# Needs TensorFlow 2.18 (it refuses any other), cmake and g++ (and nvcc + NCCL for GPU collectives); about 3 minutes
# on 2 cores against TF 2.18.1.
# Does nothing when `import horovod.tensorflow` already works (set HOROVOD_REBUILD=1 to force a rebuild).
set -euo pipefail

PYTHON="${PYTHON:-python}"
VERSION=0.28.1

if [ "${HOROVOD_REBUILD:-0}" != 1 ] && "$PYTHON" -c "import horovod.tensorflow" >/dev/null 2>&1; then
  echo "horovod: already installed ($("$PYTHON" -c 'import horovod; print(horovod.__version__)')), nothing to do"
  exit 0
fi
for tool in cmake g++; do
  command -v "$tool" >/dev/null ||
    { echo "horovod: $tool is missing; install it (e.g. apt-get install cmake g++)" >&2; exit 1; }
done
"$PYTHON" -c "import tensorflow" 2>/dev/null ||
  { echo "horovod: install TensorFlow first (pip install -e . -c constraints/tf2.18-py3.11.txt)" >&2; exit 1; }
# Horovod 0.28.1, its last release, builds against TensorFlow <= 2.18 only (its 2.19+ fixes were never released).
tf_version="$("$PYTHON" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)"
case "$tf_version" in
  2.18.*) ;;
  *) echo "horovod: Horovod $VERSION needs TensorFlow 2.18.1 and this Python has $tf_version;" \
          "reinstall with pip install -e . -c constraints/tf2.18-py3.11.txt (Python 3.10-3.12) to use it" >&2
     exit 1 ;;
esac

export HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1
export HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1

# GPU collectives: only with a visible GPU, nvcc and an NCCL (system, $HOROVOD_NCCL_HOME, or the
# nvidia-nccl-cu12 wheel that TensorFlow's [and-cuda] extra installs). Otherwise GPU tensors go through Gloo.
if [ -z "${HOROVOD_GPU_OPERATIONS:-}" ] && command -v nvcc >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  nccl_home="${HOROVOD_NCCL_HOME:-}"
  if [ -z "$nccl_home" ]; then
    nccl_home="$("$PYTHON" - <<'EOF' 2>/dev/null || true
import nvidia.nccl
print(list(nvidia.nccl.__path__)[0])
EOF
)"
  fi
  if [ -n "$nccl_home" ] && [ -f "$nccl_home/include/nccl.h" ]; then
    export HOROVOD_NCCL_HOME="$nccl_home" HOROVOD_GPU_OPERATIONS=NCCL
  elif [ -f /usr/include/nccl.h ]; then
    export HOROVOD_GPU_OPERATIONS=NCCL
  else
    echo "horovod: a GPU but no NCCL (nccl.h) found; building with Gloo only (set HOROVOD_NCCL_HOME for NCCL)"
  fi
fi
echo "horovod: building $VERSION with Gloo${HOROVOD_GPU_OPERATIONS:+ and $HOROVOD_GPU_OPERATIONS} against" \
     "TensorFlow $("$PYTHON" -c 'import tensorflow as tf; print(tf.__version__)' 2>/dev/null)"

# --no-build-isolation: Horovod's build imports the installed TensorFlow to find its headers and ABI.
# --no-cache-dir: a wheel cached from another TensorFlow would load with undefined symbols.
"$PYTHON" -m pip install --no-build-isolation --no-cache-dir "horovod==$VERSION"
"$PYTHON" -c "import horovod, horovod.tensorflow; print('horovod: installed', horovod.__version__)"
