"""The model against independent NumPy computations, jitted and plain."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lincls import model


def make_problem(key, n=40, d=12, K=5, dtype=jnp.float32, std=0.5):
    kx, ky, kp = jax.random.split(key, 3)
    X = jax.random.normal(kx, (n, d), dtype)
    y = jax.random.randint(ky, (n,), 0, K)
    params = model.init_params(kp, d, K, std=std, dtype=dtype)
    return params, X, y


def numpy_cost(params, X, y, lam):
    """Cross-entropy + L2 in float64 NumPy, written independently of lincls."""
    W, b = np.asarray(params["W"], np.float64), np.asarray(params["b"], np.float64)
    S = np.asarray(X, np.float64) @ W.T + b
    S = S - S.max(axis=1, keepdims=True)
    P = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    return -np.mean(np.log(P[np.arange(len(y)), np.asarray(y)])) + lam * np.sum(W**2), P


def numpy_grad(params, X, y, lam):
    _, P = numpy_cost(params, X, y, lam)
    Y = np.eye(P.shape[1])[np.asarray(y)]
    G = P - Y
    X = np.asarray(X, np.float64)
    return {"W": G.T @ X / len(X) + 2 * lam * np.asarray(params["W"], np.float64), "b": G.mean(axis=0)}


def test_init_params_shapes_and_scale(getkey):
    params = model.init_params(getkey(), d=3072, K=10)
    assert params["W"].shape == (10, 3072) and params["b"].shape == (10,)
    assert params["W"].dtype == jnp.float32
    assert abs(float(params["W"].std()) - 0.01) < 5e-4
    same = model.init_params(jax.random.PRNGKey(400), 3072, 10)
    again = model.init_params(jax.random.PRNGKey(400), 3072, 10)
    np.testing.assert_array_equal(same["W"], again["W"])


@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_cost_and_loss_match_numpy(getkey, lam):
    params, X, y = make_problem(getkey())
    expected, _ = numpy_cost(params, X, y, lam)
    np.testing.assert_allclose(model.cost(params, X, y, lam), expected, rtol=1e-5)
    np.testing.assert_allclose(model.loss(params, X, y), numpy_cost(params, X, y, 0.0)[0], rtol=1e-5)


def test_accuracy_matches_numpy(getkey):
    params, X, y = make_problem(getkey())
    S = np.asarray(X) @ np.asarray(params["W"]).T + np.asarray(params["b"])
    assert float(model.accuracy(params, X, y)) == pytest.approx(np.mean(S.argmax(1) == np.asarray(y)))


def test_predict_proba_rows_sum_to_one(getkey):
    params, X, _ = make_problem(getkey())
    P = model.predict_proba(params, X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True], ids=["plain", "jit"])
def test_hand_grad_matches_numpy(getkey, jit, x64):
    params, X, y = make_problem(getkey(), dtype=jnp.float64)
    fn = jax.jit(model.hand_grad) if jit else model.hand_grad
    got = fn(params, X, y, 0.2)
    want = numpy_grad(params, X, y, 0.2)
    for k in ("W", "b"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)


def test_hand_grad_equals_jax_grad_float64(getkey, x64):
    params, X, y = make_problem(getkey(), n=100, d=50, K=10, dtype=jnp.float64)
    gh = model.hand_grad(params, X, y, 0.1)
    ga = model.autodiff_grad(params, X, y, 0.1)
    for k in ("W", "b"):
        rel = jnp.abs(gh[k] - ga[k]) / jnp.maximum(1e-10, jnp.abs(gh[k]) + jnp.abs(ga[k]))
        assert float(rel.max()) < 1e-10, k


def test_hand_grad_equals_jax_grad_float32(getkey):
    params, X, y = make_problem(getkey(), n=100, d=50, K=10)
    gh = model.hand_grad(params, X, y, 0.1)
    ga = model.autodiff_grad(params, X, y, 0.1)
    for k in ("W", "b"):
        assert gh[k].dtype == jnp.float32
        np.testing.assert_allclose(gh[k], ga[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn", [model.cost, model.hand_grad, model.autodiff_grad])
def test_jit_and_plain_agree(getkey, fn):
    params, X, y = make_problem(getkey())
    plain = fn(params, X, y, 0.1)
    jitted = jax.jit(fn)(params, X, y, 0.1)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), plain, jitted)


def test_softmax_survives_huge_logits():
    s = jnp.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, 0.0]])
    p = model.softmax(s)
    assert bool(jnp.isfinite(p).all())
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0, 0, 1]], atol=1e-7)
    logp = model.log_softmax(s)
    assert bool(jnp.isfinite(logp[:, :2]).all())
    np.testing.assert_allclose(logp[0], [0, -1e4, -2e4])


def test_cost_finite_and_grad_finite_for_huge_weights():
    params = {"W": jnp.array([[1e3, 0.0], [-1e3, 0.0]]), "b": jnp.zeros(2)}
    X = jnp.array([[10.0, 1.0], [-10.0, 1.0]])
    y = jnp.array([1, 1])
    c = model.cost(params, X, y, 0.0)
    assert np.isfinite(float(c)) and float(c) == pytest.approx(1e4, rel=1e-6)
    g = model.hand_grad(params, X, y, 0.0)
    assert all(bool(jnp.isfinite(v).all()) for v in g.values())


def test_float64_stays_float64(getkey, x64):
    params, X, y = make_problem(getkey(), dtype=jnp.float64)
    assert model.cost(params, X, y, 0.1).dtype == jnp.float64
    assert model.hand_grad(params, X, y, 0.1)["W"].dtype == jnp.float64


# ----------------------------------------------------------------------------- bad input


def good_problem():
    params = {"W": jnp.zeros((10, 6)), "b": jnp.zeros(10)}
    return params, jnp.ones((4, 6)), jnp.array([0, 1, 2, 9])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, X, y: (p, jnp.ones((4, 7)), y), r"W and X disagree on d: W has shape \(10, 6\).*X has shape \(4, 7\)"),
        (lambda p, X, y: (p, X, jnp.array([0, 1, 2, 10])), r"labels must lie in 0..K-1 = 0..9.*values from 0 to 10"),
        (lambda p, X, y: (p, X, jnp.array([-1, 1, 2, 3])), r"labels must lie in 0..K-1.*from -1 to 3"),
        (lambda p, X, y: ({"W": p["W"], "b": jnp.zeros(9)}, X, y), r"b must have shape \(K,\) = \(10,\).*got b of shape \(9,\)"),
        (lambda p, X, y: (p, jnp.ones((4, 6), jnp.int32), y), r"X must be floating point; got dtype int32 with shape \(4, 6\)"),
        (lambda p, X, y: (p, X.at[1, 2].set(jnp.nan), y), r"X of shape \(4, 6\) holds 1 NaN or inf"),
        (lambda p, X, y: (p, X, jnp.array([0, 1, 2])), r"y must have shape \(n,\) = \(4,\)"),
        (lambda p, X, y: ({"W": p["W"]}, X, y), r'params must be a dict with keys "W" and "b"'),
    ],
    ids=["d-mismatch", "label-too-big", "label-negative", "b-length", "int-X", "nan-X", "y-length", "missing-b"],
)
@pytest.mark.parametrize("fn", [model.cost, model.hand_grad, model.autodiff_grad, model.accuracy])
def test_bad_input_raises_value_error_naming_shapes(fn, mutate, message):
    params, X, y = mutate(*good_problem())
    args = (params, X, y) if fn is model.accuracy else (params, X, y, 0.1)
    with pytest.raises(ValueError, match=message):
        fn(*args)
