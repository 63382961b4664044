"""One setting's training as a pure function: (params, data, lam, eta, key) -> (params, history).

Mini-batch gradient descent through ``optax.sgd``, with the learning rate injected as a
traced value (``optax.inject_hyperparams``) so that it may differ across a ``vmap`` axis.
Batches are taken in order (the course's base version) or, with ``shuffle``, in a fresh
permutation each epoch drawn from ``key``. Epochs and batches both run inside
``lax.scan``; after each epoch the loss, cost and accuracy on the whole training and
validation sets are recorded.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lincls import model
from lincls.model import CROSS_ENTROPY, Loss, Params

METRICS = ("train_loss", "train_cost", "train_accuracy", "val_loss", "val_cost", "val_accuracy")


class TrainData(NamedTuple):
    """The arrays training reads: standardized X (n, d) float and labels y (n,) int."""

    X_train: jax.Array
    y_train: jax.Array
    X_val: jax.Array
    y_val: jax.Array


class TrainOptions(NamedTuple):
    """Static (compile-time) choices of a run."""

    n_batch: int = 100
    n_epochs: int = 40
    grad: str = "hand"  # "hand" (hand_grad) or "autodiff" (jax.grad of the cost)
    shuffle: bool = False
    loss_fn: Loss = CROSS_ENTROPY


GRADS = {"hand": model._hand_grad, "autodiff": jax.grad(model._cost)}


def evaluate(params: Params, X, y, lam, loss_fn: Loss = CROSS_ENTROPY) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(loss, cost, accuracy) of params on (X, y), from one matmul for the logits."""
    S = model._logits(params, X)
    loss = loss_fn.value(S, y)
    return loss, loss + model._regularizer(params, lam), jnp.mean(jnp.argmax(S, axis=1) == y)


def epoch_metrics(params: Params, data: TrainData, lam, loss_fn: Loss = CROSS_ENTROPY) -> dict[str, jax.Array]:
    train = evaluate(params, data.X_train, data.y_train, lam, loss_fn)
    val = evaluate(params, data.X_val, data.y_val, lam, loss_fn)
    return dict(zip(METRICS, train + val))


def take_batch(X, y, order, start, n_batch: int):
    """Rows ``order[start:start + n_batch]`` of (X, y); a plain slice when order is None."""
    if order is None:
        return (jax.lax.dynamic_slice_in_dim(X, start, n_batch), jax.lax.dynamic_slice_in_dim(y, start, n_batch))
    rows = jax.lax.dynamic_slice_in_dim(order, start, n_batch)
    return X[rows], y[rows]


def sgd(eta) -> optax.GradientTransformation:
    """Plain SGD whose learning rate is a (possibly traced, per-setting) value in the state."""
    return optax.inject_hyperparams(optax.sgd)(learning_rate=eta)


def init_state(params: Params, eta) -> tuple[Params, optax.OptState]:
    """The training carry: params and the optimizer state holding the learning rate."""
    return params, sgd(eta).init(params)


def train_epoch(state, data: TrainData, lam, eta, epoch_key: jax.Array, options: TrainOptions):
    """One epoch of mini-batch GD, then the metrics on the whole train and val sets.

    ``n // n_batch`` full batches; a remainder of fewer than ``n_batch`` rows is left out
    of the epoch (with ``shuffle``, a different remainder each epoch).
    """
    n = data.X_train.shape[0]
    n_steps = n // options.n_batch
    if n_steps == 0:
        raise ValueError(f"n_batch={options.n_batch} is larger than the training set (n={n})")
    grad_fn = partial(GRADS[options.grad], loss_fn=options.loss_fn)
    optimizer = sgd(eta)
    order = jax.random.permutation(epoch_key, n) if options.shuffle else None

    def step(state, start):
        params, opt_state = state
        Xb, yb = take_batch(data.X_train, data.y_train, order, start, options.n_batch)
        updates, opt_state = optimizer.update(grad_fn(params, Xb, yb, lam), opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    state, _ = jax.lax.scan(step, state, jnp.arange(n_steps) * options.n_batch)
    return state, epoch_metrics(state[0], data, lam, options.loss_fn)


@partial(jax.jit, static_argnames="options")
def train(params: Params, data: TrainData, lam, eta, *, key: jax.Array, options: TrainOptions = TrainOptions()):
    """Train one setting; returns ``(params, history)``, history a dict of (n_epochs,) arrays.

    Epoch e draws its batch order from ``split(key, n_epochs)[e]`` (used only with shuffle).
    """

    def epoch(state, epoch_key):
        return train_epoch(state, data, lam, eta, epoch_key, options)

    (params, _), history = jax.lax.scan(epoch, init_state(params, eta), jax.random.split(key, options.n_epochs))
    return params, history
