"""Figures for the report: loss and cost curves, the W montage, lambda x eta heatmaps.

Every figure is a ``matplotlib.figure.Figure`` drawn on an Agg canvas, never through
``pyplot``, so no global figure state is created or leaked and no display is needed.
Each is saved as a PNG through :func:`lincls.files.atomic_path`: written to a temporary
name and renamed into place, so a failed plot leaves no half-written file.

Non-finite numbers (a diverged setting) never crash a plot: curves show the finite
epochs and mark where the run diverged, a non-finite W row becomes a blank tile that
says "diverged", and a NaN heatmap cell is drawn in grey and annotated "nan".
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib import colors
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from lincls.files import atomic_path

DPI = 100
_BAD_COLOR = "#d0d0d0"  # NaN heatmap cells
_CURVE_KEYS = ("train_loss", "val_loss", "train_cost", "val_cost")


def _figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)  # attach the Agg canvas explicitly: no pyplot, no backend switch
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        # The temporary name ends in .tmp, so the format must be given; no Software tag
        # keeps the bytes the same across matplotlib patch versions.
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    return Path(path)


def _as_float(values) -> np.ndarray:
    """A 1-D float array; None entries (JSON null) become NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64).reshape(-1)


def first_nonfinite_epoch(history: Mapping[str, Sequence[float]], keys=_CURVE_KEYS) -> int | None:
    """The 1-based first epoch at which any of ``keys`` in ``history`` is NaN or inf; None if all are finite."""
    epochs = []
    for key in keys:
        if key in history:
            bad = np.flatnonzero(~np.isfinite(_as_float(history[key])))
            if bad.size:
                epochs.append(int(bad[0]) + 1)
    return min(epochs) if epochs else None


def plot_curves(path: str | os.PathLike, history: Mapping[str, Sequence[float]], title: str) -> Path:
    """Two panels, loss and cost per epoch (x = 1..N), training and validation in each.

    ``history`` holds lists ``train_loss, train_cost, val_loss, val_cost`` (other keys are
    ignored). Non-finite values are left out of the lines; the first epoch with one is
    marked with a dotted red line, and a panel with no finite value says so. When the
    finite values span more than a factor 100 (a run blowing up) the y axis is logarithmic.
    """
    diverged = first_nonfinite_epoch(history)
    fig = _figure((10, 4))
    axes = fig.subplots(1, 2)
    for ax, what in zip(axes, ("loss", "cost")):
        n = 0
        finite_all = []
        for split, name, color in (("train", "training", "C0"), ("val", "validation", "C1")):
            v = _as_float(history.get(f"{split}_{what}", []))
            v[~np.isfinite(v)] = np.nan
            n = max(n, v.size)
            finite_all.append(v[np.isfinite(v)])
            ax.plot(np.arange(1, v.size + 1), v, color=color, marker="o", markersize=2.5, linewidth=1.5, label=name)
        finite = np.concatenate(finite_all)
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
            ax.set_yscale("log")
        if diverged is not None:
            ax.axvline(diverged, color="red", linestyle=":", linewidth=1.5, label=f"diverged (epoch {diverged})")
        if not finite.size:
            ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center", color="red")
        if n:
            ax.set_xlim(0.5, n + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.set_title(f"{what} per epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    # Fixed margins instead of tight_layout, which costs a full text layout pass per figure.
    fig.subplots_adjust(left=0.07, right=0.985, bottom=0.13, top=0.85, wspace=0.22)
    return _save(fig, path)


def weight_image(row: np.ndarray) -> np.ndarray:
    """One W row (3072,) as a (32, 32, 3) image in [0, 1], rescaled to its own min and max.

    The row is channel-first (R, G, B planes of 32x32, row-major), as in the CIFAR files.
    A constant row maps to zeros.
    """
    img = np.asarray(row, dtype=np.float64).reshape(3, 32, 32).transpose(1, 2, 0)
    lo, hi = img.min(), img.max()
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def plot_weights(path: str | os.PathLike, W, label_names: Sequence[str], title: str) -> Path:
    """Each row of ``W`` (K, 3072) as a 32x32 colour image titled with its class name.

    Ten classes are drawn in one row (more wrap at ten per row), as one montage on a single
    axes. Each image is rescaled to its own min/max, ``(w - min) / (max - min)``; a row
    with a NaN or inf is a blank framed tile that says "diverged".
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.shape[1] != 3 * 32 * 32:
        raise ValueError(f"plot_weights: W must be (K, 3072), got shape {W.shape}")
    K = W.shape[0]
    if len(label_names) != K:
        raise ValueError(f"plot_weights: {len(label_names)} label names for {K} rows of W")
    ncols = min(K, 10)
    nrows = math.ceil(K / ncols)
    side, pad, top = 32, 6, 10  # pixels of a tile, the gap between tiles, the room for a class name
    cell_w, cell_h = side + pad, side + pad + top
    montage = np.ones((nrows * cell_h, ncols * cell_w - pad, 3))
    fig_w = 1.3 * ncols
    img_h = 0.99 * fig_w * montage.shape[0] / montage.shape[1]  # inches, at the montage's aspect
    fig = _figure((fig_w, img_h + 0.35))  # 0.35 in above for the title
    ax = fig.add_axes((0.005, 0.0, 0.99, img_h / (img_h + 0.35)))
    for k in range(K):
        r, c = divmod(k, ncols)
        y0, x0 = r * cell_h + top, c * cell_w
        ax.text(x0 + side / 2, y0 - 2, str(label_names[k]), ha="center", va="bottom", fontsize=9)
        if np.isfinite(W[k]).all():
            montage[y0 : y0 + side, x0 : x0 + side] = weight_image(W[k])
        else:
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), side, side, fill=False, edgecolor="black", linewidth=0.8))
            ax.text(x0 + side / 2, y0 + side / 2, "diverged", ha="center", va="center", color="red", fontsize=9)
    ax.imshow(montage, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def tick_label(v: float) -> str:
    """A short label for a log-spaced hyperparameter: 0, 0.1, 0.001, 1e-05 -> '0', '0.1', '0.001', '1e-5'."""
    v = float(v)
    if v == 0:
        return "0"
    s = f"{v:.3g}"
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{int(exp)}"
    return s


def _format_cell(v: float, fmt: str) -> str:
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return fmt.format(v) if "{" in fmt else format(v, fmt)


def plot_heatmap(
    path: str | os.PathLike,
    values,
    lams: Sequence[float],
    etas: Sequence[float],
    title: str,
    best: tuple[int, int] | None = None,
    fmt: str = ".3f",
    *,
    cmap: str = "viridis",
    label: str | None = None,
    log: bool = False,
) -> Path:
    """A lambda (rows, y) by eta (columns, x) heatmap of ``values`` (len(lams), len(etas)).

    Each cell is annotated with its value formatted by ``fmt`` (a format spec such as
    ``".3f"``, or a ``"{...}"`` template); ``best = (i, j)`` draws a box around cell
    (lams[i], etas[j]); a colourbar labelled ``label`` is added. NaN and inf cells are grey
    and annotated "nan" / "inf". ``log`` uses a logarithmic colour scale when every finite
    value is positive and they span more than a factor 10 (a cost that blows up at large
    eta); otherwise the scale is linear. Small lambda and eta
    are at the bottom left.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (len(lams), len(etas)):
        raise ValueError(f"plot_heatmap: values shape {v.shape} != (len(lams), len(etas)) = {(len(lams), len(etas))}")
    finite = v[np.isfinite(v)]
    if finite.size and log and finite.min() > 0 and finite.max() > 10 * finite.min():
        norm = colors.LogNorm(finite.min(), finite.max())
    else:
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        norm = colors.Normalize(lo, hi)
    cm = matplotlib.colormaps[cmap].with_extremes(bad=_BAD_COLOR)

    nr, nc = v.shape
    fig = _figure((max(4.5, 1.9 + 0.95 * nc), max(3.2, 1.5 + 0.55 * nr)))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(v), cmap=cm, norm=norm, origin="lower", aspect="auto")
    fontsize = 9 if max(nr, nc) <= 6 else 7
    for i in range(nr):
        for j in range(nc):
            x = v[i, j]
            if np.isfinite(x):
                r, g, b_, _ = cm(norm(x))
                color = "white" if 0.299 * r + 0.587 * g + 0.114 * b_ < 0.5 else "black"
            else:
                color = "black"
            ax.text(j, i, _format_cell(x, fmt), ha="center", va="center", color=color, fontsize=fontsize)
    if best is not None:
        bi, bj = best
        ax.add_patch(Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    ax.set_xticks(range(nc), [tick_label(e) for e in etas])
    ax.set_yticks(range(nr), [tick_label(lam) for lam in lams])
    ax.set_xlabel("eta (learning rate)")
    ax.set_ylabel("lambda (L2 penalty)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=label)
    fig.tight_layout()
    return _save(fig, path)
