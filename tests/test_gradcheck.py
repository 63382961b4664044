"""Finite differences against closed-form gradients; the check catches a wrong gradient."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lincls import gradcheck, model


def quartic(params, A):
    """f = sum(A * W**4) / 4 + sum(sin(b)); df/dW = A W**3, df/db = cos(b)."""
    return jnp.sum(A * params["W"] ** 4) / 4 + jnp.sum(jnp.sin(params["b"]))


def test_relative_error_definition():
    ga = jnp.array([1.0, 0.0, -2.0, 1e-12])
    gn = jnp.array([1.1, 0.0, 2.0, 0.0])
    np.testing.assert_allclose(gradcheck.relative_error(ga, gn), [0.1 / 2.1, 0.0, 1.0, 1e-12 / 1e-10], rtol=1e-6)


@pytest.mark.parametrize("chunk", [1, 7, 256])
def test_numerical_grad_closed_form(getkey, x64, chunk):
    params = {"W": jax.random.normal(getkey(), (3, 5), jnp.float64), "b": jax.random.normal(getkey(), (3,), jnp.float64)}
    A = jax.random.uniform(getkey(), (3, 5), jnp.float64)
    g = gradcheck.numerical_grad(quartic, params, 1e-4, args=(A,), chunk=chunk)
    np.testing.assert_allclose(g["W"], A * params["W"] ** 3, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(g["b"], jnp.cos(params["b"]), rtol=1e-7, atol=1e-9)


def test_four_point_stencil_is_exact_where_the_fifth_derivative_vanishes(getkey, x64):
    # W**4 has no fifth derivative, so the four-point stencil leaves only rounding; the
    # two-point one keeps its h^2 term, 6 A W h^2 / 6 of d/dW (A W**4 / 4).
    params = {"W": jax.random.normal(getkey(), (3, 5), jnp.float64), "b": jax.random.normal(getkey(), (3,), jnp.float64)}
    A = jax.random.uniform(getkey(), (3, 5), jnp.float64, 0.5, 1.0)
    g2 = gradcheck.numerical_grad(quartic, params, 1e-2, args=(A,), order=2)
    g4 = gradcheck.numerical_grad(quartic, params, 1e-2, args=(A,), order=4)
    np.testing.assert_allclose(g2["W"] - A * params["W"] ** 3, A * params["W"] * 1e-4, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(g4["W"], A * params["W"] ** 3, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(g4["b"], jnp.cos(params["b"]), rtol=0, atol=1e-9)  # h^4/30 sin(b) ~ 3e-10


def test_unknown_stencil_order_is_refused():
    with pytest.raises(ValueError, match=r"order must be one of \[2, 4\]; got 3"):
        gradcheck.centered_difference(jnp.sin, 1e-4, order=3)


def problem(key, n=30, d=8, K=4, dtype=jnp.float64):
    kx, ky, kp = jax.random.split(key, 3)
    X = jax.random.normal(kx, (n, d), dtype)
    y = jax.random.randint(ky, (n,), 0, K)
    return model.init_params(kp, d, K, std=0.3, dtype=dtype), X, y


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_hand_grad_passes_the_check(getkey, x64, lam):
    params, X, y = problem(getkey())
    gh = model.hand_grad(params, X, y, lam)
    gn = gradcheck.numerical_grad(model._cost, params, 1e-4, args=(X, y, lam))
    for k, e in gradcheck.error_summary(gh, gn).items():
        assert e["median"] < 1e-7 and e["max"] < 1e-5, (k, e)


def hand_grad_without_factor_2(params, X, y, lam):
    g = model.hand_grad(params, X, y, lam)
    return {"W": g["W"] - lam * params["W"], "b": g["b"]}  # 2 lam W -> lam W: a classic slip


def test_check_catches_a_wrong_gradient(getkey, x64):
    params, X, y = problem(getkey())
    wrong = hand_grad_without_factor_2(params, X, y, 0.5)
    gn = gradcheck.numerical_grad(model._cost, params, 1e-4, args=(X, y, 0.5))
    assert gradcheck.error_summary(wrong, gn)["W"]["median"] > 1e-3
    assert gradcheck.error_summary(wrong, gn)["b"]["max"] < 1e-6  # b is untouched by the slip


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_logit_numerical_grad_equals_generic(getkey, x64, lam):
    params, X, y = problem(getkey(), n=50, d=20, K=10)
    fast = gradcheck.logit_numerical_grad(params, X, y, lam, 1e-4)
    generic = gradcheck.numerical_grad(model._cost, params, 1e-4, args=(X, y, lam))
    for k in ("W", "b"):
        np.testing.assert_allclose(fast[k], generic[k], rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("order", [2, 4])
def test_numerical_grads_jit_and_plain_agree(getkey, x64, order):
    params, X, y = problem(getkey(), n=12, d=5)
    generic = partial(gradcheck.numerical_grad, model._cost, h=1e-4, args=(X, y, 0.1), order=order)
    logit = partial(gradcheck.logit_numerical_grad, X=X, y=y, lam=0.1, h=1e-4, order=order)
    jitted = generic(params), logit(params)
    with jax.disable_jit():
        plain = generic(params), logit(params)
    for a, b in zip(jitted, plain):
        for k in ("W", "b"):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-9, atol=1e-12)


def test_cross_entropy_shift_change_equals_the_difference_of_two_losses(getkey, x64):
    S = 30 * jax.random.normal(getkey(), (40, 10), jnp.float64)  # logits up to ~100: p far from uniform
    y = jax.random.randint(getkey(), (40,), 0, 10)
    for i, scale in ((0, 1e-3), (3, 0.5), (9, 5.0)):
        t = scale * jax.random.normal(getkey(), (40,), jnp.float64)
        direct = model._cross_entropy_value(S.at[:, i].add(t), y) - model._cross_entropy_value(S, y)
        np.testing.assert_allclose(model.CROSS_ENTROPY.shift_change(S, y, i, t), direct, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_four_point_logit_check_certifies_the_hand_gradient(getkey, x64, lam):
    params, X, y = problem(getkey(), n=50, d=20, K=10)
    gh = model.hand_grad(params, X, y, lam)
    g4 = gradcheck.logit_numerical_grad(params, X, y, lam, 1e-4, order=4)
    for k, e in gradcheck.error_summary(gh, g4).items():
        assert e["max"] < 1e-9, (k, e)
    # without shift_change the same stencil differences two loss values, and loses digits to rounding
    plain_loss = model.CROSS_ENTROPY._replace(shift_change=None)
    g4_plain = gradcheck.logit_numerical_grad(params, X, y, lam, 1e-4, loss_fn=plain_loss, order=4)
    np.testing.assert_allclose(g4_plain["W"], g4["W"], rtol=1e-5, atol=1e-10)
    assert gradcheck.error_summary(gh, g4_plain)["W"]["max"] > 10 * gradcheck.error_summary(gh, g4)["W"]["max"]


def test_float32_differences_of_the_cost_are_useless_at_h_1e_4(getkey):
    params, X, y = problem(getkey(), dtype=jnp.float32)
    gh = model.hand_grad(params, X, y, 0.0)
    gn = gradcheck.numerical_grad(model._cost, params, 1e-4, args=(X, y, 0.0))
    assert gradcheck.error_summary(gh, gn)["W"]["median"] > 1e-4  # why the table runs in float64


def test_check_row_and_table(getkey, x64):
    X = jax.random.normal(getkey(), (20, 6), jnp.float64)
    y = jax.random.randint(getkey(), (20,), 0, 10)
    rows = gradcheck.run_table(X, y, jnp.float64, key=getkey(), rows=((10, 4, 0.0), (20, 6, 0.5)))
    assert [(r["n"], r["d"], r["n_params"]) for r in rows] == [(10, 4, 50), (20, 6, 70)]
    for r in rows:
        assert r["hand_vs_autodiff"]["W"]["max"] < 1e-10
        assert r["hand_vs_numerical"]["W"]["max"] < 1e-7 and r["hand_vs_numerical"]["b"]["max"] < 1e-7
        assert r["hand_vs_numerical_2pt"]["W"]["median"] < 1e-6
        assert 50 < r["truncation_ratio"] < 200  # residual shrinks as h^2
    table = gradcheck.format_table(rows)
    assert table.count("\n") == 3 and "| 20 | 6 | 0.5 |" in table
