"""report and plots on fake metrics built here: files, numbers in REPORT.md, the generated reading."""

import json
import math

import numpy as np
import pytest
from matplotlib import image as mpimg
from matplotlib.figure import Figure

from lincls import plots, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_EPOCHS = 5
K, D = 10, 3072


def make_setting(index, lam, eta, test, *, train_acc=0.45, val_acc=0.38, val_loss=None, n=N_EPOCHS):
    """One setting's metrics with smooth curves ending at the given final accuracies (fractions)."""
    t = np.linspace(0, 1, n)
    train_loss = 2.3 - 0.5 * t
    val_loss = np.asarray(val_loss if val_loss is not None else 2.3 - 0.4 * t, dtype=float)
    reg = 0.1 * lam
    return {
        "index": index,
        "lam": lam,
        "eta": eta,
        "test_accuracy": test,
        "diverged": False,
        "diverged_epoch": None,
        "train_loss": list(train_loss),
        "train_cost": list(train_loss + reg),
        "val_loss": list(val_loss),
        "val_cost": list(val_loss + reg),
        "train_accuracy": list(0.1 + (train_acc - 0.1) * t),
        "val_accuracy": list(0.1 + (val_acc - 0.1) * t),
    }


def make_metrics(settings, name="dd2424"):
    return {
        "config": {"n_epochs": N_EPOCHS, "n_batch": 100, "note": "fake"},
        "name": name,
        "command": f"python -m lincls.sweep --config configs/{name}.py",
        "label_names": list(report.CIFAR10_LABELS),
        "dataset": {"source": "folder", "plan": "dd2424", "n_train": 10000, "n_val": 10000, "n_test": 10000},
        "devices": {"platform": "cpu", "count": 1},
        "wall_time_s": 12.5,
        "compile_time_s": 3.25,
        "settings": settings,
    }


def course_metrics(name="dd2424", *, lam_helps=True):
    """The four course settings. lam_helps: raising lambda at eta=0.001 raises test accuracy and shrinks the gap."""
    acc0, acc1 = (0.3800, 0.3950) if lam_helps else (0.3950, 0.3800)
    gap0, gap1 = (0.08, 0.02) if lam_helps else (0.02, 0.08)
    return make_metrics([
        make_setting(0, 0.0, 0.1, 0.2816, train_acc=0.40, val_acc=0.28,
                     val_loss=[2.3, 1.9, 2.4, 1.8, 2.5]),  # zigzag: oscillates
        make_setting(1, 0.0, 0.001, acc0, train_acc=0.38 + gap0, val_acc=0.38),
        make_setting(2, 0.1, 0.001, acc1, train_acc=0.38 + gap1, val_acc=0.38),
        make_setting(3, 1.0, 0.001, 0.3757, train_acc=0.36, val_acc=0.355),
    ], name)


def random_params(rng, S):
    return rng.standard_normal((S, K, D)).astype(np.float32) * 0.01, rng.standard_normal((S, K)).astype(np.float32)


def no_tmp_files(out):
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def course_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    metrics = course_metrics()
    W, b = random_params(np.random.default_rng(0), 4)
    gc = out.parent / "gradcheck.md"
    gc.write_text("# Gradient check (float64)\n\n| n | d | max |\n|--:|--:|--:|\n| 10 | 10 | 1.2e-9 |\n")
    written = report.write_outputs(out, metrics, W, b, gradcheck_md=gc)
    return out, metrics, W, b, written


# ----------------------------------------------------------------------------- files


def test_files_are_complete_and_loadable(course_run):
    out, metrics, W, b, written = course_run
    names = {p.name for p in written}
    expected = {"metrics.json", "params.npz", "REPORT.md"} | {f"{k}_{i}.png" for k in ("curves", "weights") for i in range(4)}
    assert names == expected
    assert all(p.exists() for p in written) and written[-1].name == "REPORT.md"
    assert no_tmp_files(out)
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG_MAGIC
            img = mpimg.imread(p)
            assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
            assert p.stat().st_size < 200_000
    assert json.loads((out / "metrics.json").read_text()) == metrics
    with np.load(out / "params.npz") as z:
        np.testing.assert_array_equal(z["W"], W)
        np.testing.assert_array_equal(z["b"], b)
        np.testing.assert_array_equal(z["lams"], [0.0, 0.0, 0.1, 1.0])
        np.testing.assert_array_equal(z["etas"], [0.1, 0.001, 0.001, 0.001])


def test_report_has_table2_reference_figures_and_gradcheck(course_run):
    out, *_ = course_run
    text = (out / "REPORT.md").read_text()
    assert "`python -m lincls.sweep --config configs/dd2424.py`" in text
    assert "source `folder`, plan `dd2424`" in text and "cpu x 1" in text and "12.5 s" in text and "3.2 s" in text
    # index, lambda, eta, test %, course %, diff, final train loss, final val loss, status
    assert "| 0 | 0 | 0.1 | 28.16 | 28.16 | +0.00 | 1.8000 | 2.5000 | ok |" in text
    assert "| 1 | 0 | 0.001 | 38.00 | 38.69 | -0.69 | 1.8000 | 1.9000 | ok |" in text
    assert "| 2 | 0.1 | 0.001 | 39.50 | 39.08 | +0.42 | 1.8000 | 1.9000 | ok |" in text
    assert "| 3 | 1 | 0.001 | 37.57 | 37.57 | +0.00 |" in text
    for i in range(4):
        assert f"](curves_{i}.png)" in text and f"](weights_{i}.png)" in text
    assert "## Gradient check (float64)" in text and "\n# Gradient check" not in text
    assert "| 10 | 10 | 1.2e-9 |" in text
    assert text.index("## Table 2") < text.index("## Figures") < text.index("## Gradient") < text.index("## Reading")


def test_table2_reference_column_only_for_the_course_config():
    assert "course (%)" in report.table2(course_metrics("dd2424"))
    other = report.table2(course_metrics("mine"))
    assert "course (%)" not in other and "28.16 | 1.8000" in other


def test_missing_gradcheck_is_said(tmp_path):
    text = report.render_report(course_metrics(), gradcheck_missing="results/gradcheck.md")
    assert "`results/gradcheck.md` was not found" in text


# ----------------------------------------------------------------------------- reading


def test_reading_names_winner_and_lambda_effect():
    text = report.reading(course_metrics(lam_helps=True))
    assert "The best test accuracy is 39.50%, for lambda=0.1, eta=0.001, 1.50 points ahead of lambda=0, eta=0.001" in text
    assert ("raising lambda from 0 to 0.1 gave higher test accuracy (39.50% vs 38.00%, +1.50 points) and a smaller "
            "train-val accuracy gap (2.00 vs 8.00 points), i.e. less overfitting") in text
    # the next pair (0.1 -> 1): lower accuracy, gap 2.00 -> 0.50 points
    assert "raising lambda from 0.1 to 1 gave lower test accuracy (37.57% vs 39.50%, -1.93 points) and a smaller" in text


def test_reading_says_the_opposite_for_opposite_numbers():
    text = report.reading(course_metrics(lam_helps=False))
    assert "The best test accuracy is 39.50%, for lambda=0, eta=0.001" in text
    assert ("raising lambda from 0 to 0.1 gave lower test accuracy (38.00% vs 39.50%, -1.50 points) and a larger "
            "train-val accuracy gap (8.00 vs 2.00 points), i.e. more overfitting") in text
    assert "a smaller train-val accuracy gap (2.00 vs 8.00" not in text


def test_reading_eta_effect_and_oscillation():
    text = report.reading(course_metrics())
    assert "At lambda=0, raising eta from 0.001 to 0.1 gave lower test accuracy (28.16% vs 38.00%, -9.84 points)" in text
    assert "The validation loss of lambda=0, eta=0.1 oscillates: it rose in 2 of 4 epoch steps" in text
    assert "eta=0.001 oscillates" not in text
    smooth = course_metrics()
    smooth["settings"][0]["val_loss"] = [2.3, 2.1, 2.0, 1.95, 1.93]
    text = report.reading(smooth)
    assert "oscillates:" not in text and "No setting's validation loss oscillates" in text
    assert "lambda=0, eta=0.1 rose in 0 of 4 epoch steps" in text


def test_reading_summarises_many_lambdas_per_eta():
    accs, gaps = [0.30, 0.33, 0.31, 0.32], [0.15, 0.10, 0.06, 0.03]
    settings = [make_setting(i, lam, 0.01, a, train_acc=0.35 + g, val_acc=0.35)
                for i, (lam, a, g) in enumerate(zip([0.0, 1e-4, 1e-3, 1e-2], accs, gaps))]
    text = report.reading(make_metrics(settings, "sweep"))
    assert ("At eta=0.01, over 4 values of lambda from 0 to 0.01, test accuracy ranged from 30.00% (lambda=0) to "
            "33.00% (lambda=0.0001); the train-val accuracy gap was 15.00 points at the smallest lambda and 3.00 at "
            "the largest (smaller at the largest, i.e. less overfitting).") in text
    assert "say nothing about the effect of eta" in text


def test_oscillation_measure():
    mono = report.oscillation([2.3, 2.0, 1.9, 1.85])
    assert (mono["rises"], mono["turns"], mono["oscillates"]) == (0, 0, False)
    assert mono["tv_ratio"] == pytest.approx(1.0)
    zig = report.oscillation([2.3, 1.9, 2.4, 1.8, 2.5, 1.7])
    assert (zig["rises"], zig["steps"], zig["turns"], zig["oscillates"]) == (2, 5, 4, True)
    assert zig["tv_ratio"] == pytest.approx((0.4 + 0.5 + 0.6 + 0.7 + 0.8) / 0.6)
    u = report.oscillation([2.3, 1.9, 1.7, 1.8, 1.9])  # overfitting: one turn, not an oscillation
    assert (u["turns"], u["oscillates"]) == (1, False)
    cut = report.oscillation([2.3, 2.0, float("nan"), 9.0])  # only the finite prefix counts
    assert cut["steps"] == 1 and cut["net_decrease"] == pytest.approx(0.3)


# ----------------------------------------------------------------------------- divergence


def test_diverged_setting_is_reported_and_plotted(tmp_path):
    metrics = course_metrics()
    s = metrics["settings"][0]
    for key in report.HISTORY_KEYS:
        s[key][2:] = [math.nan] * (N_EPOCHS - 2)
    s["train_loss"][1] = 1e9  # blowing up before the NaN
    s.update(test_accuracy=0.1, diverged=True, diverged_epoch=3)
    W, b = random_params(np.random.default_rng(1), 4)
    W[0, :5] = np.nan
    b[0] = np.inf
    written = report.write_outputs(tmp_path, metrics, W, b)
    assert {"curves_0.png", "weights_0.png", "REPORT.md"} <= {p.name for p in written}
    assert mpimg.imread(tmp_path / "weights_0.png").ndim == 3
    text = (tmp_path / "REPORT.md").read_text()
    assert "| 0 | 0 | 0.1 | 10.00 | 28.16 | -18.16 | nan | nan | diverged at epoch 3 |" in text
    reading = report.reading(metrics)
    assert "1 setting diverged" in reading and "lambda=0, eta=0.1 (diverged at epoch 3)" in reading
    assert "oscillates:" not in reading  # a diverged curve is not called an oscillation
    assert "raising eta" not in reading  # nothing left to compare eta with
    loaded = json.loads((tmp_path / "metrics.json").read_text())
    assert loaded["settings"][0]["val_loss"][-1] is None  # NaN is null: metrics.json is strict JSON
    assert report.best_setting(metrics, "test") == 2


# ----------------------------------------------------------------------------- grid search


def grid_metrics():
    """3 lambdas x 2 etas; setting 3 is best on validation, setting 5 on test."""
    lams, etas = [0.0, 0.01, 0.1], [0.001, 0.01]
    val = [0.30, 0.31, 0.33, 0.40, 0.35, 0.36]
    test = [0.30, 0.31, 0.33, 0.37, 0.35, 0.41]
    settings = [
        make_setting(i * 2 + j, lam, eta, test[i * 2 + j], val_acc=val[i * 2 + j])
        for i, lam in enumerate(lams) for j, eta in enumerate(etas)
    ]
    return make_metrics(settings, "grid"), {"lams": lams, "etas": etas}


def test_grid_writes_heatmaps_and_picks_on_validation(tmp_path, monkeypatch):
    metrics, grid = grid_metrics()
    assert report.best_setting(metrics) == 3 and report.best_setting(metrics, "test") == 5
    np.testing.assert_allclose(report.grid_values(metrics, grid, "val_accuracy")[1], [0.33, 0.40])
    monkeypatch.setattr(report, "ALL_FIGURES_UP_TO", 2)  # fewer images: figures for the best 4 only
    W, b = random_params(np.random.default_rng(2), 6)
    written = {p.name for p in report.write_outputs(tmp_path, metrics, W, b, grid=grid)}
    assert {"heatmap_val_accuracy.png", "heatmap_val_cost.png"} <= written
    assert {p for p in written if p.startswith("curves_")} == {f"curves_{i}.png" for i in (2, 3, 4, 5)}
    for name in ("heatmap_val_accuracy.png", "heatmap_val_cost.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    text = (tmp_path / "REPORT.md").read_text()
    assert "## Grid search" in text and "](heatmap_val_accuracy.png)" in text
    assert "Chosen on validation accuracy alone: **lambda=0.01, eta=0.01** (validation 40.00%), whose test accuracy is **37.00%**" in text
    assert "| 1 | 3 | 0.01 | 0.01 | 40.00 |" in text and "| 2 | 5 | 0.1 | 0.01 | 36.00 |" in text
    assert "Curves and weights for the best 4 of 6 settings" in text
    reading = text[text.index("## Reading the numbers"):]
    assert reading.split("\n\n")[1] == (
        "Chosen on validation accuracy, the best setting is lambda=0.01, eta=0.01: validation 40.00%, test 37.00%. "
        "The highest test accuracy in the grid, 41.00% for lambda=0.1, eta=0.01, describes the grid but cannot "
        "choose a setting: picked on the test set, its accuracy would be an optimistic estimate."
    )
    assert "The best test accuracy is" not in text  # a grid search is never read as a choice on test


def test_grid_with_wrong_order_is_refused_before_writing(tmp_path):
    metrics, grid = grid_metrics()
    with pytest.raises(ValueError, match="row-major"):
        report.write_outputs(tmp_path, metrics, *random_params(np.random.default_rng(3), 6),
                             grid={"lams": grid["lams"], "etas": grid["etas"][::-1]})
    with pytest.raises(ValueError, match="W must be"):
        report.write_outputs(tmp_path, metrics, np.zeros((5, K, D)), np.zeros((5, K)))
    assert list(tmp_path.iterdir()) == []


def test_many_settings_get_figures_for_the_best_four_only():
    settings = [make_setting(i, 0.0, 0.001, 0.3, val_acc=v) for i, v in enumerate([.30, .35, .31, .39, .36, .30, .30, .37, .30, .38])]
    assert report.figure_settings(make_metrics(settings, "many")) == [3, 4, 7, 9]


def test_weight_image_reads_channel_first_planes_and_rescales_each_image():
    row = np.r_[np.zeros(1024), np.ones(1024), 2 * np.ones(1024)]  # R plane 0, G plane 1, B plane 2
    row[5] = -2.0  # pixel (0, 5) of the red plane: the image's minimum
    img = plots.weight_image(row)
    assert img.shape == (32, 32, 3)
    np.testing.assert_allclose(img[0, 5], [0.0, 0.75, 1.0])  # (w - min) / (max - min) with min -2, max 2
    np.testing.assert_allclose(img[31, 31], [0.5, 0.75, 1.0])
    row2 = np.arange(3072.0)
    img2 = plots.weight_image(row2)
    assert img2[0, 1, 0] > img2[0, 0, 0] and img2[1, 0, 0] - img2[0, 0, 0] == pytest.approx(32 / 3071)  # row-major
    np.testing.assert_allclose(plots.weight_image(10 * row2), img2)  # its own min and max, whatever the scale
    assert not plots.weight_image(np.full(3072, 7.0)).any()


# ----------------------------------------------------------------------------- atomic writes


def test_json_results_are_strict_json_with_null_for_nan_and_inf(tmp_path):
    from lincls import files

    path = files.write_json(tmp_path / "r.json", {"a": [math.nan, 1.5, (math.inf, -math.inf)], "b": {"c": 2}})
    assert path.read_text().split() == ["{", '"a":', "[", "null,", "1.5,", "[", "null,", "null", "]", "],", '"b":', "{", '"c":', "2", "}", "}"]


def test_failing_plot_leaves_no_partial_files(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("plot failed")

    first = report.write_outputs(tmp_path, course_metrics(), *random_params(np.random.default_rng(3), 4))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(plots, "plot_weights", boom)
    changed = course_metrics()
    changed["name"] = "changed"
    with pytest.raises(RuntimeError, match="plot failed"):
        report.write_outputs(tmp_path, changed, *random_params(np.random.default_rng(4), 4))
    assert no_tmp_files(tmp_path) and not list(tmp_path.glob(".staging*"))
    # the earlier run's files are all there, byte for byte: nothing of the failed run got in
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before and len(before) == len(first)


def test_a_rerun_removes_the_figures_it_does_not_make(tmp_path):
    vals = [.30, .35, .31, .39, .36, .30, .30, .37, .30, .38]  # best four on validation: 3, 9, 7, 4
    settings = [make_setting(i, 0.0, 0.001, 0.3, val_acc=v) for i, v in enumerate(vals)]
    report.write_outputs(tmp_path, make_metrics(settings, "many"), *random_params(np.random.default_rng(6), 10))
    assert sorted(p.name for p in tmp_path.glob("curves_*.png")) == ["curves_3.png", "curves_4.png", "curves_7.png", "curves_9.png"]
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    settings[0] = make_setting(0, 0.0, 0.001, 0.3, val_acc=0.5)  # now 0, 3, 9, 7: setting 4 drops out
    report.write_outputs(tmp_path, make_metrics(settings, "many"), *random_params(np.random.default_rng(6), 10))
    assert sorted(p.name for p in tmp_path.glob("curves_*.png")) == ["curves_0.png", "curves_3.png", "curves_7.png", "curves_9.png"]
    assert sorted(p.name for p in tmp_path.glob("weights_*.png")) == ["weights_0.png", "weights_3.png", "weights_7.png", "weights_9.png"]
    assert keep.read_text() == "mine"  # files the report does not own are left alone


def test_failing_savefig_leaves_no_half_written_png(tmp_path, monkeypatch):
    def half_write(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(PNG_MAGIC[:4])
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_write)
    with pytest.raises(OSError, match="disk full"):
        report.write_outputs(tmp_path, course_metrics(), *random_params(np.random.default_rng(5), 4))
    assert no_tmp_files(tmp_path)
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "REPORT.md").exists()
