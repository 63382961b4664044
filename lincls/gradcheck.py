"""Finite differences, relative errors, and the Table 1 gradient check.

``numerical_grad`` is the generic reference: centered differences of any scalar
function of a params pytree, vmapped over basis directions in chunks. For the model's
cost, which sees W only through the logits ``S = X W^T + b``, ``logit_numerical_grad``
computes the same centered differences from the base logits: perturbing ``W[i, j]`` by
h shifts logit column i by ``h * X[:, j]``, so each perturbed cost costs O(n K)
instead of O(n d K).

Both take the stencil's ``order``: 2 is the course's two-point difference
``(f(x+h) - f(x-h)) / 2h``, whose truncation error ``h^2 f3 / 6`` (f3 the third
derivative) is about 1e-10 here at h = 1e-4: large next to the smallest gradient
entries. 4 is the four-point centered difference at the same h,
``(8 [f(x+h) - f(x-h)] - [f(x+2h) - f(x-2h)]) / 12h``, whose ``h^4`` truncation error
lies far below float64 rounding. The logit-structured check also evaluates each loss
change without cancellation (``Loss.shift_change``), so its four-point differences are
accurate to ~1e-13 and can certify a gradient to a relative 1e-7.

Run the table (float64, h = 1e-4, first n images and d dimensions of data_batch_1)::

    python -m lincls.gradcheck --data-dir ../shared/data/cifar-10-batches-py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lincls import model
from lincls.model import CROSS_ENTROPY, Loss, Params

# (n, d, lam): the four rows of the DD2424 report's Table 1, then every parameter at full size.
TABLE_ROWS = ((10, 10, 0.0), (100, 100, 0.0), (1000, 1000, 0.5), (2000, 20, 0.5), (100, 3072, 0.1))
H = 1e-4
EPS = 1e-10

# Centered stencils as (multiple m of h, weight w): f'(x) ~ sum_m w (f(x + m h) - f(x - m h)) / h.
STENCILS = {
    2: ((1, 1 / 2),),  # truncation error h^2 f3 / 6
    4: ((1, 2 / 3), (2, -1 / 12)),  # truncation error h^4 f5 / 30
}


def centered_difference(pair: Callable[[float], jax.Array], h: float, order: int = 2) -> jax.Array:
    """``sum_m w_m pair(m h) / h`` over the stencil of ``order``, where ``pair(t) = f(x + t) - f(x - t)``."""
    if order not in STENCILS:
        raise ValueError(f"order must be one of {sorted(STENCILS)}; got {order}")
    return sum(w * pair(m * h) for m, w in STENCILS[order]) / h


def relative_error(ga, gn, eps: float = EPS):
    """Element-wise ``|ga - gn| / max(eps, |ga| + |gn|)`` for arrays or matching pytrees."""
    return jax.tree.map(lambda a, n: jnp.abs(a - n) / jnp.maximum(eps, jnp.abs(a) + jnp.abs(n)), ga, gn)


def error_summary(ga: Params, gn: Params, eps: float = EPS) -> dict[str, dict[str, float]]:
    """``{"W": {"max", "median", "max_abs"}, "b": {...}}``: relative error max and median, largest absolute difference."""
    errors = relative_error(ga, gn, eps)
    return {
        k: {"max": float(jnp.max(e)), "median": float(jnp.median(e)), "max_abs": float(jnp.max(jnp.abs(ga[k] - gn[k])))}
        for k, e in errors.items()
    }


@partial(jax.jit, static_argnames=("f", "chunk", "order"))
def numerical_grad(
    f: Callable[..., jax.Array], params: Params, h: float = H, *, args: tuple = (), chunk: int = 256, order: int = 2
) -> Params:
    """Centered differences of ``f`` for every entry i of params: with ``order=2``,
    ``(f(p + h e_i, *args) - f(p - h e_i, *args)) / 2h``; with 4, see :data:`STENCILS`.

    ``f`` is any scalar function of the pytree ``params`` (and of ``args``, passed as
    traced arguments so that large data is not baked into the compiled program). The
    perturbations are vmapped ``chunk`` at a time (``lax.map`` with ``batch_size``), so
    memory stays bounded.
    """
    theta, unravel = ravel_pytree(params)

    def diff(i):
        def pair(t):
            e = jnp.zeros_like(theta).at[i].set(t)
            return f(unravel(theta + e), *args) - f(unravel(theta - e), *args)

        return centered_difference(pair, h, order)

    grads = jax.lax.map(diff, jnp.arange(theta.size), batch_size=chunk)
    return unravel(grads.astype(theta.dtype))


@partial(jax.jit, static_argnames=("loss_fn", "order"))
def logit_numerical_grad(params: Params, X, y, lam, h: float = H, loss_fn: Loss = CROSS_ENTROPY, order: int = 2) -> Params:
    """The centered differences of ``model.cost`` computed from the base logits.

    Equal to ``numerical_grad(cost, order=order)`` up to float rounding (less of it), for
    any loss of the logits: W[i, j] + t shifts logit column i by ``t X[:, j]`` and the
    regularizer by ``lam (2 t W[i, j] + t^2)``, so ``cost(+t) - cost(-t)`` is the loss
    change of the two shifts plus ``4 lam t W[i, j]``; b[i] + t shifts column i by t.
    The loss change comes from ``loss_fn.shift_change`` when the loss has one, else
    from the difference of two loss values.
    """
    S = X @ params["W"].T + params["b"]  # (n, K), computed once
    W = params["W"]
    K = W.shape[0]

    def change(i, t):  # loss(S + t e_i^T) - loss(S), t of shape (n,)
        if loss_fn.shift_change is not None:
            return loss_fn.shift_change(S, y, i, t)
        return loss_fn.value(S + t[:, None] * jax.nn.one_hot(i, K, dtype=S.dtype), y) - loss_fn.value(S, y)

    def dW_entry(i, x_j, w_ij):  # d cost / d W[i, j], with x_j = X[:, j]
        return centered_difference(lambda t: change(i, t * x_j) - change(i, -t * x_j) + 4 * lam * t * w_ij, h, order)

    def row_of_dW(i):  # dW[i, :]: the d columns of X vmapped, 1024 at a time
        return jax.lax.map(lambda xw: dW_entry(i, *xw), (X.T, W[i]), batch_size=1024)

    def db_entry(i):
        ones = jnp.ones(S.shape[:1], S.dtype)
        return centered_difference(lambda t: change(i, t * ones) - change(i, -t * ones), h, order)

    return {"W": jax.lax.map(row_of_dW, jnp.arange(K)), "b": jax.vmap(db_entry)(jnp.arange(K))}


def check_row(X, y, lam: float, *, key: jax.Array, K: int = 10, h: float = H, generic: bool = True) -> dict:
    """One table row: hand, jax.grad and finite-difference gradients compared pairwise.

    ``numerical`` is :func:`logit_numerical_grad` with the four-point stencil,
    ``numerical_2pt`` the same with the course's two-point one; with ``generic`` the
    reference :func:`numerical_grad` of ``model.cost`` (two-point) runs too and is
    compared with the hand gradient and with ``numerical_2pt``.
    """
    n, d = X.shape
    params = model.init_params(key, d, K, dtype=X.dtype)
    row = {"n": n, "d": d, "lam": lam, "dtype": str(X.dtype), "h": h, "n_params": d * K + K}

    def timed(fn):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        return out, time.perf_counter() - start

    g_hand, row["seconds_hand"] = timed(lambda: model.hand_grad(params, X, y, lam))
    g_auto, row["seconds_autodiff"] = timed(lambda: model.autodiff_grad(params, X, y, lam))
    g_num, row["seconds_numerical"] = timed(lambda: logit_numerical_grad(params, X, y, lam, h, order=4))
    g_num2, row["seconds_numerical_2pt"] = timed(lambda: logit_numerical_grad(params, X, y, lam, h, order=2))
    row["truncation_ratio"] = truncation_ratio(params, X, y, lam, g_hand, h)
    row["hand_vs_numerical"] = error_summary(g_hand, g_num)
    row["hand_vs_numerical_2pt"] = error_summary(g_hand, g_num2)
    row["hand_vs_autodiff"] = error_summary(g_hand, g_auto)
    row["autodiff_vs_numerical"] = error_summary(g_auto, g_num)
    if generic:
        g_gen, row["seconds_numerical_generic"] = timed(
            lambda: numerical_grad(model._cost, params, h, args=(X, y, jnp.asarray(lam, X.dtype)))
        )
        row["hand_vs_numerical_generic"] = error_summary(g_hand, g_gen)
        row["numerical_2pt_vs_numerical_generic"] = error_summary(g_num2, g_gen)
    return row


def truncation_ratio(params: Params, X, y, lam, g_hand: Params, h: float = H) -> float:
    """max |g_hand - numerical(10 h)| / max |g_hand - numerical(h)| over W and b, two-point stencil.

    About 100 when the residual is the O(h^2) truncation error of centered differences
    (not a wrong gradient, which would not shrink with h); much less when rounding rules.
    """
    def max_abs(g):
        return max(float(jnp.max(jnp.abs(g_hand[k] - g[k]))) for k in g)

    return max_abs(logit_numerical_grad(params, X, y, lam, 10 * h)) / max_abs(logit_numerical_grad(params, X, y, lam, h))


# ----------------------------------------------------------------------------- the command

JSON_KEYS_DOC = """\
Each object in gradcheck.json is one row:
n, d, lam, dtype, h, n_params: the problem; seconds_*: wall time of each gradient (first call, compile included);
hand_vs_numerical (four-point), hand_vs_numerical_2pt (two-point), hand_vs_autodiff, autodiff_vs_numerical (four-point)
(and hand_vs_numerical_generic, numerical_2pt_vs_numerical_generic unless --no-generic):
{"W": {"max", "median", "max_abs"}, "b": {...}} of the relative error |ga - gn| / max(1e-10, |ga| + |gn|)
and the largest absolute difference; truncation_ratio: see lincls.gradcheck.truncation_ratio."""

PAIRS = (
    ("hand_vs_numerical", "hand vs numerical"),
    ("hand_vs_numerical_2pt", "hand vs numerical 2-point"),
    ("hand_vs_autodiff", "hand vs jax.grad"),
    ("autodiff_vs_numerical", "jax.grad vs numerical"),
)


def format_table(rows: list[dict]) -> str:
    """Markdown: one line per row, max (median) relative error of W and b for each pair."""
    generic = any("hand_vs_numerical_generic" in r for r in rows)
    pairs = PAIRS + ((("hand_vs_numerical_generic", "hand vs generic 2-point"),) if generic else ())
    head = ["n", "d", "lam"] + [f"{label}: {p}" for _, label in pairs for p in ("W", "b")] + ["h-ratio", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["n"]), str(r["d"]), f"{r['lam']:g}"]
        for key, _ in pairs:
            for p in ("W", "b"):
                e = r.get(key, {}).get(p)
                cells.append(f"{e['max']:.1e} ({e['median']:.0e})" if e else "")
        cells.append(f"{r['truncation_ratio']:.3g}")
        total = sum(v for k, v in r.items() if k.startswith("seconds_"))
        cells.append(f"{total:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_table(X_all, y_all, dtype, *, key: jax.Array, rows=TABLE_ROWS, generic: bool = True, h: float = H) -> list[dict]:
    """Every row of ``rows`` on the first n images and d dimensions of X_all."""
    results = []
    for n, d, lam in rows:
        X = jnp.asarray(X_all[:n, :d], dtype)
        y = jnp.asarray(y_all[:n])
        row = check_row(X, y, lam, key=key, h=h, generic=generic)
        results.append(row)
        print(f"n={n:5d} d={d:5d} lam={lam:g}: hand vs numerical max W {row['hand_vs_numerical']['W']['max']:.1e} "
              f"b {row['hand_vs_numerical']['b']['max']:.1e} (2-point: W {row['hand_vs_numerical_2pt']['W']['max']:.1e} "
              f"b {row['hand_vs_numerical_2pt']['b']['max']:.1e}); hand vs jax.grad max W "
              f"{row['hand_vs_autodiff']['W']['max']:.1e} b {row['hand_vs_autodiff']['b']['max']:.1e}", flush=True)
    return results


def parse_row(text: str) -> tuple[int, int, float]:
    """'100,3072,0.1' -> (100, 3072, 0.1), for --row."""
    try:
        n, d, lam = text.split(",")
        row = int(n), int(d), float(lam)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--row {text!r}: write n,d,lam, e.g. --row 100,3072,0.1") from None
    if row[0] < 1 or row[1] < 1 or row[2] < 0:
        raise argparse.ArgumentTypeError(f"--row {text!r}: n and d must be >= 1 and lam >= 0")
    return row


def main(argv=None) -> int:
    from lincls import data, files

    parser = argparse.ArgumentParser(prog="python -m lincls.gradcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help=f"cifar-10-batches-py folder (or ${data.DATA_DIR_ENV})")
    parser.add_argument("--source", default="auto", help="data source: auto, folder, tfds, download")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--out", default="results", help="folder for gradcheck.md and gradcheck.json")
    parser.add_argument("--no-generic", action="store_true", help="skip the generic numerical_grad reference")
    parser.add_argument("--seed", type=int, default=0, help="PRNGKey of the params at which gradients are compared")
    parser.add_argument("--row", action="append", type=parse_row, metavar="N,D,LAM",
                        help="a row of your own (repeatable); default: the course's four rows and the full-size one")
    args = parser.parse_args(argv)

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    try:
        ds = data.load_dataset(args.data_dir, plan="dd2424", source=args.source)
    except data.DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if any(n > len(ds.y_train) or d > ds.n_features for n, d, _ in args.row or ()):
        print(f"error: --row asks for more than the {len(ds.y_train)} images x {ds.n_features} dimensions of data_batch_1", file=sys.stderr)
        return 2
    rows = run_table(ds.X_train, ds.y_train, jnp.dtype(args.dtype), key=jax.random.PRNGKey(args.seed),
                     rows=tuple(args.row or TABLE_ROWS), generic=not args.no_generic)
    table = format_table(rows)
    suffix = "" if args.dtype == "float64" else f"_{args.dtype}"
    text = (
        f"# Gradient check ({args.dtype}, h = {H:g}, eps = {EPS:g})\n\n"
        f"First n images and d dimensions of data_batch_1, standardized with the training statistics; "
        f"params from init_params(PRNGKey({args.seed}), std=0.01). Cells: max (median) relative error. "
        f"'numerical' is the four-point centered difference (8 [f(x+h) - f(x-h)] - [f(x+2h) - f(x-2h)]) / 12h, "
        f"'2-point' the course's (f(x+h) - f(x-h)) / 2h, both computed from the logits with each loss change "
        f"evaluated without cancellation; 'generic 2-point' is the reference that perturbs every parameter "
        f"through the whole cost. The two-point stencil's max errors are its truncation error, "
        f"h^2/6 times the third derivative (about 1e-10 absolute here), divided by the smallest gradient entries; "
        f"h-ratio: its max abs error at 10h over that at h (about 100 = that O(h^2) truncation). "
        f"The four-point stencil's h^4 truncation lies below float64 rounding.\n\n"
        f"Command: `python -m lincls.gradcheck --data-dir DIR{'' if args.dtype == 'float64' else ' --dtype ' + args.dtype}`\n\n"
        f"{table}\n\n{JSON_KEYS_DOC}\n"
    )
    print(table)
    out = files.write_text(f"{args.out}/gradcheck{suffix}.md", text)
    files.write_json(f"{args.out}/gradcheck{suffix}.json", rows)
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
