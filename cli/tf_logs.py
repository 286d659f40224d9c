"""TensorFlow's C++ start-up noise, kept off the console unless asked for (``--tf_logs`` or ``TFCF_TF_LOGS=1``).

On a machine without a GPU, TensorFlow 2.18 prints at start-up, whatever the
command::

    E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:477] Unable to register cuFFT factory: ...
    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    E0000 00:00:1796166504.670958   28062 cuda_dnn.cc:8310] Unable to register cuDNN factory: ...
    E0000 00:00:1796166504.679103   28062 cuda_blas.cc:1418] Unable to register cuBLAS factory: ...
    E external/local_xla/xla/stream_executor/cuda/cuda_driver.cc:152] failed call to cuInit: ... (303)

``TF_CPP_MIN_LOG_LEVEL`` (2 here unless you set it) hides TensorFlow's INFO and
WARNING lines. Level 3 would hide the first and last line above, but also every
real TensorFlow error of the run; and the ``E0000`` lines come from absl's C++
``LOG``, which ignores that variable: absl's minimum level has no environment
variable (GLOG_minloglevel and the like are not read) and is settable only from
C++. So :func:`import_tensorflow` imports TensorFlow and lists its devices
(where cuInit runs) with file descriptor 2 pointed at a temporary file, then
writes back to stderr every line but those of :data:`NOISE`: a Python warning,
a traceback or any other line still reaches the console, and our own
``error:`` lines are printed later, on the real stderr.

``--xla`` adds absl INFO lines (absl's ``LOG`` again) at the first XLA compile
of the process, in the middle of the first epoch::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796190486.664131    4448 service.cc:148] XLA service 0x5646d91b4d30 initialized for platform Host ...
    I0000 00:00:1796190486.664247    4448 service.cc:156]   StreamExecutor device (0): Host, Default Version
    I0000 00:00:1796190489.128566    4448 device_compiler.h:188] Compiled cluster using XLA!  This line is logged ...

Each comes once per process (the service once per platform), so with ``xla``
:func:`import_tensorflow` also compiles a one-op function with XLA while it
captures, and drops them (:data:`XLA_INFO`). Not in a Horovod worker: running
an op starts TensorFlow's runtime, and the worker must pin its GPU before that.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

ENV = "TFCF_TF_LOGS"
LEVEL = "TF_CPP_MIN_LOG_LEVEL"

# The duplicate CUDA plugin registrations of the pip wheel, and absl's notice that precedes them; from TensorFlow
# 2.19 on, oneDNN's notice comes through absl's INFO too, which TF_CPP_MIN_LOG_LEVEL no longer hides.
NOISE = re.compile(r"Unable to register cu(FFT|DNN|BLAS) factory|All log messages before absl::InitializeLog\(\)|"
                   r"\] oneDNN custom operations are on\. ")
# cuInit fails on every machine without an NVIDIA driver, and where the GPUs are hidden (--number_of_gpus 0), and
# TensorFlow >= 2.19 says it found no CUDA driver: noise there; on a GPU machine it is a real problem and stays.
CUINIT = re.compile(r"failed call to cuInit|\] Could not find cuda drivers on your machine, GPU will not be used")
# XLA's first compile of a process (absl INFO lines): the service of the platform with its devices, and the
# once-a-process notice of the first compiled cluster.
# tf.distribute's multi-worker start: its gRPC server and the coordination service's connection (absl INFO).
CLUSTER_INFO = re.compile(r"^I\d{4} .*\] (Started server with target: grpc://|Coordination agent has successfully "
                          r"connected)")
XLA_INFO = re.compile(r"^I\d{4} .*\] (XLA service 0x[0-9a-f]+ initialized for platform |\s+StreamExecutor device "
                      r"\(\d+\): |Compiled cluster using XLA!)")

_level_is_ours = False


def requested() -> bool:
    """Whether ``$TFCF_TF_LOGS`` asks for TensorFlow's logs (anything but empty, 0, false, no)."""
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no")


def default_level() -> None:
    """Sets ``TF_CPP_MIN_LOG_LEVEL=2`` (TensorFlow's INFO and WARNING lines off) unless it is set or logs are asked for.

    Call before TensorFlow is imported.
    """
    global _level_is_ours
    if LEVEL not in os.environ and not requested():
        os.environ[LEVEL] = "2"
        _level_is_ours = True


def _no_gpu() -> bool:
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1")
    return hidden or not os.path.exists("/proc/driver/nvidia/version")


def is_noise(line: str, no_gpu: bool = True) -> bool:
    """Whether a captured start-up line is known noise (see the module doc)."""
    return bool(NOISE.search(line) or XLA_INFO.search(line) or CLUSTER_INFO.search(line)
                or (no_gpu and CUINIT.search(line)))


def _compile_with_xla(tf) -> None:
    """Compiles and runs a one-op function with XLA: the process's first compile, which logs XLA's INFO lines."""
    try:
        tf.function(lambda x: x + 1.0, jit_compile=True)(tf.constant(0.0))
    except Exception:  # noqa: BLE001 (XLA unusable here: the training step's own compile reports it)
        pass


def import_tensorflow(show: bool = False, xla: bool = False) -> None:
    """Imports TensorFlow and lists its devices, without the start-up noise unless ``show``.

    With ``show`` (``--tf_logs``), TensorFlow logs as it would by itself: at
    ``$TF_CPP_MIN_LOG_LEVEL`` if you set it, else everything. Does nothing
    (beyond that) when TensorFlow is already imported.

    Args:
      show: let TensorFlow log.
      xla: the run compiles with XLA (``--xla``): also take XLA's first-compile
        INFO lines off the console (see the module doc).
    """
    if show or requested():
        if _level_is_ours and "tensorflow" not in sys.modules:
            os.environ.pop(LEVEL, None)
        return
    if "tensorflow" in sys.modules:
        return

    def start():
        import tensorflow as tf

        tf.config.list_physical_devices()
        if xla and "HOROVOD_RANK" not in os.environ:
            _compile_with_xla(tf)

    quietly(start)


def quietly(fn):
    """Runs ``fn()`` with the C++ lines it writes to stderr filtered (the known noise dropped); returns its value.

    For what starts TensorFlow's machinery (the import, a multi-worker
    strategy's server): those lines come from C++, below Python's logging.
    """
    if requested():
        return fn()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to redirect
        return fn()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            return fn()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            no_gpu = _no_gpu()
            kept = "".join(line for line in text.splitlines(keepends=True) if not is_noise(line, no_gpu))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
