"""Mult-VAE training speed at the ML-20M shape on synthetic data, and the time of a full evaluation.

Rows of the table: (a) the sparse first layer (tf.sparse matmul), (b) the dense-feed baseline (each batch densified,
as the original code did), (c) --xla (gather + segment-sum first layer, jit_compile), (d) --use_tf_amp (bf16 on CPU),
(e) --use_tf_amp with --xla, (f) RecVAE at its defaults (an epoch is its encoder passes plus its decoder pass,
each timed as its own step), (g) and (h): (a) and (d) with Keras' own Adam, as before the fused update
(training/optimizers.py); then the median and the fastest time of five evaluations of 10,000 held-out users
(Recall@20/50, NDCG@100 on the device) against the time of one full training epoch.

    python bench/bench_vae.py                      # ~5 minutes on 2 cores
    python bench/bench_vae.py --steps 40 --batch 1000
    python bench/bench_vae.py --rows a,f           # Mult-VAE against RecVAE only

Users/s are measured over --steps training steps after one warm-up pass (compilation); an epoch's time is
extrapolated from it. Not run by the tests.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from data import pipeline, protocols, synthetic  # noqa: E402
from training import distribute, fit, precision, trainer  # noqa: E402
from training.config import OptimConfig  # noqa: E402
from training.model import Updater  # noqa: E402
from vae.config import RecVAEConfig, VAEConfig  # noqa: E402
from vae.model import MultVAE  # noqa: E402
from vae.recvae import RecVAE  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 20, "Timed training steps per configuration.")
flags.DEFINE_integer("batch", 500, "Users per training step.")
flags.DEFINE_integer("eval_users", 10000, "Held-out users in the timed evaluation.")
flags.DEFINE_integer("eval_repeats", 5, "Evaluations timed; the median and the fastest are reported.")
flags.DEFINE_string("shape", "ml-20m", "A data.synthetic.SHAPES key.")
flags.DEFINE_list("rows", ["a", "b", "c", "d", "e", "f", "g", "h"], "Rows of the table to measure.")


class DenseFeedVAE(MultVAE):
    """The baseline: the batch is densified and multiplied like any dense input."""

    def encode(self, coo, training):
        dense = tf.scatter_nd(tf.stack([coo.rows, coo.cols], 1), coo.values,
                              tf.stack([coo.n_rows, self.config.n_items]))
        x = tf.math.l2_normalize(dense, axis=1)
        if training:
            x = keras.random.dropout(x, self.config.dropout, seed=self.noise)
        h = self.first.activation(tf.matmul(x, self.first.kernel) + self.first.bias)
        for layer in self.encoder:
            h = layer(h)
        mu, logvar = tf.split(tf.cast(h, tf.float32), 2, axis=-1)
        return mu, logvar


def _users_per_s(model, split, updater, xla) -> float:
    """Users/s of ``model.train_step`` through ``updater`` over FLAGS.steps steps after a warm-up."""
    step = tf.function(lambda b: model.train_step(b, updater), jit_compile=xla or None, reduce_retracing=True)
    make = pipeline.xla_row_batches if xla else pipeline.row_batches
    data = make(split.train, FLAGS.batch, shuffle=True, seed=0, drop_remainder=True)
    batches = iter(data.map(lambda x: {"input": x}).repeat())
    for _ in range(3):  # warm-up: tracing, compilation, the pipeline's first batches
        float(step(next(batches))["loss"])
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        loss = step(next(batches))["loss"]
    float(loss)
    return FLAGS.steps * FLAGS.batch / (time.perf_counter() - start)


def time_training(model_cls, split, policy, xla, keras_adam=False) -> tuple[float, float]:
    """(users/s, seconds per epoch) of a model at its defaults; an epoch runs every phase its passes.

    The optimizer is the run's (``training.fit.make_optimizer``: Adam with the fused update), or Keras' own
    Adam with ``keras_adam`` (the toolkit before the fused update).
    """
    with precision.policy_scope(policy):
        config = (RecVAEConfig if model_cls is RecVAE else VAEConfig)(n_items=split.n_items)
        model = model_cls(config)
        model.ensure_built()
    epoch_s = 0.0
    for phase in model.phases():
        adam = keras.optimizers.Adam(1e-3) if keras_adam else fit.make_optimizer(OptimConfig(lr=1e-3))
        optimizer = precision.wrap_optimizer(adam, policy)
        updater = Updater(model, optimizer, distribute.Distribution(), phase=phase)
        epoch_s += phase.passes * split.train.shape[0] / _users_per_s(model, split, updater, xla)
    return split.train.shape[0] / epoch_s, epoch_s


def time_evaluation(split) -> tuple[float, float]:
    """(median, fastest) seconds of --eval_repeats full evaluations; the fastest is what the code costs when the
    host steals no CPU time (a shared VM halves some runs' speed)."""
    model = MultVAE(VAEConfig(n_items=split.n_items))
    model.ensure_built()
    batches = pipeline.row_batches((split.val_input, split.val_target), 2000).map(
        lambda a, b: {"input": a, "target": b})
    step = tf.function(model.evaluate_step, reduce_retracing=True)
    trainer.evaluate(step, batches.take(1))  # warm-up
    times = []
    for _ in range(FLAGS.eval_repeats):
        start = time.perf_counter()
        values = trainer.evaluate(step, batches)
        times.append(time.perf_counter() - start)
        assert values["ndcg@100/count"] > 0
    return statistics.median(times), min(times)


def main(argv):
    del argv
    n_users, n_items, n = synthetic.SHAPES[FLAGS.shape]
    t0 = time.perf_counter()
    inter = synthetic.power_law_interactions(n_users, n_items, n, seed=0)
    split = protocols.heldout_users(inter, protocols.HeldoutConfig(threshold=None, val_users=FLAGS.eval_users,
                                                                    test_users=FLAGS.eval_users), seed=0)
    print(f"data: {split.train.shape[0]:,} train users x {split.n_items:,} items, {split.train.nnz:,} clicks "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    configs = [("(a) sparse, fp32", MultVAE, precision.FLOAT32, False),
               ("(b) dense feed, fp32", DenseFeedVAE, precision.FLOAT32, False),
               ("(c) sparse, --xla", MultVAE, precision.FLOAT32, True),
               ("(d) sparse, --use_tf_amp (bf16)", MultVAE, precision.policy_name(True), False),
               ("(e) --use_tf_amp --xla", MultVAE, precision.policy_name(True), True),
               ("(f) RecVAE, sparse, fp32", RecVAE, precision.FLOAT32, False),
               ("(g) (a) with Keras' Adam (before the fused update)", MultVAE, precision.FLOAT32, False),
               ("(h) (d) with Keras' Adam (before the fused update)", MultVAE, precision.policy_name(True), False)]
    rows = []
    for name, cls, policy, xla in configs:
        if name[1] not in FLAGS.rows:
            continue
        ups, epoch = time_training(cls, split, policy, xla, keras_adam=name[1] in "gh")
        rows.append((name, ups, epoch))
        print(f"{name}: {ups:,.0f} users/s ({epoch:.1f} s per epoch)", flush=True)
    eval_s, eval_fastest = time_evaluation(split)
    base = rows[0]
    print(f"\n| configuration | users/s per epoch | epoch s ({split.train.shape[0]:,} users) | x {base[0][:3]} epoch |")
    print("| --- | --- | --- | --- |")
    for name, ups, epoch in rows:
        print(f"| {name} | {ups:,.0f} | {epoch:.1f} | {epoch / base[2]:.2f} |")
    epoch_s = base[2]
    print(f"\nfull evaluation of {split.val_input.shape[0]:,} users: median {eval_s:.2f} s = "
          f"{100 * eval_s / epoch_s:.1f}% of one {base[0][4:]} training epoch ({epoch_s:.1f} s); fastest of "
          f"{FLAGS.eval_repeats} {eval_fastest:.2f} s = {100 * eval_fastest / epoch_s:.1f}%")


if __name__ == "__main__":
    app.run(main)
