"""CIFAR-10 for lincls: sources, split plans, standardization, and the ``Dataset``.

A *source* yields the raw batches of the original release, in their original order:
``{"data_batch_1": (X uint8 (n, 3072), y int (n,)), ..., "test_batch": ...}`` with
each 3072-row channel-first (R plane, G plane, B plane of 32x32, row-major). A *split
plan* says which rows of which batches are train, val and test. ``load_dataset`` puts
the two together, scales pixels to [0, 1] and standardizes every split with the mean
and std of the *training* rows only.

Sources:

* the extracted ``cifar-10-batches-py`` folder (``--data-dir`` or ``$LINCLS_DATA_DIR``),
  read with a restricted unpickler that never runs code;
* tensorflow-datasets ``cifar10`` through ``tfds.data_source``, sorted on ``id``
  (see :mod:`lincls.sources`);
* the original ``cifar-10-python.tar.gz``, downloaded once into a cache folder and
  checked against its md5 (see :mod:`lincls.sources`).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
from pathlib import Path
from typing import Mapping

import numpy as np

N_FEATURES = 3072  # 3 x 32 x 32, channel-first
N_CLASSES = 10
BATCH_NAMES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
DATA_DIR_ENV = "LINCLS_DATA_DIR"
CIFAR10_LABEL_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
GET_DATA_HINT = (
    "Get CIFAR-10 from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, extract it, "
    f"and pass the cifar-10-batches-py folder with --data-dir DIR or ${DATA_DIR_ENV}=DIR"
)

RawBatches = Mapping[str, tuple[np.ndarray, np.ndarray]]


class DataError(ValueError):
    """Input data that cannot be used; the message names the file and the fix."""


# ----------------------------------------------------------------------------- the dataset


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Standardized CIFAR-10 splits. Arrays are float32 (n, 3072) and int32 (n,).

    ``mean`` and ``std`` (3072,) are the training statistics of the [0, 1] pixels:
    ``pixels = X * std + mean`` maps any row back for display (:meth:`to_images`).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    label_names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    plan: str
    source: str

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def to_images(self, X: np.ndarray) -> np.ndarray:
        """Standardized rows (n, 3072) -> (n, 32, 32, 3) pixels in [0, 1] (HWC)."""
        return unstandardize(np.asarray(X), self.mean, self.std).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def standardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((X - mean) / std).astype(np.float32)


def unstandardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return X * std + mean


def training_statistics(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of [0, 1] pixels; a constant dimension gets std 1."""
    X = X.astype(np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


# ----------------------------------------------------------------------------- split plans


def split_plan(plan: str, n_val: int = 1000) -> dict[str, list[tuple[str, slice]]]:
    """Which rows of which batches make train, val and test.

    ``dd2424``: train = data_batch_1, val = data_batch_2, test = test_batch.
    ``all``: train = data_batch_1..5 less the last ``n_val`` rows of data_batch_5,
    val = those rows, test = test_batch.
    """
    everything = slice(None)
    if plan == "dd2424":
        return {
            "train": [("data_batch_1", everything)],
            "val": [("data_batch_2", everything)],
            "test": [("test_batch", everything)],
        }
    if plan == "all":
        if n_val <= 0:
            raise DataError(f"n_val must be positive for the 'all' plan; got {n_val}")
        return {
            "train": [(f"data_batch_{i}", everything) for i in range(1, 5)]
            + [("data_batch_5", slice(None, -n_val))],
            "val": [("data_batch_5", slice(-n_val, None))],
            "test": [("test_batch", everything)],
        }
    raise DataError(f"unknown split plan {plan!r}; use 'dd2424' (the course split) or 'all'")


def batches_needed(plan: str) -> tuple[str, ...]:
    parts = split_plan(plan)
    return tuple(dict.fromkeys(name for rows in parts.values() for name, _ in rows))


def build_dataset(
    raw: RawBatches,
    plan: str = "dd2424",
    n_val: int = 1000,
    label_names: tuple[str, ...] = CIFAR10_LABEL_NAMES,
    source: str = "",
) -> Dataset:
    """Raw uint8 batches -> standardized :class:`Dataset` for ``plan`` (pure, no I/O)."""
    parts = {}
    for split, rows in split_plan(plan, n_val).items():
        Xs, ys = [], []
        for name, sl in rows:
            if name not in raw:
                raise DataError(f"split plan {plan!r} needs batch {name!r}, which the source lacks")
            X, y = raw[name]
            Xs.append(X[sl])
            ys.append(y[sl])
        parts[split] = (np.concatenate(Xs), np.concatenate(ys))
    if plan == "all" and len(parts["val"][0]) != n_val:
        raise DataError(f"data_batch_5 has {len(raw['data_batch_5'][0])} rows, fewer than n_val={n_val}")
    if len(parts["train"][0]) == 0:
        raise DataError(f"split plan {plan!r} leaves no training rows")
    X_train = parts["train"][0].astype(np.float32) / 255.0
    mean, std = training_statistics(X_train)
    scaled = {s: standardize(X.astype(np.float32) / 255.0, mean, std) for s, (X, _) in parts.items()}
    return Dataset(
        X_train=scaled["train"], y_train=parts["train"][1].astype(np.int32),
        X_val=scaled["val"], y_val=parts["val"][1].astype(np.int32),
        X_test=scaled["test"], y_test=parts["test"][1].astype(np.int32),
        label_names=tuple(label_names), mean=mean, std=std, plan=plan, source=source,
    )  # fmt: skip


# ----------------------------------------------------------------------------- python batches


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only what the CIFAR-10 batch format needs; any other global is refused.

    Plain containers (dict, list, bytes, str, int) are pickle opcodes and need no global;
    the one numpy array per batch is rebuilt through ``_reconstruct``, ``ndarray`` and
    ``dtype``. Nothing else can be looked up, so no payload can name ``os.system``.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: not part of the CIFAR-10 batch format")
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own _reconstruct, wherever it lives
        return getattr(np, name)


def safe_unpickle(data: bytes) -> object:
    """Unpickle bytes with :class:`_RestrictedUnpickler` (latin-1 for python 2 pickles)."""
    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def _key(d: dict, name: str):
    """A pickled dict's entry, whether its keys are bytes (python 2 era) or str."""
    if name.encode() in d:
        return d[name.encode()]
    return d.get(name)


def parse_batch(data: bytes, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Bytes of one batch file -> (X uint8 (n, 3072), y int64 (n,)); DataError names ``path``."""
    try:
        obj = safe_unpickle(data)
    except pickle.UnpicklingError as e:
        if "refused global" in str(e):
            raise DataError(f"{path}: {e}. The file is not a CIFAR-10 batch; {GET_DATA_HINT}") from None
        raise DataError(f"{path}: corrupt pickle ({e}); {GET_DATA_HINT}") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:
        raise DataError(f"{path}: truncated or corrupt pickle ({type(e).__name__}: {e}); {GET_DATA_HINT}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict with 'data' and 'labels'; got {type(obj).__name__}")
    X, y = _key(obj, "data"), _key(obj, "labels")
    if X is None or y is None:
        keys = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in obj)
        raise DataError(f"{path}: field 'data' or 'labels' is missing; the dict has {keys}")
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != N_FEATURES:
        desc = f"{X.dtype} array of shape {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise DataError(f"{path}: field 'data' must be a uint8 array of shape (n, {N_FEATURES}); got {desc}")
    try:
        y = np.asarray(y)
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: field 'labels' must be a list of ints; {e}") from None
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: field 'labels' must be a list of ints; got {y.dtype} of shape {y.shape}")
    if len(y) != len(X):
        raise DataError(f"{path}: field 'labels' has {len(y)} entries but field 'data' has {len(X)} rows")
    if len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
        raise DataError(f"{path}: field 'labels' must lie in 0..{N_CLASSES - 1}; found {y.min()}..{y.max()}")
    return X, y.astype(np.int64)


def read_label_names(folder: Path) -> tuple[str, ...]:
    """``batches.meta`` label names if the file is there, else the standard ten."""
    path = folder / "batches.meta"
    if not path.exists():
        return CIFAR10_LABEL_NAMES
    try:
        meta = safe_unpickle(path.read_bytes())
        names = _key(meta, "label_names")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except Exception as e:  # any damage to the meta file is reported with its name
        raise DataError(f"{path}: cannot read 'label_names' ({type(e).__name__}: {e}); {GET_DATA_HINT}") from None
    if len(names) != N_CLASSES:
        raise DataError(f"{path}: field 'label_names' must list {N_CLASSES} names; got {len(names)}")
    return names


def read_python_batches(folder: str | os.PathLike, names: tuple[str, ...] = BATCH_NAMES) -> dict:
    """Read the named batch files of a ``cifar-10-batches-py`` folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist or is not a folder. {GET_DATA_HINT}")
    raw = {}
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: batch file {name!r} is missing from {folder}. {GET_DATA_HINT}")
        raw[name] = parse_batch(path.read_bytes(), str(path))
    return raw


def load_dataset(
    data_dir: str | os.PathLike | None = None,
    plan: str = "dd2424",
    n_val: int = 1000,
    source: str = "auto",
) -> Dataset:
    """Load CIFAR-10 for ``plan`` from a folder, tfds or the download cache.

    ``source``: ``"folder"`` needs ``data_dir`` (or ``$LINCLS_DATA_DIR``); ``"tfds"`` and
    ``"download"`` are described in :mod:`lincls.sources`; ``"auto"`` takes the folder when
    one is given, else the first of the other sources that works.
    """
    split_plan(plan, n_val)  # fail on a bad plan before any I/O
    names = batches_needed(plan)
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if source == "folder" or (source == "auto" and data_dir):
        if not data_dir:
            raise DataError(f"source 'folder' needs --data-dir DIR or ${DATA_DIR_ENV}. {GET_DATA_HINT}")
        raw = read_python_batches(data_dir, names)
        return build_dataset(raw, plan, n_val, read_label_names(Path(data_dir)), source=f"folder:{data_dir}")
    from lincls import sources  # the optional sources: tfds and the download cache

    raw, label_names, where = sources.load_raw(source, names)
    return build_dataset(raw, plan, n_val, label_names, source=where)
