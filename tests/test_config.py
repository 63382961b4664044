"""Config files, --set overrides and validation messages."""

import numpy as np
import pytest

from lincls import config as config_lib
from lincls.config import Config, ConfigError


def test_dd2424_config_is_the_course_experiments():
    cfg = config_lib.load_config_file("configs/dd2424.py")
    assert cfg.settings == [(0.0, 0.1), (0.0, 0.001), (0.1, 0.001), (1.0, 0.001)]
    assert (cfg.n_batch, cfg.n_epochs, cfg.seed, cfg.share_init, cfg.shuffle) == (100, 40, 400, True, False)
    assert config_lib.validate(cfg, n_train=10000) is cfg


def test_config_docstring_holds_the_command():
    import importlib.util

    spec = importlib.util.spec_from_file_location("c", "configs/dd2424.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "python -m lincls.sweep --config configs/dd2424.py" in module.__doc__


def test_grid_settings_are_row_major():
    cfg = Config(lams=(0.0, 1.0), etas=(0.1, 0.2, 0.3), grid=True)
    assert cfg.settings == [(0.0, 0.1), (0.0, 0.2), (0.0, 0.3), (1.0, 0.1), (1.0, 0.2), (1.0, 0.3)]


def test_overrides_parse_by_field_type():
    cfg = config_lib.apply_overrides(Config(), ["n_epochs=5", "lams=0,0.5", "etas=0.1,0.2", "shuffle=true", "grad=autodiff"])
    assert (cfg.n_epochs, cfg.lams, cfg.etas, cfg.shuffle, cfg.grad) == (5, (0.0, 0.5), (0.1, 0.2), True, "autodiff")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["n_epoch=5"], r"unknown field 'n_epoch'; known fields: name, lams"),
        (["n_epochs"], r"write overrides as field=value"),
        (["n_epochs=five"], r"field 'n_epochs' expects int; cannot read 'five'"),
        (["shuffle=maybe"], r"field 'shuffle' expects bool"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.apply_overrides(Config(), overrides)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(lams=(-0.1,), etas=(0.1,)), r"configs/x.py: field 'lams' must be >= 0"),
        (dict(lams=(0.0,), etas=(-0.1,)), r"field 'etas' must be > 0; got \[-0.1\]"),
        (dict(lams=(0.0,), etas=(0.0,)), r"field 'etas' must be > 0"),
        (dict(lams=(0.0, 1.0), etas=(0.1,)), r"field 'etas' has 1 values but lams has 2; pair them one to one or set grid=true"),
        (dict(n_batch=0), r"field 'n_batch' must be >= 1"),
        (dict(n_epochs=0), r"field 'n_epochs' must be >= 1"),
        (dict(grad="numeric"), r"field 'grad' must be one of \('hand', 'autodiff'\)"),
        (dict(plan="everything"), r"field 'plan' must be one of"),
        (dict(lams=()), r"field 'lams' is empty"),
        (dict(lams=(float("nan"), 0.0), etas=(0.1, 0.1)), r"field 'lams' must be finite numbers; got \[nan, 0.0\]"),
        (dict(lams=(0.0,), etas=(float("inf"),)), r"field 'etas' must be finite numbers; got \[inf\]"),
        (dict(init_std=float("nan")), r"field 'init_std' must be finite numbers"),
    ],
)
def test_validation_messages(fields, message):
    with pytest.raises(ConfigError, match=message):
        config_lib.validate(Config(**fields), where="configs/x.py")


def test_n_batch_larger_than_training_set():
    with pytest.raises(ConfigError, match=r"field 'n_batch' = 500 is larger than the training set \(200 rows\)"):
        config_lib.validate(Config(n_batch=500), n_train=200)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config_lib.load_config_file(tmp_path / "nope.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match=r"empty.py: defines no get_config\(\)"):
        config_lib.load_config_file(tmp_path / "empty.py")
    (tmp_path / "dict.py").write_text("def get_config():\n    return {'n_epochs': 3}\n")
    with pytest.raises(ConfigError, match=r"get_config\(\) returned dict"):
        config_lib.load_config_file(tmp_path / "dict.py")


def test_refine_needs_a_grid():
    with pytest.raises(ConfigError, match=r"field 'refine' needs grid=true"):
        config_lib.validate(Config(refine=True))


def test_span_around_log_and_linear():
    assert config_lib.span_around((0.001, 0.01, 0.1), 1, 3) == (0.001, 0.01, 0.1)
    np.testing.assert_allclose(config_lib.span_around((0.001, 0.01, 0.1), 2, 3), (0.01, 0.0316228, 0.1), rtol=1e-9)
    assert config_lib.span_around((0.0, 0.1, 1.0), 0, 3) == (0.0, 0.05, 0.1)  # from 0: evenly spaced
    assert config_lib.span_around((0.5,), 0, 4) == (0.5,)


def test_refined_grid_centres_on_the_best_cell():
    coarse = Config(name="g", lams=(0.0, 0.01, 0.1, 1.0), etas=(0.001, 0.01, 0.1), grid=True, refine=True)
    fine = config_lib.refined(coarse, best=2 * 3 + 1)  # lam=0.1, eta=0.01
    assert fine.name == "g_refine" and not fine.refine and fine.grid
    assert (fine.lams[0], fine.lams[-1], len(fine.lams)) == (0.01, 1.0, 4)
    assert (fine.etas[0], fine.etas[-1], len(fine.etas)) == (0.001, 0.1, 3)
    assert min(abs(np.log10(fine.lams) - np.log10(0.1))) < 0.35
