"""The one-layer classifier ``p = softmax(W x + b)`` as pure functions.

Params are a dict ``{"W": (K, d), "b": (K,)}``; data is batch-first, ``X`` (n, d)
float and ``y`` (n,) int labels in ``0..K-1``.

Every public function checks its inputs in plain Python first (shapes and dtypes
always; label range and NaN only when the arrays are concrete, i.e. not inside
``jit``/``vmap``) and raises a ``ValueError`` that names the shapes. The arithmetic
itself lives in small jitted kernels.

The loss is a value of the small type :class:`Loss` (value, hand gradient with respect
to the logits, prediction), so later losses plug in without branches here:
``hand_grad`` is the chain rule through the logits ``S = X W^T + b``::

    G = dL/dS            (n, K)   from the loss
    dW = G^T X + 2 lam W
    db = sum_i G_i
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, jax.Array]


# ----------------------------------------------------------------------------- losses


def softmax(s: jax.Array) -> jax.Array:
    """Row-wise softmax, stable for any finite logits (the row max is subtracted)."""
    z = s - jax.lax.stop_gradient(s.max(axis=-1, keepdims=True))
    e = jnp.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(s: jax.Array) -> jax.Array:
    """Row-wise log-softmax, stable for any finite logits."""
    z = s - jax.lax.stop_gradient(s.max(axis=-1, keepdims=True))
    return z - jnp.log(jnp.exp(z).sum(axis=-1, keepdims=True))


class Loss(NamedTuple):
    """A loss of the logits: its mean value, its hand-derived gradient, its prediction.

    ``value(S, y)`` is the mean loss over the n rows of logits ``S`` (n, K);
    ``grad_logits(S, y)`` is d value / d S, (n, K), derived by hand (no autodiff);
    ``predict(S)`` maps logits to the class probabilities (or scores) shown to a user.
    ``shift_change(S, y, i, t)``, optional, is ``value(S + t e_i^T, y) - value(S, y)``:
    the change of the mean loss when logit column i moves by ``t`` (n,), evaluated
    without subtracting two nearly equal losses. The finite-difference check uses it
    when given, so that its differences are not lost in the rounding of the loss.
    """

    name: str
    value: Callable[[jax.Array, jax.Array], jax.Array]
    grad_logits: Callable[[jax.Array, jax.Array], jax.Array]
    predict: Callable[[jax.Array], jax.Array]
    shift_change: Callable[[jax.Array, jax.Array, int, jax.Array], jax.Array] | None = None


def _cross_entropy_value(s: jax.Array, y: jax.Array) -> jax.Array:
    logp = log_softmax(s)
    return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()


def _cross_entropy_grad_logits(s: jax.Array, y: jax.Array) -> jax.Array:
    n, k = s.shape
    return (softmax(s) - jax.nn.one_hot(y, k, dtype=s.dtype)) / n


def _cross_entropy_shift_change(s: jax.Array, y: jax.Array, i, t: jax.Array) -> jax.Array:
    # Row r's loss is logsumexp(s_r) - s_r[y_r]; moving s_r[i] by t_r adds
    # log(1 + p_ri (e^t_r - 1)) to the first term and t_r to the second when y_r = i.
    p_i = softmax(s)[:, i]
    return jnp.mean(jnp.log1p(p_i * jnp.expm1(t)) - t * (y == i))


CROSS_ENTROPY = Loss(
    name="cross_entropy",
    value=_cross_entropy_value,
    grad_logits=_cross_entropy_grad_logits,
    predict=softmax,
    shift_change=_cross_entropy_shift_change,
)


# ----------------------------------------------------------------------------- checks


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_params(params: Params) -> tuple[int, int]:
    """Return (K, d) of well-formed params, else raise a ValueError naming the shapes."""
    if not isinstance(params, dict) or set(params) != {"W", "b"}:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f'params must be a dict with keys "W" and "b"; got {got}')
    W, b = params["W"], params["b"]
    if jnp.ndim(W) != 2:
        raise ValueError(f"W must be 2-D (K, d); got shape {jnp.shape(W)}")
    K, d = jnp.shape(W)
    if jnp.shape(b) != (K,):
        raise ValueError(
            f"b must have shape (K,) = ({K},) to match W of shape {jnp.shape(W)}; "
            f"got b of shape {jnp.shape(b)}"
        )
    for name, a in (("W", W), ("b", b)):
        if not jnp.issubdtype(jnp.result_type(a), jnp.floating):
            raise ValueError(f"{name} must be floating point; got dtype {jnp.result_type(a)}")
    return K, d


def check_inputs(params: Params, X, y=None) -> None:
    """Check params, X and (optionally) y against each other; raise ValueError if wrong.

    Shapes and dtypes are checked always; NaN/inf in X and labels outside 0..K-1 are
    checked only for concrete arrays (under jit or vmap the values are not known).
    """
    K, d = check_params(params)
    if jnp.ndim(X) != 2:
        raise ValueError(f"X must be 2-D (n, d); got shape {jnp.shape(X)}")
    n, dx = jnp.shape(X)
    if dx != d:
        raise ValueError(
            f"W and X disagree on d: W has shape {jnp.shape(params['W'])} (K, d) = ({K}, {d}) "
            f"but X has shape {jnp.shape(X)} (n, d) = ({n}, {dx})"
        )
    if not jnp.issubdtype(jnp.result_type(X), jnp.floating):
        raise ValueError(
            f"X must be floating point; got dtype {jnp.result_type(X)} with shape {jnp.shape(X)} "
            "(convert pixels with X.astype(float32) / 255 and standardize)"
        )
    if _is_concrete(X) and not np.isfinite(np.asarray(X)).all():
        bad = int((~np.isfinite(np.asarray(X))).sum())
        raise ValueError(f"X of shape {jnp.shape(X)} holds {bad} NaN or inf values")
    if y is None:
        return
    if jnp.shape(y) != (n,):
        raise ValueError(f"y must have shape (n,) = ({n},) to match X of shape {jnp.shape(X)}; got {jnp.shape(y)}")
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise ValueError(f"y must hold integer labels; got dtype {jnp.result_type(y)}")
    if _is_concrete(y) and n:
        yv = np.asarray(y)
        lo, hi = int(yv.min()), int(yv.max())
        if lo < 0 or hi >= K:
            raise ValueError(
                f"labels must lie in 0..K-1 = 0..{K - 1} (W has shape {jnp.shape(params['W'])}); "
                f"y of shape {jnp.shape(y)} holds values from {lo} to {hi}"
            )


# ----------------------------------------------------------------------------- kernels


def init_params(key: jax.Array, d: int, K: int, std: float = 0.01, dtype=jnp.float32) -> Params:
    """W (K, d) and b (K,) drawn from N(0, std^2) with two keys split from ``key``."""
    if d <= 0 or K <= 0:
        raise ValueError(f"d and K must be positive; got d={d}, K={K}")
    if std < 0:
        raise ValueError(f"std must be >= 0; got {std}")
    key_W, key_b = jax.random.split(key)
    return {
        "W": std * jax.random.normal(key_W, (K, d), dtype),
        "b": std * jax.random.normal(key_b, (K,), dtype),
    }


@jax.jit
def _logits(params: Params, X: jax.Array) -> jax.Array:
    return X @ params["W"].T + params["b"]


@jax.jit
def _regularizer(params: Params, lam) -> jax.Array:
    return lam * jnp.sum(params["W"] ** 2)


def _loss(params: Params, X, y, loss_fn: Loss = CROSS_ENTROPY):
    return loss_fn.value(_logits(params, X), y)


def _cost(params: Params, X, y, lam, loss_fn: Loss = CROSS_ENTROPY):
    return _loss(params, X, y, loss_fn) + _regularizer(params, lam)


def _hand_grad(params: Params, X, y, lam, loss_fn: Loss = CROSS_ENTROPY) -> Params:
    G = loss_fn.grad_logits(_logits(params, X), y)
    return {"W": G.T @ X + 2 * lam * params["W"], "b": G.sum(axis=0)}


def _accuracy(params: Params, X, y):
    return jnp.mean(jnp.argmax(_logits(params, X), axis=1) == y)


_loss_jit = jax.jit(_loss, static_argnames="loss_fn")
_cost_jit = jax.jit(_cost, static_argnames="loss_fn")
_hand_grad_jit = jax.jit(_hand_grad, static_argnames="loss_fn")
_autodiff_grad_jit = jax.jit(jax.grad(_cost), static_argnames="loss_fn")
_accuracy_jit = jax.jit(_accuracy)


# ----------------------------------------------------------------------------- public API


def logits(params: Params, X) -> jax.Array:
    """Class scores ``S = X W^T + b``, shape (n, K)."""
    check_inputs(params, X)
    return _logits(params, X)


def predict_proba(params: Params, X, loss_fn: Loss = CROSS_ENTROPY) -> jax.Array:
    """``P = softmax(X W^T + b)``, shape (n, K)."""
    return loss_fn.predict(logits(params, X))


def loss(params: Params, X, y, loss_fn: Loss = CROSS_ENTROPY) -> jax.Array:
    """Mean cross-entropy (or ``loss_fn``) of the rows of X, without the regularizer."""
    check_inputs(params, X, y)
    return _loss_jit(params, X, y, loss_fn=loss_fn)


def cost(params: Params, X, y, lam, loss_fn: Loss = CROSS_ENTROPY) -> jax.Array:
    """``loss + lam * sum(W**2)``."""
    check_inputs(params, X, y)
    return _cost_jit(params, X, y, lam, loss_fn=loss_fn)


def hand_grad(params: Params, X, y, lam, loss_fn: Loss = CROSS_ENTROPY) -> Params:
    """Gradient of :func:`cost` derived by hand: ``G = P - Y``, ``dW = G^T X / n + 2 lam W``,
    ``db = mean(G)``. No autodiff is involved."""
    check_inputs(params, X, y)
    return _hand_grad_jit(params, X, y, lam, loss_fn=loss_fn)


def autodiff_grad(params: Params, X, y, lam, loss_fn: Loss = CROSS_ENTROPY) -> Params:
    """``jax.grad`` of :func:`cost` with respect to params."""
    check_inputs(params, X, y)
    return _autodiff_grad_jit(params, X, y, lam, loss_fn=loss_fn)


def accuracy(params: Params, X, y) -> jax.Array:
    """Fraction of rows whose arg-max class equals the label."""
    check_inputs(params, X, y)
    return _accuracy_jit(params, X, y)
