"""Where a Mult-VAE training step's time goes at the ML-20M shape, in fp32 and bf16 (op-level timing).

    python bench/profile_vae.py                  # ~3 minutes on 2 cores
    python bench/profile_vae.py --policies float32 --repeats 30

One batch of 500 synthetic users x 20,108 items through Mult-VAE at its defaults ([I-600-200-600-I]). Each part of
the step is its own compiled function, timed alone (the median of --repeats calls after warm-up), forward and then
forward + backward: the sparse first layer, the rest of the encoder, the decoder's hidden layer, the output matmul,
the log-softmax with the gather at the clicks, and the KL term; then the whole loss forward, forward + backward, the
Adam update alone (the run's: training/optimizers.py's fused one), the whole compiled step, the input pipeline (one batch from tf.data), and the step as the
trainer's loop calls it (dataset, dispatch and Python included). "backward" is forward + backward less forward.
The rows do not add up exactly: each part alone misses the fusions and the memory traffic it shares in the whole
step. Not run by the tests.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from data import pipeline, protocols, synthetic  # noqa: E402
from training import distribute, fit, layers, precision  # noqa: E402
from training.config import OptimConfig  # noqa: E402
from training.model import Updater  # noqa: E402
from vae.config import VAEConfig  # noqa: E402
from vae.model import MultVAE  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 500, "Users per step.")
flags.DEFINE_integer("repeats", 20, "Timed calls per part (the median is reported).")
flags.DEFINE_string("shape", "ml-20m", "A data.synthetic.SHAPES key.")
flags.DEFINE_list("policies", [precision.FLOAT32, precision.MIXED_BFLOAT16], "Dtype policies to profile.")


def median_ms(fn, *args) -> float:
    """Median wall time of ``fn(*args)`` in ms, the result read back each call (so the work is done)."""
    for _ in range(3):
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, fn(*args))
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        out = fn(*args)
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, out)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def forward_and_backward(fn, variables):
    """Two compiled functions of ``fn(x) -> y``: the forward, and the forward with the gradient of sum(y * r)."""
    forward = tf.function(lambda x: tf.reduce_sum(tf.cast(fn(x), tf.float32)))

    @tf.function
    def both(x):
        with tf.GradientTape() as tape:
            if isinstance(x, tf.Tensor):
                tape.watch(x)
            y = tf.cast(fn(x), tf.float32)
            loss = tf.reduce_sum(y * tf.random.stateless_uniform(tf.shape(y), [1, 2]))
        sources = list(variables) + ([x] if isinstance(x, tf.Tensor) else [])
        return tape.gradient(loss, sources)

    return forward, both


def profile(split, policy: str) -> list[tuple[str, float, float]]:
    """(part, forward ms, backward ms) rows for one policy (backward NaN where it does not apply)."""
    with precision.policy_scope(policy):
        model = MultVAE(VAEConfig(n_items=split.n_items))
        model.ensure_built()
    data = pipeline.row_batches(split.train, FLAGS.batch, shuffle=True, seed=0, drop_remainder=True)
    batch = next(iter(data))
    coo = layers.as_coo(batch)
    normalized = coo.with_values(layers.l2_normalize_rows(coo.rows, coo.values, coo.n_rows))
    first = model.first.apply_coo(normalized)
    mu, logvar = model.encode(coo, training=False)
    hidden = mu
    for layer in model.decoder[:-1]:
        hidden = layer(hidden)
    logits = model.decode(mu)
    nan = float("nan")
    rows = []

    def part(name, fn, x, variables):
        forward, both = forward_and_backward(fn, variables)
        f = median_ms(forward, x)
        rows.append((name, f, median_ms(both, x) - f))

    def rest_of_encoder(h):
        for layer in model.encoder:
            h = layer(h)
        return h

    part("first layer (tf.sparse matmul, 20,108 -> 600)", lambda c: model.first.apply_coo(c), normalized,
         model.first.trainable_variables)
    part("encoder rest (600 -> 400: mu, logvar)", rest_of_encoder, tf.stop_gradient(first),
         [v for layer in model.encoder for v in layer.trainable_variables])
    part("decoder hidden (200 -> 600)", lambda z: model.decoder[0](z), tf.stop_gradient(mu),
         model.decoder[0].trainable_variables)
    part("output matmul (600 -> 20,108)", lambda h: model.to_float32(model.decoder[-1](h)), tf.stop_gradient(hidden),
         model.decoder[-1].trainable_variables)
    picked_at = tf.stack([coo.rows, coo.cols], axis=1)
    part("log-softmax + gather at the clicks", lambda lg: tf.gather_nd(tf.nn.log_softmax(lg, axis=-1), picked_at),
         tf.stop_gradient(logits), [])
    part("KL term", lambda m: tf.reduce_sum(0.5 * (-m + tf.exp(m) + tf.square(m) - 1.0)), tf.stop_gradient(mu), [])

    variables = model.trainable_variables
    loss_fn = tf.function(lambda b: model.compute_loss({"input": b}, training=True)[0])

    @tf.function
    def loss_and_grads(b):
        with tf.GradientTape() as tape:
            loss = model.compute_loss({"input": b}, training=True)[0]
        return tape.gradient(loss, variables)

    f = median_ms(loss_fn, batch)
    rows.append(("whole loss (all of the above, dropout, sampling)", f, median_ms(loss_and_grads, batch) - f))
    optimizer = precision.wrap_optimizer(fit.make_optimizer(OptimConfig(lr=1e-3)), policy)
    optimizer.build(variables)
    grads = loss_and_grads(batch)
    apply = tf.function(lambda g: optimizer.apply_gradients(zip(g, variables)))
    rows.append(("Adam update (every weight, 2 moments)", median_ms(apply, grads), nan))
    updater = Updater(model, optimizer, distribute.Distribution())
    step = tf.function(lambda b: model.train_step({"input": b}, updater)["loss"])
    rows.append(("whole compiled step", median_ms(step, batch), nan))
    batches = iter(data.repeat())
    rows.append(("input pipeline (one batch from tf.data)", median_ms(lambda: next(batches)), nan))

    def looped():  # as the trainer calls it: next batch, dispatch, no read-back (the sums stay on the device)
        for _ in range(5):
            out = step(next(batches))
        return out

    rows.append(("step as the loop calls it (per step)", median_ms(looped) / 5, nan))
    return rows


def main(argv):
    del argv
    n_users, n_items, n = synthetic.SHAPES[FLAGS.shape]
    inter = synthetic.power_law_interactions(n_users, n_items, n, seed=0)
    split = protocols.heldout_users(inter, protocols.HeldoutConfig(threshold=None, val_users=1000, test_users=1000),
                                    seed=0)
    print(f"data: {split.train.shape[0]:,} users x {split.n_items:,} items, batch {FLAGS.batch}, median of "
          f"{FLAGS.repeats}", flush=True)
    results = {}
    for policy in FLAGS.policies:
        results[policy] = profile(split, policy)
        print(f"{policy}: done", flush=True)
    names = [r[0] for r in results[FLAGS.policies[0]]]
    step_row = "whole compiled step"
    header = " | ".join(f"{p} fwd ms | {p} bwd ms | {p} % of step" for p in FLAGS.policies)
    print(f"\n| part | {header} |")
    print("| --- |" + " --- | --- | --- |" * len(FLAGS.policies))
    for i, name in enumerate(names):
        cells = []
        for policy in FLAGS.policies:
            _, f, b = results[policy][i]
            total = dict((r[0], r[1]) for r in results[policy])[step_row]
            share = (f + (0 if np.isnan(b) else b)) / total
            cells.append(f"{f:.1f} | {'' if np.isnan(b) else f'{b:.1f}'} | {100 * share:.0f}%")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    app.run(main)
