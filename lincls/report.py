"""Result files of a sweep: metrics.json, params.npz, figures and REPORT.md.

The pure helpers (:func:`table2`, :func:`reading`, :func:`best_setting`,
:func:`oscillation`, :func:`grid_section`, :func:`render_report`) turn a metrics dict into
numbers and Markdown; only :func:`write_outputs` touches files. Every file goes through
:mod:`lincls.files` (temporary name, then rename), so an error leaves each file either
absent or complete. The write order is the data first (metrics.json, params.npz), then
the figures, then REPORT.md last: a REPORT.md is only written once everything it links
to exists.

The metrics dict is the sweep's (see :func:`write_outputs`); accuracies in it are
fractions and shown here in percent.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from lincls import files, plots

COURSE_NAME = "dd2424"
# Test accuracy (%) in the DD2424 Assignment 1 course report, keyed by (lambda, eta).
COURSE_REFERENCE = {(0.0, 0.1): 28.16, (0.0, 0.001): 38.69, (0.1, 0.001): 39.08, (1.0, 0.001): 37.57}
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
HISTORY_KEYS = ("train_loss", "train_cost", "val_loss", "val_cost", "train_accuracy", "val_accuracy")

# Curves and W montages for every setting up to this many, else only the best few on validation.
ALL_FIGURES_UP_TO = 8
TOP_FIGURES = 4
TOP_GRID_ROWS = 5

# oscillation(): the validation loss oscillates when it changes direction at least this many
# times and its total variation is at least this many times its net decrease.
OSC_MIN_TURNS = 2
OSC_MIN_TV_RATIO = 1.5

SAME_ACC_POINTS = 0.005  # accuracy differences below this (in points) print as equal at 2 decimals
SAME_GAP_POINTS = 0.05


# ----------------------------------------------------------------------------- small numeric helpers


def _floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in (values or [])], dtype=np.float64).reshape(-1)


def _final(values) -> float:
    v = _floats(values)
    return float(v[-1]) if v.size else math.nan


def _num(x) -> float:
    return math.nan if x is None else float(x)


def _pct(fraction: float) -> str:
    return "nan" if not math.isfinite(fraction) else f"{100 * fraction:.2f}"


def _val(x: float, spec: str = ".4f") -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf") if math.isinf(x) else format(x, spec)


def _hp(x: float) -> str:
    return plots.tick_label(x)


def _setting_name(s: Mapping) -> str:
    return f"lambda={_hp(s['lam'])}, eta={_hp(s['eta'])}"


def diverged_epoch(setting: Mapping) -> int | None:
    """The 1-based first epoch with a non-finite value, from the setting or its history; None if it did not diverge."""
    first = plots.first_nonfinite_epoch(setting, HISTORY_KEYS)
    given = setting.get("diverged_epoch")
    if given is not None:
        return int(given) if first is None else min(int(given), first)
    return first


def is_diverged(setting: Mapping) -> bool:
    """Flagged as diverged by the sweep, or a NaN/inf anywhere in its history or test accuracy."""
    return (
        bool(setting.get("diverged"))
        or diverged_epoch(setting) is not None
        or not math.isfinite(_num(setting.get("test_accuracy")))
    )


def train_val_gap(setting: Mapping) -> float:
    """Final-epoch training minus validation accuracy, in percentage points."""
    return 100 * (_final(setting.get("train_accuracy")) - _final(setting.get("val_accuracy")))


def reference_accuracy(lam: float, eta: float) -> float | None:
    """The course report's test accuracy (%) for (lam, eta), or None if it has none."""
    for (rl, re), acc in COURSE_REFERENCE.items():
        if math.isclose(lam, rl, rel_tol=1e-6, abs_tol=1e-12) and math.isclose(eta, re, rel_tol=1e-6, abs_tol=1e-12):
            return acc
    return None


def oscillation(values: Sequence[float]) -> dict:
    """How much a curve (e.g. the validation loss per epoch) goes up and down.

    Measured on the finite prefix of ``values`` (up to the first NaN/inf):

    - ``steps``: epoch-to-epoch steps; ``rises``: steps where the value went up;
    - ``turns``: changes of direction (a U-shape, as in overfitting, has one);
    - ``total_variation``: sum of |steps|; ``net_decrease``: first minus last value;
    - ``tv_ratio``: total variation over net decrease (1 for a monotone decrease; inf when
      the curve did not decrease overall);
    - ``oscillates``: at least ``OSC_MIN_TURNS`` turns and ``tv_ratio >= OSC_MIN_TV_RATIO``.
    """
    v = _floats(values)
    bad = np.flatnonzero(~np.isfinite(v))
    if bad.size:
        v = v[: bad[0]]
    d = np.diff(v)
    signs = np.sign(d[d != 0])
    tv = float(np.abs(d).sum())
    net = float(v[0] - v[-1]) if v.size else 0.0
    if net > 0:
        ratio = tv / net
    else:
        ratio = math.inf if tv > 0 else 1.0
    turns = int((signs[1:] != signs[:-1]).sum())
    return {
        "steps": int(d.size),
        "rises": int((d > 0).sum()),
        "turns": turns,
        "total_variation": tv,
        "net_decrease": net,
        "tv_ratio": ratio,
        "oscillates": bool(turns >= OSC_MIN_TURNS and ratio >= OSC_MIN_TV_RATIO),
    }


def _sort_key(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def ranking(metrics: Mapping, by: str = "val") -> list[int]:
    """Setting indices, best first, by final validation accuracy (``by="val"``) or test accuracy (``"test"``).

    Diverged settings come last whatever their numbers; ties keep the settings' order.
    """
    if by not in ("val", "test"):
        raise ValueError(f"ranking: by must be 'val' or 'test', got {by!r}")
    settings = metrics["settings"]

    def score(i):
        s = settings[i]
        acc = _final(s.get("val_accuracy")) if by == "val" else _num(s.get("test_accuracy"))
        return (not is_diverged(s), _sort_key(acc))

    return sorted(range(len(settings)), key=score, reverse=True)  # sorted is stable; reverse keeps ties in order


def best_setting(metrics: Mapping, by: str = "val") -> int | None:
    """Index of the best non-diverged setting by final validation accuracy (or test accuracy, ``by="test"``).

    Model selection uses validation accuracy; ``by="test"`` is for describing results only.
    None when no setting has a finite score.
    """
    i = ranking(metrics, by)[0]  # diverged and non-finite scores rank last, so only the first can win
    s = metrics["settings"][i]
    acc = _final(s.get("val_accuracy")) if by == "val" else _num(s.get("test_accuracy"))
    return i if not is_diverged(s) and math.isfinite(acc) else None


def figure_settings(metrics: Mapping) -> list[int]:
    """Settings that get curves and W images: all up to ``ALL_FIGURES_UP_TO``, else the best ``TOP_FIGURES`` on validation."""
    n = len(metrics["settings"])
    if n <= ALL_FIGURES_UP_TO:
        return list(range(n))
    return sorted(ranking(metrics, "val")[:TOP_FIGURES])


# ----------------------------------------------------------------------------- Markdown pieces


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def status(setting: Mapping) -> str:
    """"ok", "diverged at epoch k", or "diverged"."""
    if not is_diverged(setting):
        return "ok"
    k = diverged_epoch(setting)
    return "diverged" if k is None else f"diverged at epoch {k}"


def table2(metrics: Mapping) -> str:
    """Table 2 as Markdown: one row per setting (test accuracy in %, final losses, status).

    For the course config (name "dd2424") two more columns give the course report's test
    accuracy for the same (lambda, eta) and the difference in points.
    """
    course = metrics.get("name") == COURSE_NAME
    header = ["#", "lambda", "eta", "test acc (%)"]
    align = "rrrr"
    if course:
        header += ["course (%)", "diff (points)"]
        align += "rr"
    header += ["final train loss", "final val loss", "status"]
    align += "rrl"
    rows = []
    for i, s in enumerate(metrics["settings"]):
        acc = _num(s.get("test_accuracy"))
        row = [str(s.get("index", i)), _hp(s["lam"]), _hp(s["eta"]), _pct(acc)]
        if course:
            ref = reference_accuracy(s["lam"], s["eta"])
            if ref is None:
                row += ["-", "-"]
            else:
                row += [f"{ref:.2f}", f"{100 * acc - ref:+.2f}" if math.isfinite(acc) else "nan"]
        row += [_val(_final(s.get("train_loss"))), _val(_final(s.get("val_loss"))), status(s)]
        rows.append(row)
    return _md_table(header, rows, align)


def _compare(a: float, b: float, tol: float, words: tuple[str, str, str]) -> str:
    """words = (if b > a, if b < a, if equal within tol)."""
    return words[2] if abs(b - a) < tol else words[0] if b > a else words[1]


def _groups(settings: Sequence[Mapping], fixed: str, vary: str) -> list[tuple[float, list[Mapping]]]:
    """Usable settings grouped by the value of ``fixed``, each group sorted by ``vary`` (one per value)."""
    groups: dict[float, dict[float, Mapping]] = {}
    for s in settings:
        if is_diverged(s):
            continue
        key = float(f"{float(s[fixed]):.6g}")
        groups.setdefault(key, {}).setdefault(float(f"{float(s[vary]):.6g}"), s)
    return [(k, [g[v] for v in sorted(g)]) for k, g in sorted(groups.items()) if len(g) >= 2]


def _lambda_pair(eta: float, a: Mapping, b: Mapping) -> str:
    acc_a, acc_b = 100 * _num(a["test_accuracy"]), 100 * _num(b["test_accuracy"])
    gap_a, gap_b = train_val_gap(a), train_val_gap(b)
    acc_word = _compare(acc_a, acc_b, SAME_ACC_POINTS, ("higher", "lower", "the same"))
    gap_word = _compare(gap_a, gap_b, SAME_GAP_POINTS, ("a larger", "a smaller", "about the same"))
    gap_tail = {"a smaller": ", i.e. less overfitting", "a larger": ", i.e. more overfitting"}.get(gap_word, "")
    return (
        f"At eta={_hp(eta)}, raising lambda from {_hp(a['lam'])} to {_hp(b['lam'])} gave {acc_word} test accuracy "
        f"({acc_b:.2f}% vs {acc_a:.2f}%, {acc_b - acc_a:+.2f} points) and {gap_word} train-val accuracy gap "
        f"({gap_b:.2f} vs {gap_a:.2f} points){gap_tail}."
    )


def _eta_pair(lam: float, a: Mapping, b: Mapping) -> str:
    acc_a, acc_b = 100 * _num(a["test_accuracy"]), 100 * _num(b["test_accuracy"])
    va, vb = _final(a.get("val_loss")), _final(b.get("val_loss"))
    acc_word = _compare(acc_a, acc_b, SAME_ACC_POINTS, ("higher", "lower", "the same"))
    loss_word = _compare(va, vb, 5e-5, ("a higher", "a lower", "the same"))
    return (
        f"At lambda={_hp(lam)}, raising eta from {_hp(a['eta'])} to {_hp(b['eta'])} gave {acc_word} test accuracy "
        f"({acc_b:.2f}% vs {acc_a:.2f}%, {acc_b - acc_a:+.2f} points) and {loss_word} final validation loss "
        f"({_val(vb)} vs {_val(va)})."
    )


def _summary(fixed_name: str, fixed: float, vary_name: str, vary: str, members: list[Mapping]) -> str:
    accs = [100 * _num(s["test_accuracy"]) for s in members]
    hi, lo = int(np.argmax(accs)), int(np.argmin(accs))
    first, last = members[0], members[-1]
    text = (
        f"At {fixed_name}={_hp(fixed)}, over {len(members)} values of {vary_name} from {_hp(first[vary])} to "
        f"{_hp(last[vary])}, test accuracy ranged from {accs[lo]:.2f}% ({vary_name}={_hp(members[lo][vary])}) to "
        f"{accs[hi]:.2f}% ({vary_name}={_hp(members[hi][vary])})"
    )
    if vary == "lam":
        g0, g1 = train_val_gap(first), train_val_gap(last)
        word = _compare(g0, g1, SAME_GAP_POINTS, ("larger", "smaller", "about the same"))
        tail = {"smaller": ", i.e. less overfitting", "larger": ", i.e. more overfitting"}.get(word, "")
        text += (
            f"; the train-val accuracy gap was {g0:.2f} points at the smallest lambda and {g1:.2f} at the "
            f"largest ({word} at the largest{tail})"
        )
    return text + "."


def _effect(metrics: Mapping, vary: str) -> list[str]:
    fixed = "eta" if vary == "lam" else "lam"
    vary_name, fixed_name = ("lambda", "eta") if vary == "lam" else ("eta", "lambda")
    out = []
    for key, members in _groups(metrics["settings"], fixed, vary):
        if len(members) <= 3:
            pair = _lambda_pair if vary == "lam" else _eta_pair
            out += [pair(key, a, b) for a, b in zip(members, members[1:])]
        else:
            out.append(_summary(fixed_name, key, vary_name, vary, members))
    if not out:
        out.append(
            f"No two finished settings share {fixed_name} with different {vary_name}, so these numbers say nothing "
            f"about the effect of {vary_name}."
        )
    return out


def _oscillation_text(metrics: Mapping) -> list[str]:
    settings = [s for s in metrics["settings"] if not is_diverged(s)]
    if not settings:
        return []
    measured = [(s, oscillation(s.get("val_loss"))) for s in settings]
    osc = [(s, m) for s, m in measured if m["oscillates"]]
    out = []
    for s, m in osc[:4]:
        tv = (
            f"its total variation is {m['tv_ratio']:.1f} times its net decrease"
            if m["net_decrease"] > 0
            else "it ended no lower than it started"
        )
        out.append(
            f"The validation loss of {_setting_name(s)} oscillates: it rose in {m['rises']} of {m['steps']} "
            f"epoch steps, changed direction {m['turns']} times, and {tv}."
        )
    if len(osc) > 4:
        out.append(f"The validation loss of {len(osc) - 4} more settings oscillates too.")
    if not osc:
        top_eta = max(float(s["eta"]) for s in settings)
        parts = []
        for s, m in measured:
            if math.isclose(float(s["eta"]), top_eta):
                parts.append(
                    f"{_setting_name(s)} rose in {m['rises']} of {m['steps']} epoch steps with total variation "
                    f"{m['tv_ratio']:.2f} times its net decrease"
                    if m["net_decrease"] > 0
                    else f"{_setting_name(s)} rose in {m['rises']} of {m['steps']} epoch steps and did not decrease overall"
                )
        out.append(
            "No setting's validation loss oscillates"
            f" (at least {OSC_MIN_TURNS} changes of direction and total variation at least {OSC_MIN_TV_RATIO:g} "
            f"times the net decrease); at the largest eta, {'; '.join(parts[:4])}."
        )
    return out


def _winner_text(metrics: Mapping) -> str:
    """The best setting on test accuracy, its lead, and the validation pick if it differs."""
    settings = metrics["settings"]
    best = best_setting(metrics, "test")
    if best is None:
        return "No setting finished with a finite test accuracy."
    b = settings[best]
    acc = 100 * _num(b["test_accuracy"])
    text = f"The best test accuracy is {acc:.2f}%, for {_setting_name(b)}"
    others = [i for i in ranking(metrics, "test") if i != best and not is_diverged(settings[i])]
    if others:
        r = settings[others[0]]
        racc = 100 * _num(r["test_accuracy"])
        if abs(acc - racc) < SAME_ACC_POINTS:
            text += f", tied with {_setting_name(r)}"
        else:
            text += f", {acc - racc:.2f} points ahead of {_setting_name(r)} ({racc:.2f}%)"
    text += "."
    vbest = best_setting(metrics, "val")
    if vbest is not None and vbest != best:
        v = settings[vbest]
        text += (
            f" Chosen on validation accuracy instead, the pick would be {_setting_name(v)} "
            f"(validation {_pct(_final(v['val_accuracy']))}%, test {_pct(_num(v['test_accuracy']))}%)."
        )
    return text


def _choice_text(metrics: Mapping) -> str:
    """The setting chosen on validation accuracy and its test accuracy; the test maximum only described."""
    settings = metrics["settings"]
    vbest = best_setting(metrics, "val")
    if vbest is None:
        return "No setting finished with a finite validation accuracy."
    v = settings[vbest]
    text = (
        f"Chosen on validation accuracy, the best setting is {_setting_name(v)}: validation "
        f"{_pct(_final(v['val_accuracy']))}%, test {_pct(_num(v['test_accuracy']))}%."
    )
    best = best_setting(metrics, "test")
    if best is not None and best != vbest:
        b = settings[best]
        text += (
            f" The highest test accuracy in the grid, {_pct(_num(b['test_accuracy']))}% for {_setting_name(b)}, "
            "describes the grid but cannot choose a setting: picked on the test set, its accuracy would be "
            "an optimistic estimate."
        )
    return text


def reading(metrics: Mapping, choose_on: str = "test") -> str:
    """A short text on the results, every sentence generated from the numbers in ``metrics``.

    The winner (on test accuracy, as the course report compares its four settings; with
    ``choose_on="val"``, as a grid search must, the setting chosen on validation accuracy
    and its test accuracy, the test maximum only described), the effect of lambda (same
    eta: test accuracy and the train-val accuracy gap), the effect of eta (same lambda),
    which validation losses oscillate (see :func:`oscillation`), and which settings diverged.
    """
    if choose_on not in ("test", "val"):
        raise ValueError(f"reading: choose_on must be 'test' or 'val', got {choose_on!r}")
    settings = metrics["settings"]
    paras = [_winner_text(metrics) if choose_on == "test" else _choice_text(metrics)]
    paras.append("Effect of lambda. " + " ".join(_effect(metrics, "lam")))
    paras.append("Effect of eta. " + " ".join(_effect(metrics, "eta")))
    osc = _oscillation_text(metrics)
    if osc:
        paras.append(" ".join(osc))
    div = [s for s in settings if is_diverged(s)]
    if div:
        names = "; ".join(f"{_setting_name(s)} ({status(s)})" for s in div)
        paras.append(
            f"{len(div)} setting{'s' if len(div) > 1 else ''} diverged (a NaN or inf in the losses or weights): "
            f"{names}. {'Their accuracies are' if len(div) > 1 else 'Its accuracy is'} not meaningful."
        )
    return "\n\n".join(paras) + "\n"


def check_grid(metrics: Mapping, grid: Mapping) -> tuple[list[float], list[float]]:
    """Validate that settings are row-major over (lams, etas); return the two lists."""
    lams, etas = [float(x) for x in grid["lams"]], [float(x) for x in grid["etas"]]
    settings = metrics["settings"]
    if len(lams) * len(etas) != len(settings):
        raise ValueError(f"grid: {len(lams)} lams x {len(etas)} etas != {len(settings)} settings")
    for i, lam in enumerate(lams):
        for j, eta in enumerate(etas):
            s = settings[i * len(etas) + j]
            if not (math.isclose(s["lam"], lam, rel_tol=1e-6, abs_tol=1e-12) and math.isclose(s["eta"], eta, rel_tol=1e-6, abs_tol=1e-12)):
                raise ValueError(
                    f"grid: setting {i * len(etas) + j} has (lam, eta) = ({s['lam']}, {s['eta']}), "
                    f"expected ({lam}, {eta}) for row-major order over (lams, etas)"
                )
    return lams, etas


def grid_values(metrics: Mapping, grid: Mapping, key: str) -> np.ndarray:
    """The final-epoch ``key`` (e.g. "val_accuracy") of each setting as a (len(lams), len(etas)) array."""
    lams, etas = check_grid(metrics, grid)
    return np.array([_final(s.get(key)) for s in metrics["settings"]]).reshape(len(lams), len(etas))


def grid_section(metrics: Mapping, grid: Mapping) -> str:
    """The "Grid search" Markdown: the heatmaps, the pick on validation accuracy, a top-5 table."""
    lams, etas = check_grid(metrics, grid)
    settings = metrics["settings"]
    lines = [
        "## Grid search",
        "",
        f"{len(lams)} lambdas x {len(etas)} etas. Final-epoch validation accuracy and cost; the box marks the best "
        "setting on validation accuracy.",
        "",
        "![validation accuracy heatmap](heatmap_val_accuracy.png)",
        "",
        "![validation cost heatmap](heatmap_val_cost.png)",
        "",
    ]
    best = best_setting(metrics, "val")
    if best is None:
        lines.append("No setting finished with a finite validation accuracy.")
    else:
        s = settings[best]
        lines.append(
            f"Chosen on validation accuracy alone: **{_setting_name(s)}** (validation "
            f"{_pct(_final(s['val_accuracy']))}%), whose test accuracy is **{_pct(_num(s['test_accuracy']))}%**."
        )
        tbest = best_setting(metrics, "test")
        if tbest is not None and tbest != best:
            t = settings[tbest]
            lines.append(
                f"The highest test accuracy in the grid, {_pct(_num(t['test_accuracy']))}% for {_setting_name(t)}, "
                "is not used for the choice: picking on the test set would make its accuracy an optimistic estimate."
            )
    rows = []
    for rank, i in enumerate(ranking(metrics, "val")[:TOP_GRID_ROWS], 1):
        s = settings[i]
        rows.append([
            str(rank), str(s.get("index", i)), _hp(s["lam"]), _hp(s["eta"]), _pct(_final(s.get("val_accuracy"))),
            _val(_final(s.get("val_cost"))), _pct(_num(s.get("test_accuracy"))), status(s),
        ])
    lines += [
        "",
        f"Top {len(rows)} on validation accuracy:",
        "",
        _md_table(["rank", "#", "lambda", "eta", "val acc (%)", "final val cost", "test acc (%)", "status"], rows, "rrrrrrrl"),
    ]
    return "\n".join(lines) + "\n"


def demote_headings(md: str) -> str:
    """Every Markdown heading one level down (``#`` -> ``##``), code fences left alone."""
    out, fence = [], False
    for line in md.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        elif not fence and line.startswith("#"):
            line = "#" + line
        out.append(line)
    return "\n".join(out)


def render_report(
    metrics: Mapping,
    *,
    figures: Sequence[int] | None = None,
    gradcheck: str | None = None,
    gradcheck_missing: str | None = None,
    grid: Mapping | None = None,
) -> str:
    """REPORT.md's text. ``figures``: setting indices with curves_<i>.png / weights_<i>.png
    (default :func:`figure_settings`); ``gradcheck``: the gradient check's Markdown to include."""
    settings = metrics["settings"]
    figures = figure_settings(metrics) if figures is None else list(figures)
    ds = metrics.get("dataset", {})
    dev = metrics.get("devices", {})
    dev_text = f"{dev.get('platform', '?')} x {dev.get('count', '?')}"
    extra = {k: v for k, v in dev.items() if k not in ("platform", "count")}
    if extra:
        dev_text += " (" + ", ".join(f"{k}: {v}" for k, v in extra.items()) + ")"
    lines = [
        f"# One-layer softmax classifier on CIFAR-10: {metrics.get('name', 'results')}",
        "",
        f"Produced by: `{metrics.get('command', '?')}`",
        "",
        f"- Data: source `{ds.get('source', '?')}`, plan `{ds.get('plan', '?')}`; {ds.get('n_train', '?')} training, "
        f"{ds.get('n_val', '?')} validation, {ds.get('n_test', '?')} test images",
        f"- Devices: {dev_text}",
        f"- Wall time {_val(_num(metrics.get('wall_time_s')), '.1f')} s, of which compilation "
        f"{_val(_num(metrics.get('compile_time_s')), '.1f')} s",
        "",
    ]
    if "config" in metrics:
        lines += [
            "<details><summary>Configuration</summary>",
            "",
            "```json",
            json.dumps(metrics["config"], indent=2, allow_nan=True, default=str),
            "```",
            "",
            "</details>",
            "",
        ]
    lines += ["## Table 2: test accuracy", "", table2(metrics), ""]
    if metrics.get("name") == COURSE_NAME:
        lines += ["'course' is the test accuracy in the DD2424 course report for the same lambda and eta; "
                  "'diff' is this run minus the course, in points.", ""]
    if grid is not None:
        lines += [grid_section(metrics, grid)]
    lines += ["## Figures", ""]
    if len(figures) < len(settings):
        lines += [f"Curves and weights for the best {len(figures)} of {len(settings)} settings on validation accuracy.", ""]
    for i in figures:
        s = settings[i]
        lines += [
            f"### {_setting_name(s)} (setting {s.get('index', i)}, {status(s)})",
            "",
            f"![loss and cost per epoch, setting {i}](curves_{i}.png)",
            "",
            f"![W rows as images, setting {i}](weights_{i}.png)",
            "",
        ]
    if gradcheck is not None:
        lines += [demote_headings(gradcheck).strip(), ""]
    elif gradcheck_missing is not None:
        lines += ["## Gradient check", "", f"`{gradcheck_missing}` was not found, so its table is not included.", ""]
    lines += ["## Reading the numbers", "", reading(metrics, choose_on="test" if grid is None else "val")]
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- writing


def _jsonable(obj):
    """Plain JSON types from numpy/jax scalars and arrays (``files.write_json`` writes NaN and inf as null)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, bool, int, float)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if hasattr(obj, "__array__"):
        return _jsonable(np.asarray(obj).tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"metrics: {type(obj).__name__} is not JSON serializable")


def _check_inputs(metrics: Mapping, W, b) -> tuple[np.ndarray, np.ndarray, list[str]]:
    settings = metrics.get("settings")
    if not settings:
        raise ValueError("metrics['settings'] must be a non-empty list")
    for i, s in enumerate(settings):
        missing = [k for k in ("lam", "eta", "test_accuracy", *HISTORY_KEYS) if k not in s]
        if missing:
            raise ValueError(f"metrics['settings'][{i}] lacks {missing}")
    S = len(settings)
    W, b = np.asarray(W), np.asarray(b)
    if W.ndim == 2 and S == 1:
        W = W[None]
    if b.ndim == 1 and S == 1:
        b = b[None]
    if W.ndim != 3 or W.shape[0] != S:
        raise ValueError(f"W must be (S, K, d) with S = {S} settings, got shape {W.shape}")
    if b.shape != W.shape[:2]:
        raise ValueError(f"b must be (S, K) = {W.shape[:2]}, got shape {b.shape}")
    labels = list(metrics.get("label_names") or (CIFAR10_LABELS if W.shape[1] == 10 else range(W.shape[1])))
    if len(labels) != W.shape[1]:
        raise ValueError(f"{len(labels)} label_names for K = {W.shape[1]} classes")
    return W, b, [str(x) for x in labels]


OWNED_FIGURES = ("curves_*.png", "weights_*.png", "heatmap_*.png")  # figures a rerun replaces as a set


def write_outputs(
    out_dir: str | os.PathLike,
    metrics: Mapping,
    W,
    b,
    *,
    gradcheck_md: str | os.PathLike | None = None,
    grid: Mapping | None = None,
) -> list[Path]:
    """Write a sweep's results into ``out_dir``; return the written paths in order.

    ``metrics``: ``{"config", "name", "command", "label_names", "dataset": {source, plan,
    n_train, n_val, n_test}, "devices": {platform, count}, "wall_time_s", "compile_time_s",
    "settings": [{index, lam, eta, test_accuracy (fraction), diverged, diverged_epoch
    (1-based or None), train_loss, train_cost, val_loss, val_cost, train_accuracy,
    val_accuracy (lists per epoch)}]}``. ``W`` (S, K, d) and ``b`` (S, K): the final params
    of each setting. ``gradcheck_md``: a gradient-check Markdown file to include (headings
    demoted) if it exists. ``grid``: ``{"lams", "etas"}`` when the settings are row-major
    over lams x etas; adds the heatmaps and a "Grid search" section.

    Files: metrics.json, params.npz (W, b, lams, etas), curves_<i>.png and weights_<i>.png
    for :func:`figure_settings`, heatmap_val_accuracy.png and heatmap_val_cost.png with a
    grid, and REPORT.md last. Inputs are checked before anything is written, and the files
    are written into a staging folder and moved into ``out_dir`` together: a failure leaves
    ``out_dir`` as it was, and figures of an older run that this run does not make are removed.
    In metrics.json a NaN or inf (a diverged setting) is null.
    """
    out = Path(out_dir)
    W, b, labels = _check_inputs(metrics, W, b)
    if grid is not None:
        check_grid(metrics, grid)
    settings = metrics["settings"]
    figures = figure_settings(metrics)
    gradcheck_text = gradcheck_missing = None
    if gradcheck_md is not None:
        p = Path(gradcheck_md)
        if p.is_file():
            gradcheck_text = p.read_text()
        else:
            gradcheck_missing = os.fspath(p)
    report_text = render_report(
        metrics, figures=figures, gradcheck=gradcheck_text, gradcheck_missing=gradcheck_missing, grid=grid
    )
    json_metrics = _jsonable(metrics)

    # everything is written into a staging folder and moved into out only when all of it is there
    with files.staged_folder(out, stale=OWNED_FIGURES, last="REPORT.md") as stage:
        written = [files.write_json(stage / "metrics.json", json_metrics)]
        with files.atomic_path(stage / "params.npz") as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a bare name
                np.savez_compressed(
                    f,
                    W=W,
                    b=b,
                    lams=np.array([float(s["lam"]) for s in settings]),
                    etas=np.array([float(s["eta"]) for s in settings]),
                )
        written.append(stage / "params.npz")
        for i in figures:
            s = settings[i]
            title = f"lam={_hp(s['lam'])}, eta={_hp(s['eta'])}"
            if is_diverged(s):
                title += f" ({status(s)})"
            written.append(plots.plot_curves(stage / f"curves_{i}.png", s, title))
            written.append(plots.plot_weights(stage / f"weights_{i}.png", W[i], labels, title))
        if grid is not None:
            lams, etas = check_grid(metrics, grid)
            best = best_setting(metrics, "val")
            cell = None if best is None else divmod(best, len(etas))
            written.append(plots.plot_heatmap(
                stage / "heatmap_val_accuracy.png", 100 * grid_values(metrics, grid, "val_accuracy"), lams, etas,
                "final validation accuracy (%), box: best", best=cell, fmt=".2f", label="validation accuracy (%)",
            ))
            written.append(plots.plot_heatmap(
                stage / "heatmap_val_cost.png", grid_values(metrics, grid, "val_cost"), lams, etas,
                "final validation cost, box: best validation accuracy", best=cell, fmt=".4g", label="validation cost",
                cmap="viridis_r", log=True,
            ))
        written.append(files.write_text(stage / "REPORT.md", report_text))
    return [out / p.name for p in written]
