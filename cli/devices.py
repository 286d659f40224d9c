"""Precision, devices and distribution"""

from absl import flags

flags.DEFINE_bool("use_tf_amp", False, "Mixed precision: float16 with loss scaling on GPU, bfloat16 on CPU.")
flags.DEFINE_bool("xla", False, "Compile the training step with XLA (jit_compile).")
flags.DEFINE_integer("number_of_gpus", 1, "GPUs to train on; 0 forces the CPU; N > 1 re-launches this command "
                     "as N Horovod workers on this host (CPU workers where there is no GPU), or, with --distribution "
                     "mirrored, mirrors one process over N GPUs (N logical CPU devices where there is no GPU).")
flags.DEFINE_enum("distribution", "auto", ["auto", "none", "horovod", "mirrored", "multiworker"],
                  "Data-parallel backend: horovod (horovodrun, or --number_of_gpus N), mirrored (tf.distribute's "
                  "MirroredStrategy: one process, --number_of_gpus devices), multiworker (MultiWorkerMirroredStrategy: "
                  "one process per host, the cluster in TF_CONFIG), none; auto: horovod under horovodrun, multiworker "
                  "when TF_CONFIG is set, else horovod for --number_of_gpus N > 1, else none.")
flags.DEFINE_integer("gpu_number", None, "Which GPU to use: sets CUDA_VISIBLE_DEVICES (default: all visible).")
flags.DEFINE_bool("tf_logs", False, "Show TensorFlow's C++ start-up log lines (CUDA plugin registration, cuInit on "
                  "CPU machines), hidden by default; also TFCF_TF_LOGS=1.")
