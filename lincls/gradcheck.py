"""Finite differences, relative errors, and the Table 1 gradient check.

``numerical_grad`` is the generic reference: centered differences of any scalar
function of a params pytree, vmapped over basis directions in chunks. For the model's
cost, which sees W only through the logits ``S = X W^T + b``, ``logit_numerical_grad``
computes the same centered differences from the base logits: perturbing ``W[i, j]`` by
h shifts logit column i by ``h * X[:, j]``, so each perturbed cost costs O(n K)
instead of O(n d K).

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


@partial(jax.jit, static_argnames=("f", "chunk"))
def numerical_grad(
    f: Callable[..., jax.Array], params: Params, h: float = H, *, args: tuple = (), chunk: int = 256
) -> Params:
    """Centered differences ``(f(p + h e_i, *args) - f(p - h e_i, *args)) / 2h`` for every entry i.

    ``f`` is any scalar function of the pytree ``params`` (and of ``args``, passed as
    traced arguments so that large data is not baked into the compiled program). The
    perturbations are vmapped ``chunk`` at a time (``lax.map`` with ``batch_size``), so
    memory stays bounded.
    """
    theta, unravel = ravel_pytree(params)

    def diff(i):
        e = jnp.zeros_like(theta).at[i].set(h)
        return (f(unravel(theta + e), *args) - f(unravel(theta - e), *args)) / (2 * h)

    grads = jax.lax.map(diff, jnp.arange(theta.size), batch_size=chunk)
    return unravel(grads.astype(theta.dtype))


@partial(jax.jit, static_argnames=("loss_fn",))
def logit_numerical_grad(params: Params, X, y, lam, h: float = H, loss_fn: Loss = CROSS_ENTROPY) -> Params:
    """The centered differences of ``model.cost`` computed from the base logits.

    Equal to ``numerical_grad(cost)`` up to float rounding, for any loss of the logits:
    W[i, j] + t shifts logit column i by ``t X[:, j]`` and the regularizer by
    ``lam (2 t W[i, j] + t^2)``; b[i] + t shifts column i by t.
    """
    S = X @ params["W"].T + params["b"]  # (n, K), computed once
    W = params["W"]
    K = W.shape[0]

    def loss_shifted(i, column_shift):  # loss with logit column i moved by column_shift (n,)
        return loss_fn.value(S + column_shift[:, None] * jax.nn.one_hot(i, K, dtype=S.dtype), y)

    def row_of_dW(i):  # dW[i, :]: for a fixed column i, the d shifts h X[:, j] are vmapped (chunks of 1024)
        shifts = h * X.T  # (d, n)
        up = jax.lax.map(partial(loss_shifted, i), shifts, batch_size=1024) + lam * (2 * h * W[i] + h * h)
        down = jax.lax.map(partial(loss_shifted, i), -shifts, batch_size=1024) + lam * (-2 * h * W[i] + h * h)
        return (up - down) / (2 * h)

    def diff_b(i):
        ones = jnp.ones(S.shape[:1], S.dtype)
        return (loss_shifted(i, h * ones) - loss_shifted(i, -h * ones)) / (2 * h)

    dW = jax.lax.map(row_of_dW, jnp.arange(K))
    db = jax.vmap(diff_b)(jnp.arange(K))
    return {"W": dW, "b": db}


def check_row(X, y, lam: float, *, key: jax.Array, K: int = 10, h: float = H, generic: bool = True) -> dict:
    """One table row: hand, jax.grad and finite-difference gradients compared pairwise.

    ``numerical`` is :func:`logit_numerical_grad`; with ``generic`` the reference
    :func:`numerical_grad` of ``model.cost`` runs too and is compared with both.
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
    g_num, row["seconds_numerical"] = timed(lambda: logit_numerical_grad(params, X, y, lam, h))
    row["truncation_ratio"] = truncation_ratio(params, X, y, lam, g_hand, h)
    row["hand_vs_numerical"] = error_summary(g_hand, g_num)
    row["hand_vs_autodiff"] = error_summary(g_hand, g_auto)
    row["autodiff_vs_numerical"] = error_summary(g_auto, g_num)
    if generic:
        g_gen, row["seconds_numerical_generic"] = timed(
            lambda: numerical_grad(model._cost, params, h, args=(X, y, jnp.asarray(lam, X.dtype)))
        )
        row["hand_vs_numerical_generic"] = error_summary(g_hand, g_gen)
        row["numerical_vs_numerical_generic"] = error_summary(g_num, g_gen)
    return row


def truncation_ratio(params: Params, X, y, lam, g_hand: Params, h: float = H) -> float:
    """max |g_hand - numerical(10 h)| / max |g_hand - numerical(h)| over W and b.

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
hand_vs_numerical, hand_vs_autodiff, autodiff_vs_numerical (and hand_vs_numerical_generic, numerical_vs_numerical_generic unless --no-generic):
{"W": {"max", "median", "max_abs"}, "b": {...}} of the relative error |ga - gn| / max(1e-10, |ga| + |gn|)
and the largest absolute difference; truncation_ratio: see lincls.gradcheck.truncation_ratio."""

PAIRS = (
    ("hand_vs_numerical", "hand vs numerical"),
    ("hand_vs_autodiff", "hand vs jax.grad"),
    ("autodiff_vs_numerical", "jax.grad vs numerical"),
)


def format_table(rows: list[dict]) -> str:
    """Markdown: one line per row, max (median) relative error of W and b for each pair."""
    generic = any("hand_vs_numerical_generic" in r for r in rows)
    pairs = PAIRS + ((("hand_vs_numerical_generic", "hand vs numerical (generic)"),) if generic else ())
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
              f"b {row['hand_vs_numerical']['b']['max']:.1e}; hand vs jax.grad max W "
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
        f"'numerical' is the logit-structured centered difference, '(generic)' the reference that perturbs "
        f"every parameter through the whole cost. h-ratio: max abs error at 10h over that at h "
        f"(about 100 = the O(h^2) truncation error of centered differences).\n\n"
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
