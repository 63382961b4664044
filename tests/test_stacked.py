"""The sweep's stacked fast path: every layout trains each setting as train.train does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lincls import sweep, train
from lincls.sweep import StackedLayout
from lincls.train import TrainData, TrainOptions


def blobs(key, n=120, d=13, K=10, n_val=40):
    kx, kv, kw = jax.random.split(key, 3)
    W_true = jax.random.normal(kw, (K, d))
    X, X_val = jax.random.normal(kx, (n, d)), jax.random.normal(kv, (n_val, d))
    return TrainData(X, jnp.argmax(X @ W_true.T, 1), X_val, jnp.argmax(X_val @ W_true.T, 1))


LAYOUTS = [None, StackedLayout(False, 1), StackedLayout(False, 2), StackedLayout(False, 3), StackedLayout(True, 1), StackedLayout(True, 2)]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_every_layout_equals_single_runs(layout, shuffle):
    data = blobs(jax.random.PRNGKey(1))  # d = 13: uneven column blocks
    lams = jnp.array([0.0, 0.1, 1.0])
    etas = jnp.array([0.05, 0.01, 0.002])
    opts = TrainOptions(n_batch=30, n_epochs=3, shuffle=shuffle)
    key = jax.random.PRNGKey(2)
    params = sweep.init_sweep_params(jax.random.PRNGKey(3), 3, 13, 10, share=False)
    run = jax.jit(sweep._train_sweep, static_argnums=(5, 6, 7))
    P, H = run(params, data, lams, etas, key, opts, None, layout)
    assert P["W"].shape == (3, 10, 13) and H["val_cost"].shape == (3, 3)
    for i in range(3):
        p, h = train.train(jax.tree.map(lambda a: a[i], params), data, lams[i], etas[i], key=key, options=opts)
        for k in ("W", "b"):
            np.testing.assert_allclose(P[k][i], p[k], rtol=1e-5, atol=1e-7)
        for k in train.METRICS:
            np.testing.assert_allclose(H[k][i], h[k], rtol=1e-5, atol=1e-7)


def test_layout_choice():
    assert sweep.stacked_layout(4, 10, 3072, 100, "cpu") == StackedLayout(transposed=False, n_split=2)
    assert sweep.stacked_layout(4, 10, 3072, 100, "gpu") == StackedLayout(transposed=False, n_split=1)
    assert sweep.stacked_layout(256, 10, 3072, 100, "cpu") == StackedLayout(transposed=True, n_split=1)


def test_autodiff_sweep_takes_the_vmapped_path(monkeypatch):
    data = blobs(jax.random.PRNGKey(1))
    opts = TrainOptions(n_batch=30, n_epochs=2, grad="autodiff")
    params = sweep.init_sweep_params(jax.random.PRNGKey(3), 2, 13, 10)
    lams, etas = jnp.array([0.0, 0.1]), jnp.array([0.01, 0.01])
    layouts = []
    real = sweep._train_sweep

    def spy(*args):
        layouts.append(args[-1])
        return real(*args)

    monkeypatch.setattr(sweep, "_train_sweep", spy)
    P, _ = sweep.train_sweep(params, data, lams, etas, key=jax.random.PRNGKey(2), options=opts)
    ref, _ = sweep.train_sweep(params, data, lams, etas, key=jax.random.PRNGKey(2), options=opts._replace(grad="hand"))
    assert layouts[0] is None and isinstance(layouts[1], StackedLayout)  # autodiff: train_epoch vmapped
    np.testing.assert_allclose(P["W"], ref["W"], rtol=1e-4, atol=1e-6)
    for i in range(2):  # and each setting is the autodiff train.train of that setting alone
        alone, _ = train.train({k: v[i] for k, v in params.items()}, data, lams[i], etas[i], key=jax.random.PRNGKey(2), options=opts)
        np.testing.assert_allclose(P["W"][i], alone["W"], rtol=1e-5, atol=1e-7)
