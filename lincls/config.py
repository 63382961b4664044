"""Sweep configs: a plain ``configs/*.py`` with ``get_config()``, ``--set`` overrides, validation.

A config file (in the style of flax and big_vision) is a Python module whose
``get_config()`` returns a :class:`Config`; its docstring holds the command that runs
it. ``--set field=value`` overrides any field; values are parsed by the field's type
(numbers, ``true``/``false``, comma-separated tuples, ``none``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np


class ConfigError(ValueError):
    """A config that cannot run; the message names the file, the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a sweep needs. ``lams`` and ``etas`` pair up one to one, or with
    ``grid=True`` every lam meets every eta (settings in row-major order, lam first)."""

    name: str = "sweep"
    lams: tuple[float, ...] = (0.0,)
    etas: tuple[float, ...] = (0.001,)
    grid: bool = False
    n_batch: int = 100
    n_epochs: int = 40
    seed: int = 400  # jax.random.PRNGKey(seed) draws the initial params
    share_init: bool = True  # every setting starts from the same params; else one key per setting
    init_std: float = 0.01
    grad: str = "hand"  # "hand" or "autodiff"
    shuffle: bool = False  # the course's base version takes batches in order
    plan: str = "dd2424"  # data split plan: "dd2424" or "all"
    n_val: int = 1000  # validation rows of the "all" plan
    devices: int = 0  # devices on the settings axis of the mesh; 0 = every device
    refine: bool = False  # grid only: then a second grid of the same size around the best cell on validation
    progress: bool = True  # a line per epoch while training

    @property
    def settings(self) -> list[tuple[float, float]]:
        """The (lam, eta) pairs, in the order they are trained and reported."""
        if self.grid:
            return list(itertools.product(self.lams, self.etas))
        return list(zip(self.lams, self.etas))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(Config)}
CHOICES = {"grad": ("hand", "autodiff"), "plan": ("dd2424", "all")}


def load_config_file(path: str | os.PathLike) -> Config:
    """Import ``path`` and call its ``get_config()``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; configs live in configs/, e.g. configs/dd2424.py")
    spec = importlib.util.spec_from_file_location(f"lincls_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config(); a config file returns a lincls.config.Config from get_config()")
    config = module.get_config()
    if not isinstance(config, Config):
        raise ConfigError(f"{path}: get_config() returned {type(config).__name__}, not a lincls.config.Config")
    return config


def _parse_value(field: dataclasses.Field, text: str, where: str):
    kind = str(field.type)
    try:
        if kind.startswith("tuple"):
            return tuple(float(v) for v in text.split(",") if v.strip())
        if kind == "bool":
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"{where}: field {field.name!r} expects {kind}; cannot read {text!r}") from None


def apply_overrides(config: Config, overrides: Sequence[str], where: str = "--set") -> Config:
    """``["n_epochs=5", "lams=0,0.1"]`` -> a new Config; unknown fields are an error."""
    changes = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{where} {item!r}: write overrides as field=value, e.g. --set n_epochs=5")
        name, text = item.split("=", 1)
        name = name.strip()
        if name not in FIELDS:
            known = ", ".join(FIELDS)
            raise ConfigError(f"{where} {item!r}: unknown field {name!r}; known fields: {known}")
        changes[name] = _parse_value(FIELDS[name], text.strip(), f"{where} {item!r}")
    return dataclasses.replace(config, **changes)


def validate(config: Config, n_train: int | None = None, where: str = "config") -> Config:
    """Raise ConfigError naming the field and the fix; return the config unchanged."""

    def fail(field, message):
        raise ConfigError(f"{where}: field {field!r} {message}")

    if not config.lams or not config.etas:
        fail("lams" if not config.lams else "etas", "is empty; give at least one value, e.g. --set lams=0,0.1")
    if not config.grid and len(config.lams) != len(config.etas):
        fail("etas", f"has {len(config.etas)} values but lams has {len(config.lams)}; pair them one to one or set grid=true")
    for name in ("lams", "etas", "init_std"):
        values = np.atleast_1d(np.asarray(getattr(config, name), dtype=float))
        if not np.isfinite(values).all():
            fail(name, f"must be finite numbers; got {values.tolist()}")
    if any(lam < 0 for lam in config.lams):
        fail("lams", f"must be >= 0 (a negative lambda rewards large weights); got {list(config.lams)}")
    if any(eta <= 0 for eta in config.etas):
        fail("etas", f"must be > 0; got {list(config.etas)}")
    for name in ("n_batch", "n_epochs"):
        if getattr(config, name) < 1:
            fail(name, f"must be >= 1; got {getattr(config, name)}")
    if n_train is not None and config.n_batch > n_train:
        fail("n_batch", f"= {config.n_batch} is larger than the training set ({n_train} rows); use n_batch <= {n_train}")
    if config.init_std < 0:
        fail("init_std", f"must be >= 0; got {config.init_std}")
    if config.devices < 0:
        fail("devices", f"must be >= 0 (0 = every device); got {config.devices}")
    if config.refine and not config.grid:
        fail("refine", "needs grid=true: it refines a lambda x eta grid around its best cell")
    for name, allowed in CHOICES.items():
        if getattr(config, name) not in allowed:
            fail(name, f"must be one of {allowed}; got {getattr(config, name)!r}")
    return config


def span_around(values: Sequence[float], i: int, n: int) -> tuple[float, ...]:
    """``n`` values from the neighbour below ``values[i]`` to the one above (sorted values),
    log-spaced when both ends are positive, else evenly spaced."""
    ordered = sorted(values)
    k = ordered.index(values[i])
    lo, hi = ordered[max(k - 1, 0)], ordered[min(k + 1, len(ordered) - 1)]
    if n == 1 or lo == hi:
        return (float(values[i]),)
    points = np.geomspace(lo, hi, n) if lo > 0 else np.linspace(lo, hi, n)
    return tuple(float(f"{v:.6g}") for v in points)  # 6 significant digits: readable in reports


def refined(config: Config, best: int) -> Config:
    """The coarse-to-fine step: a grid of the same size spanning the neighbours of setting
    ``best`` (row-major index into ``config.settings``), named ``<name>_refine``."""
    i, j = divmod(best, len(config.etas))
    return dataclasses.replace(
        config,
        name=f"{config.name}_refine",
        lams=span_around(config.lams, i, len(config.lams)),
        etas=span_around(config.etas, j, len(config.etas)),
        refine=False,
    )
