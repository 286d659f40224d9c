# tfcf on a GPU host: the project, Horovod with NCCL, and JupyterLab.
#
#   scripts/docker/build.sh                 # docker build -t tfcf .
#   scripts/docker/interactive.sh 8888      # GPUs, this repo and a data folder mounted, port 8888 published
#   scripts/jupyter-run.sh                  # inside: JupyterLab on that port
#
# Everything is installed here: a container fetches nothing when it runs (datasets come from the mounted mirror).
# Linted with hadolint; not built in this project's CI (no Docker engine there).

# The official TensorFlow GPU image of the TensorFlow that setup.py pins.
FROM tensorflow/tensorflow:2.18.1-gpu

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    TF_CPP_MIN_LOG_LEVEL=2

# Horovod is compiled: g++ and cmake, and nvcc with the CUDA runtime headers for its GPU kernels, from the CUDA apt
# repository that the image's nvidia/cuda base already lists. CUDA_APT is the image's CUDA (12.3 in the 2.18 images).
ARG CUDA_APT=12-3
# Versions follow the base image's Ubuntu and CUDA repositories (pinned by the FROM tag, not per package).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ make cmake \
        "cuda-nvcc-${CUDA_APT}" "cuda-cudart-dev-${CUDA_APT}" \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/local/cuda/bin:${PATH}

# TensorFlow again, with its [and-cuda] wheels: the 2.18 images carry CUDA 12.3 libraries while TensorFlow 2.18 is built
# for CUDA 12.5 and cuDNN 9.3 and registers no GPU without them (tensorflow/tensorflow#88348). TensorFlow loads these
# wheels first. JupyterLab and its kernel for the notebooks.
RUN python3 -m pip install "tensorflow[and-cuda]==2.18.1" jupyterlab==4.6.6 ipykernel==7.4.0

# Horovod against that TensorFlow, with NCCL for the GPU collectives. It links the NCCL wheel TensorFlow uses, so one
# NCCL runs in a worker: the wheel ships only libnccl.so.2 (CMake's find_library wants libnccl.so), and its folder
# goes on the loader's path. There is no GPU during `docker build`, so NCCL is asked for instead of detected.
WORKDIR /workspace/tfcf
COPY scripts/install_horovod.sh scripts/
RUN nccl="$(python3 -c 'import nvidia.nccl; print(list(nvidia.nccl.__path__)[0])')" \
    && ln -sf libnccl.so.2 "${nccl}/lib/libnccl.so" \
    && echo "${nccl}/lib" > /etc/ld.so.conf.d/nccl-wheel.conf && ldconfig \
    && PYTHON=python3 HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_NCCL_HOME="${nccl}" HOROVOD_NCCL_LINK=SHARED \
        bash scripts/install_horovod.sh

# The project last (setup.py's ranges, at the exact versions of CI's TensorFlow 2.18 lane), so that a source change
# keeps the layers above. Editable:
# scripts/docker/interactive.sh mounts the host's checkout over this copy, and the mounted code is what runs.
COPY . .
RUN python3 -m pip install -e . -c constraints/tf2.18-py3.11.txt \
    && python3 -c "import horovod.tensorflow, training.runner"

# interactive.sh mounts the data mirror at /data and a cache folder (prepared splits) at /cache.
ENV TFCF_DATA_MIRROR=/data \
    TFCF_DATA_DIR=/cache \
    JUPYTER_PORT=8888
EXPOSE 8888
CMD ["bash"]
