"""The same DD2424 sweep written without lincls: NumPy (the course algorithm) and PyTorch.

Every function trains settings ``(lams[s], etas[s])`` from the same initial ``W0`` (K, d),
``b0`` (K,) with mini-batch gradient descent on batches taken in order, the hand
gradient of the cross-entropy plus ``lam * sum(W**2)``, and after every epoch records
the loss, cost and accuracy on the whole training and validation sets, exactly what
``lincls.sweep.train_sweep`` computes (``grad="hand"``, ``shuffle=False``).

They return ``(W (S, K, d), b (S, K), history)``, history a dict of (S, n_epochs) arrays
keyed like :data:`lincls.train.METRICS`; all arithmetic is float32.

- :func:`numpy_sweep`: the course's solution: ``X`` is d x n (one image a column),
  ``P = softmax(W X_batch + b)``, ``G = P - Y``, ``dW = G X_batch^T / n_b + 2 lam W``;
  the settings one after another.
- :func:`torch_sweep`: the same in PyTorch on the CPU, n x d batch-first; ``stacked``
  trains all settings at once with their weights stacked into one (S K) x d matrix (one
  GEMM per step for all settings, as lincls does), otherwise one after another.

PyTorch is optional (``pip install -e .[bench]``); import errors surface only when
:func:`torch_sweep` is called.
"""

from __future__ import annotations

import numpy as np

METRICS = ("train_loss", "train_cost", "train_accuracy", "val_loss", "val_cost", "val_accuracy")


# ----------------------------------------------------------------------------- NumPy


def _np_softmax(S: np.ndarray) -> np.ndarray:  # columns are samples (K, n)
    E = np.exp(S - S.max(axis=0, keepdims=True))
    return E / E.sum(axis=0, keepdims=True)


def _np_metrics(W, b, Xt, y, lam):
    """loss, cost, accuracy of (W, b) on Xt (d, n) with labels y (n,)."""
    S = W @ Xt + b[:, None]  # (K, n): the one matmul of the evaluation
    Z = S - S.max(axis=0, keepdims=True)
    logp = Z - np.log(np.exp(Z).sum(axis=0, keepdims=True))
    loss = -logp[y, np.arange(len(y))].mean()
    return loss, loss + lam * np.sum(W * W), np.mean(np.argmax(S, axis=0) == y)


def numpy_train(Xt, Y, y, Xvt, yv, W0, b0, lam, eta, n_batch, n_epochs):
    """One setting, the course's way. Xt (d, n), Y one-hot (K, n), Xvt (d, n_val)."""
    W, b = W0.astype(np.float32, copy=True), b0.astype(np.float32, copy=True)
    lam, eta = np.float32(lam), np.float32(eta)
    n = Xt.shape[1]
    history = {k: [] for k in METRICS}
    for _ in range(n_epochs):
        for j in range(n // n_batch):
            Xb, Yb = Xt[:, j * n_batch:(j + 1) * n_batch], Y[:, j * n_batch:(j + 1) * n_batch]
            P = _np_softmax(W @ Xb + b[:, None])
            G = (P - Yb) / np.float32(n_batch)
            dW = G @ Xb.T + 2 * lam * W
            db = G.sum(axis=1)
            W -= eta * dW
            b -= eta * db
        for k, v in zip(METRICS, _np_metrics(W, b, Xt, y, lam) + _np_metrics(W, b, Xvt, yv, lam)):
            history[k].append(float(v))
    return W, b, history


def numpy_layout(X, y, X_val, K: int = 10):
    """The course's layout of batch-first arrays: X^T (d, n), one-hot Y (K, n), X_val^T."""
    Xt = np.ascontiguousarray(np.asarray(X, np.float32).T)
    Y = np.zeros((K, len(y)), np.float32)
    Y[np.asarray(y), np.arange(len(y))] = 1
    return Xt, Y, np.ascontiguousarray(np.asarray(X_val, np.float32).T)


def numpy_sweep(X, y, X_val, y_val, W0, b0, lams, etas, n_batch, n_epochs, *, prepared=None):
    """Every setting, one after another. ``prepared`` = numpy_layout(...) if already made."""
    Xt, Y, Xvt = prepared if prepared is not None else numpy_layout(X, y, X_val, W0.shape[0])
    y, y_val = np.asarray(y), np.asarray(y_val)
    runs = [numpy_train(Xt, Y, y, Xvt, y_val, W0, b0, lam, eta, n_batch, n_epochs) for lam, eta in zip(lams, etas)]
    return (np.stack([r[0] for r in runs]), np.stack([r[1] for r in runs]),
            {k: np.array([r[2][k] for r in runs]) for k in METRICS})  # fmt: skip


# ----------------------------------------------------------------------------- PyTorch


def torch_sweep(X, y, X_val, y_val, W0, b0, lams, etas, n_batch, n_epochs, *, stacked: bool = True, threads: int | None = None):
    """The same sweep in PyTorch (CPU, float32, no autograd). Inputs may be NumPy arrays."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    with torch.inference_mode():
        X, X_val = torch.as_tensor(np.asarray(X, np.float32)), torch.as_tensor(np.asarray(X_val, np.float32))
        y, y_val = torch.as_tensor(np.asarray(y, np.int64)), torch.as_tensor(np.asarray(y_val, np.int64))
        groups = [list(range(len(lams)))] if stacked else [[s] for s in range(len(lams))]
        W_out, b_out, hist = [], [], []
        for g in groups:
            W, b, h = _torch_group(torch, X, y, X_val, y_val, W0, b0, [lams[s] for s in g], [etas[s] for s in g], n_batch, n_epochs)
            W_out.append(W), b_out.append(b), hist.append(h)
    return (np.concatenate(W_out), np.concatenate(b_out), {k: np.concatenate([h[k] for h in hist]) for k in METRICS})


def _torch_group(torch, X, y, X_val, y_val, W0, b0, lams, etas, n_batch, n_epochs):
    S, (K, d), n = len(lams), W0.shape, X.shape[0]
    W = torch.tensor(np.asarray(W0, np.float32)).repeat(S, 1).contiguous()  # (S K, d): settings stacked
    b = torch.tensor(np.asarray(b0, np.float32)).repeat(S).contiguous()  # (S K,)
    lam = torch.tensor(lams, dtype=torch.float32).repeat_interleave(K)[:, None]  # per row of W
    eta = torch.tensor(etas, dtype=torch.float32).repeat_interleave(K)
    Y = torch.nn.functional.one_hot(y, K).to(torch.float32)
    history = {k: [] for k in METRICS}

    def metrics(Xs, ys):
        Sx = (Xs @ W.T + b).view(-1, S, K)  # one matmul for every setting
        logp = torch.log_softmax(Sx, dim=2)
        loss = -logp.gather(2, ys.view(-1, 1, 1).expand(-1, S, 1)).squeeze(2).mean(0)
        reg = (lam[::K, 0] * (W * W).view(S, K * d).sum(1))
        return loss, loss + reg, (Sx.argmax(2) == ys[:, None]).to(torch.float32).mean(0)

    for _ in range(n_epochs):
        for j in range(n // n_batch):
            Xb, Yb = X[j * n_batch:(j + 1) * n_batch], Y[j * n_batch:(j + 1) * n_batch]
            P = torch.softmax((Xb @ W.T + b).view(n_batch, S, K), dim=2)
            G = ((P - Yb[:, None, :]) / n_batch).view(n_batch, S * K)
            dW = G.T @ Xb + 2 * lam * W
            W -= eta[:, None] * dW
            b -= eta * G.sum(0)
        for k, v in zip(METRICS, metrics(X, y) + metrics(X_val, y_val)):
            history[k].append(v.numpy().copy())
    return (W.view(S, K, d).numpy().copy(), b.view(S, K).numpy().copy(), {k: np.stack(v, axis=1) for k, v in history.items()})
