"""The benchmark's baselines compute what lincls computes (a correctness test, never a timing test)."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lincls import sweep
from lincls.train import TrainData, TrainOptions

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny():
    rng = np.random.default_rng(0)
    n, d, K = 60, 14, 10
    W_true = rng.standard_normal((K, d)).astype(np.float32)
    X, Xv = rng.standard_normal((n, d), dtype=np.float32), rng.standard_normal((30, d), dtype=np.float32)
    y, yv = np.argmax(X @ W_true.T, 1).astype(np.int32), np.argmax(Xv @ W_true.T, 1).astype(np.int32)
    lams, etas = [0.0, 0.0, 0.1, 1.0], [0.1, 0.01, 0.01, 0.01]
    params = sweep.init_sweep_params(jax.random.PRNGKey(400), 4, d, K, std=0.1)
    opts = TrainOptions(n_batch=20, n_epochs=3)
    data = TrainData(*(jnp.asarray(a) for a in (X, y, Xv, yv)))
    P, H = jax.jit(sweep.train_sweep, static_argnames="options")(
        params, data, jnp.asarray(lams, jnp.float32), jnp.asarray(etas, jnp.float32), key=jax.random.PRNGKey(0), options=opts
    )
    W0, b0 = np.asarray(params["W"][0]), np.asarray(params["b"][0])
    return dict(X=X, y=y, Xv=Xv, yv=yv, lams=lams, etas=etas, W0=W0, b0=b0, P=P, H=H, opts=opts)


def check_same(t, W, b, history):
    np.testing.assert_allclose(W, t["P"]["W"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b, t["P"]["b"], rtol=1e-4, atol=1e-6)
    for k, v in history.items():
        np.testing.assert_allclose(v, t["H"][k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_numpy_baseline_equals_the_lincls_sweep(tiny):
    b = load("baselines")
    W, bias, hist = b.numpy_sweep(tiny["X"], tiny["y"], tiny["Xv"], tiny["yv"], tiny["W0"], tiny["b0"], tiny["lams"], tiny["etas"], 20, 3)
    assert W.dtype == np.float32 and W.shape == (4, 10, 14)
    check_same(tiny, W, bias, hist)


@pytest.mark.parametrize("stacked", [True, False])
def test_torch_baseline_equals_the_lincls_sweep(tiny, stacked):
    pytest.importorskip("torch")
    b = load("baselines")
    W, bias, hist = b.torch_sweep(tiny["X"], tiny["y"], tiny["Xv"], tiny["yv"], tiny["W0"], tiny["b0"], tiny["lams"], tiny["etas"], 20, 3, stacked=stacked)
    check_same(tiny, W, bias, hist)


def test_flop_count_and_grid():
    run = load("run")
    # per setting-epoch: 2 x 2 K d n for the batches, 2 K d (n + n_val) for the evaluation
    assert run.sweep_flops(1, 1, test=False) == 4 * 10 * 3072 * 10_000 + 2 * 10 * 3072 * 20_000
    assert run.sweep_flops(4, 40, test=True) == 4 * (40 * run.sweep_flops(1, 1, False) + 2 * 10 * 3072 * 10_000)
    assert len(run.grid(256)) == 256 and len(set(run.grid(16))) == 16 and run.grid(1) == [(0.0, 0.001)]
