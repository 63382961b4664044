"""Training and the vmapped sweep on small generated data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lincls import config as config_lib
from lincls import data, model, sweep, train
from lincls.train import TrainData, TrainOptions


def toy_data(key, n=200, d=16, K=10, n_val=60):
    """Linearly separable-ish blobs: the label is the arg-max of a fixed random projection."""
    kx, kv, kw = jax.random.split(key, 3)
    W_true = jax.random.normal(kw, (K, d))
    X = jax.random.normal(kx, (n, d))
    X_val = jax.random.normal(kv, (n_val, d))
    return TrainData(X, jnp.argmax(X @ W_true.T, 1), X_val, jnp.argmax(X_val @ W_true.T, 1))


def toy_dataset(key, **kw) -> data.Dataset:
    td = toy_data(key, **kw)
    K = 10
    return data.Dataset(
        X_train=np.asarray(td.X_train), y_train=np.asarray(td.y_train, np.int32),
        X_val=np.asarray(td.X_val), y_val=np.asarray(td.y_val, np.int32),
        X_test=np.asarray(td.X_val), y_test=np.asarray(td.y_val, np.int32),
        label_names=tuple(f"c{i}" for i in range(K)), mean=np.zeros(td.X_train.shape[1], np.float32),
        std=np.ones(td.X_train.shape[1], np.float32), plan="toy", source="generated",
    )  # fmt: skip


OPTS = TrainOptions(n_batch=20, n_epochs=6)


def test_loss_of_a_learnable_problem_falls(getkey):
    td = toy_data(getkey())
    params = model.init_params(getkey(), 16, 10)
    _, history = train.train(params, td, 0.0, 0.1, key=getkey(), options=OPTS)
    assert history["train_loss"].shape == (6,)
    assert float(history["train_loss"][-1]) < 0.7 * float(history["train_loss"][0])
    assert float(history["val_accuracy"][-1]) > 0.5
    assert np.all(np.diff(np.asarray(history["train_loss"])) < 0)


def test_history_matches_model_functions(getkey):
    td = toy_data(getkey())
    params = model.init_params(getkey(), 16, 10)
    p, h = train.train(params, td, 0.3, 0.05, key=getkey(), options=OPTS)
    np.testing.assert_allclose(h["train_cost"][-1], model.cost(p, td.X_train, td.y_train, 0.3), rtol=1e-5)
    np.testing.assert_allclose(h["val_loss"][-1], model.loss(p, td.X_val, td.y_val), rtol=1e-5)
    np.testing.assert_allclose(h["val_accuracy"][-1], model.accuracy(p, td.X_val, td.y_val))


def test_training_is_plain_minibatch_gd(getkey):
    """One epoch equals a hand-written loop of W -= eta * hand_grad over batches in order."""
    td = toy_data(getkey(), n=60)
    params = model.init_params(getkey(), 16, 10)
    p, _ = train.train(params, td, 0.1, 0.05, key=getkey(), options=TrainOptions(n_batch=20, n_epochs=1))
    ref = params
    for start in range(0, 60, 20):
        g = model.hand_grad(ref, td.X_train[start:start + 20], td.y_train[start:start + 20], 0.1)
        ref = jax.tree.map(lambda a, b: a - 0.05 * b, ref, g)
    for k in ("W", "b"):
        np.testing.assert_allclose(p[k], ref[k], rtol=1e-5, atol=1e-7)


def test_hand_and_autodiff_training_agree(getkey):
    td = toy_data(getkey())
    params = model.init_params(getkey(), 16, 10)
    key = getkey()
    ph, hh = train.train(params, td, 0.1, 0.05, key=key, options=OPTS)
    pa, ha = train.train(params, td, 0.1, 0.05, key=key, options=OPTS._replace(grad="autodiff"))
    np.testing.assert_allclose(ph["W"], pa["W"], rtol=1e-4, atol=1e-6)
    for k in train.METRICS:
        np.testing.assert_allclose(hh[k], ha[k], rtol=1e-4, atol=1e-6)


def test_shuffle_uses_the_key(getkey):
    td = toy_data(getkey())
    params = model.init_params(getkey(), 16, 10)
    opts = OPTS._replace(shuffle=True)
    p1, _ = train.train(params, td, 0.0, 0.05, key=jax.random.PRNGKey(1), options=opts)
    p1b, _ = train.train(params, td, 0.0, 0.05, key=jax.random.PRNGKey(1), options=opts)
    p2, _ = train.train(params, td, 0.0, 0.05, key=jax.random.PRNGKey(2), options=opts)
    np.testing.assert_array_equal(p1["W"], p1b["W"])
    assert not np.allclose(p1["W"], p2["W"])


@pytest.mark.parametrize("shuffle", [False, True])
def test_sweep_equals_single_runs(getkey, shuffle):
    td = toy_data(getkey())
    lams = jnp.array([0.0, 0.0, 0.1, 1.0])
    etas = jnp.array([0.1, 0.001, 0.001, 0.001])
    key = getkey()
    opts = OPTS._replace(shuffle=shuffle)
    params = sweep.init_sweep_params(jax.random.PRNGKey(400), 4, 16, 10)
    P, H = jax.jit(sweep.train_sweep, static_argnames="options")(params, td, lams, etas, key=key, options=opts)
    assert H["val_loss"].shape == (4, 6)
    for i in range(4):
        p_i = jax.tree.map(lambda a: a[i], params)
        p, h = train.train(p_i, td, lams[i], etas[i], key=key, options=opts)
        np.testing.assert_allclose(P["W"][i], p["W"], rtol=1e-5, atol=1e-7)
        for k in train.METRICS:
            np.testing.assert_allclose(H[k][i], h[k], rtol=1e-5, atol=1e-7)


def test_init_sweep_params_shared_or_split():
    shared = sweep.init_sweep_params(jax.random.PRNGKey(400), 3, 8, 10)
    direct = model.init_params(jax.random.PRNGKey(400), 8, 10)
    for i in range(3):
        np.testing.assert_array_equal(shared["W"][i], direct["W"])
    split = sweep.init_sweep_params(jax.random.PRNGKey(400), 3, 8, 10, share=False)
    assert not np.allclose(split["W"][0], split["W"][1])


def small_config(**kw):
    base = dict(name="toy", lams=(0.0, 0.1), etas=(0.05, 0.05), n_batch=20, n_epochs=4, progress=False)
    return config_lib.Config(**{**base, **kw})


def test_same_config_twice_gives_identical_metrics(getkey):
    ds = toy_dataset(getkey())
    cfg = small_config()
    runs = [sweep.build_metrics(cfg, ds, sweep.run_sweep(cfg, ds), "cmd") for _ in range(2)]
    for a, b in zip(runs[0]["settings"], runs[1]["settings"]):
        assert a == b


def test_diverging_setting_is_reported_and_others_finish(getkey, capsys):
    ds = toy_dataset(getkey())
    cfg = small_config(lams=(0.1, 0.0, 0.1), etas=(1e6, 0.05, 0.05), progress=True)
    result = sweep.run_sweep(cfg, ds)
    metrics = sweep.build_metrics(cfg, ds, result, "cmd")
    bad, good, good2 = metrics["settings"]
    assert bad["diverged"] and bad["diverged_epoch"] >= 1 and np.isnan(bad["test_accuracy"])
    assert not good["diverged"] and good["diverged_epoch"] is None and good["test_accuracy"] > 0.3
    assert np.isfinite(good2["val_cost"]).all()
    # the NaN of setting 0 leaks into no other setting: each is its run alone, to rounding
    for i in (1, 2):
        alone = sweep.run_sweep(small_config(lams=cfg.lams[i:i + 1], etas=cfg.etas[i:i + 1]), ds)
        np.testing.assert_allclose(result.params["W"][i], alone.params["W"][0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(result.history["val_cost"][i], alone.history["val_cost"][0], rtol=1e-5)
    out = capsys.readouterr().out
    assert "epoch   4/4" in out and "diverged (NaN/inf): settings [0]" in out


def test_first_nonfinite_epoch():
    h = {"a": np.array([[1.0, 2.0, 3.0], [1.0, np.inf, np.nan]]), "b": np.array([[1.0, 1.0, np.nan], [1.0, 1.0, 1.0]])}
    np.testing.assert_array_equal(sweep.first_nonfinite_epoch(h), [3, 2])


def test_padding_settings():
    assert sweep.padded_size(5, 4) == 8 and sweep.padded_size(8, 4) == 8
    np.testing.assert_array_equal(sweep.pad_settings(np.array([1.0, 2.0, 3.0]), 4), [1, 2, 3, 3])
