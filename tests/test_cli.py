"""The two commands end to end on a tiny generated CIFAR-10 folder."""

import json
from pathlib import Path

import numpy as np
import pytest

from fake_cifar import write_fake_cifar
from lincls import gradcheck, sweep


@pytest.fixture(scope="module")
def fake_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "cifar-10-batches-py"
    write_fake_cifar(folder, n_per_batch=60, seed=1)
    return folder


def test_sweep_command_writes_the_report(fake_folder, tmp_path, capsys):
    out = tmp_path / "run"
    rc = sweep.main([
        "--config", "configs/dd2424.py", "--data-dir", str(fake_folder), "--out", str(out),
        "--set", "n_epochs=3", "--set", "n_batch=20", "--gradcheck-md", str(tmp_path / "none.md"),
    ])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "epoch   3/3" in printed and "setting 3: lam=1 eta=0.001" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert [(s["lam"], s["eta"]) for s in metrics["settings"]] == [(0, 0.1), (0, 0.001), (0.1, 0.001), (1, 0.001)]
    assert all(len(s["val_cost"]) == 3 and 0 <= s["test_accuracy"] <= 1 for s in metrics["settings"])
    assert metrics["config"]["n_epochs"] == 3 and metrics["dataset"]["n_train"] == 60
    assert metrics["compile_time_s"] > 0 and metrics["wall_time_s"] > 0
    params = np.load(out / "params.npz")
    assert params["W"].shape == (4, 10, 3072)
    report = (out / "REPORT.md").read_text()
    assert "Table 2" in report and "curves_0.png" in report
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "lams=-1,0,0,0"], "field 'lams' must be >= 0"),
        (["--set", "etas=0.1,-0.001,0.001,0.001"], "field 'etas' must be > 0"),
        (["--set", "n_batch=500"], "field 'n_batch' = 500 is larger than the training set (60 rows)"),
        (["--set", "n_epoch=3"], "unknown field 'n_epoch'"),
        (["--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar does not exist"),
    ],
)
def test_sweep_command_refuses_bad_input(fake_folder, tmp_path, capsys, args, message):
    base = ["--config", "configs/dd2424.py", "--data-dir", str(fake_folder), "--out", str(tmp_path / "o")]
    assert sweep.main(base + args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_sweep_command_writes_to_results_of_the_config_name_by_default(fake_folder, tmp_path, monkeypatch, capsys):
    config = Path("configs/dd2424.py").resolve()
    monkeypatch.chdir(tmp_path)
    rc = sweep.main(["--config", str(config), "--data-dir", str(fake_folder), "--set", "n_epochs=1",
                     "--set", "n_batch=25", "--set", "progress=false", "--gradcheck-md", ""])  # fmt: skip
    assert rc == 0
    assert json.loads((tmp_path / "results" / "dd2424" / "metrics.json").read_text())["name"] == "dd2424"
    assert "note: n_batch=25 leaves 10 of the 60 training rows out of every epoch (always the last ones)" in capsys.readouterr().out


def test_gradcheck_command(fake_folder, tmp_path):
    rc = gradcheck.main(["--data-dir", str(fake_folder), "--out", str(tmp_path), "--row", "10,10,0", "--row", "20,30,0.5"])
    assert rc == 0
    rows = json.loads((tmp_path / "gradcheck.json").read_text())
    assert [(r["n"], r["d"], r["lam"]) for r in rows] == [(10, 10, 0.0), (20, 30, 0.5)]
    assert all(r["dtype"] == "float64" and r["hand_vs_autodiff"]["W"]["max"] < 1e-10 for r in rows)
    assert "| 20 | 30 | 0.5 |" in (tmp_path / "gradcheck.md").read_text()


def test_gradcheck_command_refuses_rows_larger_than_the_data(fake_folder, tmp_path, capsys):
    assert gradcheck.main(["--data-dir", str(fake_folder), "--out", str(tmp_path), "--row", "100,10,0"]) == 2
    assert "more than the 60 images" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gradcheck.main(["--row", "10,10"])


def test_grid_with_refine_writes_both_reports(fake_folder, tmp_path, capsys):
    out = tmp_path / "grid"
    rc = sweep.main([
        "--config", "configs/grid.py", "--data-dir", str(fake_folder), "--out", str(out),
        "--set", "lams=0,0.01,0.1", "--set", "etas=0.001,0.01", "--set", "refine=true",
        "--set", "n_epochs=2", "--set", "n_batch=30",
    ])  # fmt: skip
    assert rc == 0
    assert "refine: a 3 x 2 grid around" in capsys.readouterr().out
    coarse = json.loads((out / "metrics.json").read_text())
    fine = json.loads((out / "refine" / "metrics.json").read_text())
    assert len(coarse["settings"]) == 6 and len(fine["settings"]) == 6
    assert fine["name"] == "grid_refine" and (out / "heatmap_val_accuracy.png").exists()
    assert (out / "refine" / "heatmap_val_accuracy.png").exists()
