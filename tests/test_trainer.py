"""The training engine: resume with nothing lost, best checkpoint, NaN guard, precision, early stop."""

import keras
import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from data.errors import TrainingError
from training import precision
from training.config import OptimConfig
from training.fit import make_datasets
from training.model import Updater
from training.trainer import TrainConfig, Trainer
from vae.config import VAEConfig
from vae.model import MultVAE

N_USERS, N_ITEMS, BATCH = 120, 30, 40


def _tensor(m: sp.csr_matrix) -> tf.SparseTensor:
    m = m.tocoo()
    return tf.SparseTensor(np.stack([m.row, m.col], 1).astype(np.int64), m.data.astype(np.float32), m.shape)


@pytest.fixture(scope="module")
def clicks() -> sp.csr_matrix:
    x = sp.random(N_USERS, N_ITEMS, density=0.25, format="csr", random_state=0, dtype=np.float32)
    x.data[:] = 1.0
    return x


def _data(x, poison_epoch=None):
    """Per-epoch batches in the order the pipeline uses: a permutation from (seed, epoch)."""

    def train(epoch):
        order = np.random.default_rng([0, epoch]).permutation(N_USERS)
        for i in range(0, N_USERS, BATCH):
            rows = x[order[i:i + BATCH]].copy()
            if epoch == poison_epoch and i == BATCH:
                rows.data[:] = np.nan
            yield {"input": _tensor(rows)}

    def validation():
        return [{"input": _tensor(x[:60]), "target": _tensor(x[60:])}]

    return train, validation


def _trainer(tmp_path, epochs, policy="float32", lr=1e-2, **kwargs):
    with precision.policy_scope(policy):
        model = MultVAE(VAEConfig(n_items=N_ITEMS, hidden=(12,), latent=4, total_anneal_steps=5, seed=3))
        model.ensure_built()
    config = TrainConfig(epochs=epochs, validation_step=1, export_dir=str(tmp_path), verbose=False, **kwargs)
    return Trainer(model, keras.optimizers.Adam(lr), config, policy=policy)


def _weights(trainer):
    return [w.numpy() for w in trainer.model.weights]


def test_resumed_run_equals_uninterrupted_run(tmp_path, clicks):
    train, val = _data(clicks)
    straight = _trainer(tmp_path / "a", 4)
    straight.fit(train, 3, N_USERS, val)
    first = _trainer(tmp_path / "b", 2)
    first.fit(train, 3, N_USERS, val)
    resumed = _trainer(tmp_path / "b", 4)  # a fresh process would rebuild everything like this
    history = resumed.fit(train, 3, N_USERS, val)
    # The history of the whole run travels with the checkpoints: both invocations' epochs, once each.
    assert history.resumed_from_epoch == 2 and [e["epoch"] for e in history.epochs] == [1, 2, 3, 4]
    straight_losses = [e["loss"] for e in _trainer(tmp_path / "a", 4).fit(train, 3, N_USERS, val).epochs]
    np.testing.assert_allclose([e["loss"] for e in history.epochs], straight_losses, rtol=1e-6)
    # Same weights, optimizer state, noise generator and data order: nothing lost.
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert int(resumed.updater.updates.numpy()) == 4 * 3


def test_interrupted_epoch_resumes_from_last_checkpoint(tmp_path, clicks):
    train, val = _data(clicks)

    def killed(epoch):
        if epoch == 2:
            raise KeyboardInterrupt  # a kill in the middle of epoch 3
        return train(epoch)

    with pytest.raises(KeyboardInterrupt):
        _trainer(tmp_path, 4).fit(killed, 3, N_USERS, val)
    resumed = _trainer(tmp_path, 4)
    assert resumed.fit(train, 3, N_USERS, val).resumed_from_epoch == 2
    straight = _trainer(tmp_path / "s", 4)
    straight.fit(train, 3, N_USERS, val)
    for a, b in zip(_weights(straight), _weights(resumed)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_save_killed_midway_leaves_nothing_after_the_next_fit(tmp_path, clicks):
    train, val = _data(clicks)
    first = _trainer(tmp_path, 2)
    first.fit(train, 3, N_USERS, val)
    leftovers = []
    for folder in (first.checkpoint_dir, first.best_dir):
        (folder / "checkpoint.tmp123").write_text("half")  # the names TensorFlow's savers use
        (folder / f"checkpoint.tmp{'ab' * 16}").write_text("half")
        (folder / "ckpt-3_temp").mkdir()
        (folder / "ckpt-3_temp" / "part-00000-of-00001.index").write_text("half")
        leftovers += [folder / "checkpoint.tmp123", folder / f"checkpoint.tmp{'ab' * 16}", folder / "ckpt-3_temp"]
    history = _trainer(tmp_path, 3).fit(train, 3, N_USERS, val)
    assert history.resumed_from_epoch == 2 and history.epochs[-1]["epoch"] == 3
    assert [p for p in leftovers if p.exists()] == []


def test_fresh_starts_over(tmp_path, clicks):
    train, val = _data(clicks)
    _trainer(tmp_path, 2).fit(train, 3, N_USERS, val)
    history = _trainer(tmp_path, 2, fresh=True).fit(train, 3, N_USERS, val)
    assert history.resumed_from_epoch == 0 and len(history.epochs) == 2


def test_best_checkpoint_holds_best_validation_weights(tmp_path, clicks):
    train, val = _data(clicks)
    trainer = _trainer(tmp_path, 6, lr=5e-2)
    history = trainer.fit(train, 3, N_USERS, val)
    scores = [e["validation"]["ndcg@100"] for e in history.epochs]
    assert history.best["epoch"] == int(np.argmax(scores)) + 1
    assert history.best["ndcg@100"] == pytest.approx(max(scores), rel=1e-6)
    assert trainer.restore_best()
    assert trainer.evaluate(val()[0:1])["ndcg@100"] == pytest.approx(max(scores), rel=1e-5)


def test_nan_guard_stops_at_first_non_finite_loss_and_keeps_last_good_checkpoint(tmp_path, clicks):
    train, val = _data(clicks, poison_epoch=2)
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 3, step 2.*ckpt-2.*lower the learning rate"):
        _trainer(tmp_path, 5).fit(train, 3, N_USERS, val)
    good = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert good.endswith("ckpt-2")


def test_mixed_bfloat16_training_runs_with_float32_outputs(tmp_path, clicks):
    train, val = _data(clicks)
    trainer = _trainer(tmp_path, 2, policy=precision.MIXED_BFLOAT16)
    history = trainer.fit(train, 3, N_USERS, val)
    assert np.isfinite(history.epochs[-1]["loss"])
    assert trainer.model(_tensor(clicks[:2])).dtype == tf.float32


def test_float16_policy_wraps_optimizer_with_loss_scaling(tmp_path, clicks):
    trainer = _trainer(tmp_path, 1, policy=precision.MIXED_FLOAT16)
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert precision.policy_name(True, gpu=True) == "mixed_float16"
    assert precision.policy_name(True, gpu=False) == "mixed_bfloat16"
    assert precision.policy_name(False, gpu=True) == "float32"


def test_loss_falls_and_updater_counts_updates(tmp_path, clicks):
    train, val = _data(clicks)
    trainer = _trainer(tmp_path, 5)
    history = trainer.fit(train, 3, N_USERS, val)
    assert history.epochs[-1]["neg_ll"] < history.epochs[0]["neg_ll"]
    assert int(trainer.updater.updates.numpy()) == 15


def test_patience_stops_early(tmp_path, clicks):
    train, val = _data(clicks)
    history = _trainer(tmp_path, 50, lr=0.0, patience=2).fit(train, 3, N_USERS, val)  # lr 0: never improves
    assert history.stopped_early and len(history.epochs) == 3


def test_tensorboard_summaries_written(tmp_path, clicks):
    train, val = _data(clicks)
    _trainer(tmp_path, 1).fit(train, 3, N_USERS, val)
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


def test_a_batch_larger_than_the_data_under_xla_is_a_clear_error(clicks):
    from data.errors import ConfigError
    from data.types import HeldoutSplit
    from training import distribute

    split = HeldoutSplit(train=clicks[:40], val_input=clicks[40:50], val_target=clicks[50:60],
                         test_input=clicks[60:70], test_target=clicks[70:80], item_ids=np.arange(N_ITEMS),
                         train_user_ids=np.arange(40), val_user_ids=np.arange(10), test_user_ids=np.arange(10))
    optim = OptimConfig(batch_size_train=100)
    with pytest.raises(ConfigError, match="--batch_size_train 100 is larger than the 40 training rows"):
        make_datasets(MultVAE, split, optim, 0, distribute.Distribution(), xla=True)
    assert make_datasets(MultVAE, split, optim, 0, distribute.Distribution()).steps_per_epoch == 1


def test_the_loop_reads_nothing_per_step_and_equals_a_host_loop_bit_for_bit(tmp_path, clicks):
    # The reference is the loop as it was: each step through the Updater, its logs read back and summed on the host.
    reference = _trainer(tmp_path / "ref", 2)
    train, _ = _data(clicks)
    step = tf.function(lambda b: reference.model.train_step(b, reference.updater))
    means = []
    for epoch in range(2):
        totals, n = {}, 0
        for batch in train(epoch):
            for k, v in step(batch).items():
                totals[k] = totals.get(k, 0.0) + float(v)
            n += 1
        means.append({k: v / n for k, v in totals.items()})
    trainer = _trainer(tmp_path / "new", 2)
    reads = []

    class Watched:  # a step's log; reading it (float) is a host round trip
        def __init__(self, value):
            self.value = value

        def __float__(self):
            reads.append(1)
            return float(self.value)

    trainer._train_fns = [lambda b, f=f: {k: Watched(v) for k, v in f(b).items()} for f in trainer._train_fns]
    history = trainer.fit(train, 3, N_USERS)
    assert reads == []  # 6 steps, no step's log read back (the epoch's sums are read once, as variables)
    for a, b in zip(reference.model.weights, trainer.model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    for record, mean in zip(history.epochs, means, strict=True):
        for k, v in mean.items():
            assert record[k] == v, k  # the same float64 sums in the same order


def _pipeline_data(x):
    from data import pipeline

    return lambda epoch: pipeline.row_batches(x, BATCH, shuffle=True, seed=0, epoch=epoch).map(lambda b: {"input": b})


@pytest.mark.parametrize("steps_per_call, max_steps", [(2, None), (5, None), (2, 1)])
def test_many_steps_a_call_equal_one_step_a_call_bit_for_bit(tmp_path, clicks, steps_per_call, max_steps):
    # 3 steps an epoch: calls of 2 then 1; of 5 (the loop ends on the exhausted iterator); cut to 1 step an epoch.
    train = _pipeline_data(clicks)
    one = _trainer(tmp_path / "one", 2, max_steps_per_epoch=max_steps)
    many = _trainer(tmp_path / "many", 2, steps_per_call=steps_per_call, max_steps_per_epoch=max_steps)
    assert (one.steps_per_call, many.steps_per_call) == (1, steps_per_call)
    calls = []
    inner = many._multi_fns[0]
    many._multi_fns[0] = lambda it, limit: calls.append(int(limit)) or inner(it, limit)
    histories = [t.fit(train, 3, N_USERS).epochs for t in (one, many)]
    # Mult-VAE's dropout, sampling noise and KL annealing counter advance exactly as one step a call.
    for a, b in zip(one.model.weights, many.model.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    for a, b in zip(*histories, strict=True):
        assert (a["loss"], a["kl"]) == (b["loss"], b["kl"])
    assert int(many.updater.updates.numpy()) == int(one.updater.updates.numpy()) == 2 * (max_steps or 3)
    expected = {(2, None): [2, 2] * 2, (5, None): [5] * 2, (2, 1): [1] * 2}[(steps_per_call, max_steps)]
    assert calls == expected  # the loop asked for what was left each call, and stopped at the epoch's end


def test_record_steps_means_one_step_a_call(tmp_path, clicks):
    trainer = _trainer(tmp_path, 1, steps_per_call=8, record_steps=True)
    assert trainer.steps_per_call == 1
    history = trainer.fit(_pipeline_data(clicks), 3, N_USERS)
    assert [s["step"] for s in history.steps] == [1, 2, 3]
