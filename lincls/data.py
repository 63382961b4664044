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
from typing import BinaryIO, Mapping

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
    f"and pass the cifar-10-batches-py folder with --data-dir DIR or ${DATA_DIR_ENV}=DIR "
    "(or let lincls fetch it once with --source download; see docs/data.md)"
)

REPLACE_HINT = (
    "replace the file with one from the original cifar-10-python.tar.gz "
    "(md5 c58f30108f718f92721af3b95e74349a), e.g. with --source download"
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
    """[0, 1] pixels -> ``(X - mean) / std`` as float32; uint8 pixels (0..255) are scaled first."""
    dtype = np.asarray(X).dtype
    if dtype == np.uint8:
        return standardize_pixels([X], mean, std)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"standardize: pixels must be uint8 (0..255) or floats in [0, 1]; got {dtype}")
    return ((X - mean) / std).astype(np.float32)


def unstandardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return X * std + mean


def training_statistics(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of [0, 1] pixels; a constant dimension gets std 1.

    ``X`` is either uint8 pixels 0..255 (exact integer sums, see :func:`pixel_statistics`)
    or floats already in [0, 1] (float64 sums).
    """
    if np.asarray(X).dtype == np.uint8:
        return pixel_statistics([X])
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


_CHUNK = 256  # rows per step: a (256, 3072) float32 block stays in the CPU cache


def pixel_statistics(pieces: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (float32, of the [0, 1] pixels) over the rows of uint8 ``pieces``.

    The sums of pixels and of squared pixels are exact int64, so
    ``var = (n * sum(x^2) - sum(x)^2) / (255 n)^2`` has an exact numerator: no float64
    copy of the data and no cancellation. ``n * sum(x^2) <= n^2 * 255^2`` fits in int64
    for up to 1.1e7 rows. A constant dimension gets std 1.
    """
    d = pieces[0].shape[1]
    s = np.zeros(d, np.int64)
    ss = np.zeros(d, np.int64)
    buf = np.empty((_CHUNK, d), np.uint16)  # 255^2 = 65025 fits in uint16
    n = 0
    for X in pieces:
        n += len(X)
        s += X.sum(axis=0, dtype=np.int64)
        for i in range(0, len(X), _CHUNK):
            b = buf[: len(X[i : i + _CHUNK])]
            np.copyto(b, X[i : i + _CHUNK])
            np.multiply(b, b, out=b)
            ss += b.sum(axis=0, dtype=np.int64)
    if n == 0:
        raise DataError("no training rows to compute the mean and std from")
    mean = s / (255.0 * n)
    var = (n * ss - s * s) / (255.0 * n) ** 2
    std = np.sqrt(var)
    std = np.where(std > 0, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)


def standardize_pixels(pieces: list[np.ndarray], mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 rows of ``pieces``, stacked -> float32 ``(x / 255 - mean) / std``.

    Computed as one fused ``x * a + b`` per block with ``a = 1 / (255 std)`` and
    ``b = -mean / std``, written straight into the output: no float64 or uint8 copy of
    the whole split. It differs from the three-step formula by float32 rounding only
    (a few ulp).
    """
    mean64 = np.asarray(mean, np.float64)
    std64 = np.asarray(std, np.float64)
    a = (1.0 / (255.0 * std64)).astype(np.float32)
    b = (-mean64 / std64).astype(np.float32)
    out = np.empty((sum(len(X) for X in pieces), len(a)), np.float32)
    row = 0
    for X in pieces:
        for i in range(0, len(X), _CHUNK):
            block = X[i : i + _CHUNK]
            o = out[row : row + len(block)]
            np.multiply(block, a, out=o, dtype=np.float32)
            o += b
            row += len(block)
    return out


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
    """Raw uint8 batches -> standardized :class:`Dataset` for ``plan`` (pure, no I/O).

    Every split is standardized with the mean and std of the training rows only. The
    rows of a split are never copied as uint8 (no concatenation): each piece is
    written straight into the split's float32 array.
    """
    pieces: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for split, rows in split_plan(plan, n_val).items():
        pieces[split] = []
        for name, sl in rows:
            if name not in raw:
                raise DataError(f"split plan {plan!r} needs batch {name!r}, which the source lacks")
            X, y = raw[name]
            check_raw_batch(X, y, name)
            pieces[split].append((X[sl], y[sl]))
    if plan == "all" and sum(len(y) for _, y in pieces["val"]) != n_val:
        raise DataError(
            f"data_batch_5 has {len(raw['data_batch_5'][0])} rows, fewer than n_val={n_val}; pass a smaller --n-val"
        )
    if sum(len(y) for _, y in pieces["train"]) == 0:
        raise DataError(f"split plan {plan!r} leaves no training rows")
    mean, std = pixel_statistics([X for X, _ in pieces["train"]])
    out = {}
    for split, parts in pieces.items():
        out[split] = (
            standardize_pixels([X for X, _ in parts], mean, std),
            np.concatenate([y for _, y in parts]).astype(np.int32),
        )
    return Dataset(
        X_train=out["train"][0], y_train=out["train"][1],
        X_val=out["val"][0], y_val=out["val"][1],
        X_test=out["test"][0], y_test=out["test"][1],
        label_names=tuple(label_names), mean=mean, std=std, plan=plan, source=source,
    )  # fmt: skip


def check_raw_batch(X, y, name: str) -> None:
    """A raw batch from any source: X uint8 (n, 3072), y integer (n,) in 0..9."""
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != N_FEATURES:
        desc = f"{X.dtype} array of shape {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise DataError(f"batch {name!r}: 'data' must be a uint8 array of shape (n, {N_FEATURES}); got {desc}")
    if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != len(X):
        desc = f"{y.dtype} array of shape {y.shape}" if isinstance(y, np.ndarray) else type(y).__name__
        raise DataError(f"batch {name!r}: 'labels' must be an integer array of shape ({len(X)},); got {desc}")
    if len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
        raise DataError(f"batch {name!r}: 'labels' must lie in 0..{N_CLASSES - 1}; found {y.min()}..{y.max()}")


# ----------------------------------------------------------------------------- python batches


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a global outside the CIFAR-10 batch format (nothing was run)."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles written by python 3 use it for bytes, latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedGlobal(f"_codecs.encode with {type(text).__name__}, {encoding!r}")
    return text.encode("latin-1")


def _empty_bytes(*args) -> bytes:
    """``bytes()``, which protocol-2 pickles written by python 3 use for ``b''`` (no arguments only)."""
    if args:
        raise RefusedGlobal(f"builtins.bytes with {len(args)} arguments")
    return b""


# Plain integer and float dtypes: the only array element types a batch file may hold.
ARRAY_DTYPES = frozenset(f"{k}{n}" for k, sizes in (("u", (1, 2, 4, 8)), ("i", (1, 2, 4, 8)), ("f", (4, 8))) for n in sizes)


class _DtypeSpec:
    """What a pickle says of a dtype (``numpy.dtype(spec, align, copy)`` then its BUILD state).

    Nothing of numpy's runs: the spec and byte order are checked against
    :data:`ARRAY_DTYPES` and a real dtype is made only by :meth:`to_dtype`. numpy's own
    ``dtype.__setstate__`` would accept a state with object fields and raw pointers.
    """

    def __init__(self, spec, align=False, copy=False):
        if not isinstance(spec, str) or spec not in ARRAY_DTYPES:
            raise RefusedGlobal(f"numpy.dtype({spec!r}); a batch holds only {sorted(ARRAY_DTYPES)}")
        self.spec, self.byteorder = spec, "|"

    def __setstate__(self, state):
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags): a plain dtype has no
        # subarray, names or fields
        if not (isinstance(state, tuple) and len(state) >= 5 and state[1] in ("<", ">", "|", "=")):
            raise RefusedGlobal(f"numpy.dtype state {state!r}")
        if state[2] is not None or state[3] is not None or state[4] is not None:
            raise RefusedGlobal("a numpy.dtype with fields or a subarray")
        self.byteorder = state[1]

    def to_dtype(self) -> np.dtype:
        return np.dtype(self.spec).newbyteorder(self.byteorder) if self.byteorder in "<>" else np.dtype(self.spec)


def _array_from_bytes(raw, dtype, shape, fortran: bool) -> np.ndarray:
    """An array made by numpy's public ``frombuffer`` from checked parts; raises ValueError if they disagree."""
    if not isinstance(dtype, _DtypeSpec):
        raise RefusedGlobal(f"an array of {type(dtype).__name__}")
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise ValueError(f"array shape {shape!r} is not a tuple of sizes")
    raw = bytes(raw) if isinstance(raw, (bytearray, memoryview, pickle.PickleBuffer)) else raw
    if not isinstance(raw, bytes):
        raise ValueError(f"array data of type {type(raw).__name__}, not bytes")
    return np.frombuffer(raw, dtype=dtype.to_dtype()).reshape(shape, order="F" if fortran else "C")


class _ArraySpec:
    """What ``numpy.core.multiarray._reconstruct(ndarray, ...)`` plus BUILD says of an array
    (pickle protocols 2 to 4); :func:`safe_unpickle` turns it into an array afterwards."""

    def __init__(self, cls, shape, typecode):
        if cls is not _NDARRAY:
            raise RefusedGlobal(f"_reconstruct of {cls!r}")
        self.array = None

    def __setstate__(self, state):
        # numpy's array state: (version, shape, dtype, is_fortran, raw bytes)
        if not (isinstance(state, tuple) and len(state) == 5):
            raise ValueError("array state is not (version, shape, dtype, is_fortran, data)")
        _, shape, dtype, fortran, raw = state
        self.array = _array_from_bytes(raw, dtype, shape, bool(fortran))


def _frombuffer(buf, dtype, shape, order="C") -> np.ndarray:
    """numpy's ``_frombuffer`` (protocol-5 array pickles), from checked parts."""
    return _array_from_bytes(buf, dtype, shape, order == "F")


class _NdarrayName:
    """Stands for the global ``numpy.ndarray``, which a batch pickle only names (as the first
    argument of ``_reconstruct``) and never calls: it is not callable."""


_NDARRAY = _NdarrayName()


def _arrays_in_place(obj, depth: int = 0):
    """``obj`` with every :class:`_ArraySpec` replaced by its array (dicts and lists, a few levels deep)."""
    if depth > 8:
        raise ValueError("pickle nested deeper than a batch file")
    if isinstance(obj, _ArraySpec):
        if obj.array is None:
            raise ValueError("array without its data")
        return obj.array
    if isinstance(obj, dict):
        return {k: _arrays_in_place(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_arrays_in_place(v, depth + 1) for v in obj]
    if isinstance(obj, _DtypeSpec):
        raise RefusedGlobal("a bare numpy.dtype")
    return obj


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only what the CIFAR-10 batch format needs; any other global is refused.

    Plain containers (dict, list, bytes, str, int) are pickle opcodes and need no global.
    The one numpy array per batch is named through ``_reconstruct``, ``ndarray`` and
    ``dtype`` (protocols 2-4) or ``_frombuffer`` (protocol 5); these names resolve to
    stand-ins that only record what the pickle says, and the array is made from checked
    parts with ``np.frombuffer`` (plain integer or float elements, a shape of sizes, raw
    bytes). None of numpy's own constructors is reachable, so a pickle can neither run
    code nor forge an array of object pointers. Protocol-2 pickles written by python 3
    spell bytes as ``_codecs.encode(text, 'latin1')`` and ``b''`` as ``bytes()``.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _ArraySpec,
        ("numpy._core.multiarray", "_reconstruct"): _ArraySpec,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _DtypeSpec,
        ("_codecs", "encode"): _latin1_encode,
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise RefusedGlobal(f"{module}.{name}")
        return self.ALLOWED[module, name]


def safe_unpickle(data: bytes | BinaryIO) -> object:
    """Unpickle bytes or a binary file with :class:`_RestrictedUnpickler` (python 2 pickles too).

    Raises :class:`RefusedGlobal` for a global outside the batch format; any other
    exception means the bytes are not a whole pickle.
    """
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    return _arrays_in_place(_RestrictedUnpickler(f, encoding="bytes").load())


def _key(d: dict, name: str):
    """A pickled dict's entry, whether its keys are bytes (python 2 era) or str."""
    if name.encode() in d:
        return d[name.encode()]
    return d.get(name)


def _unpickle_file_or_bytes(data: bytes | BinaryIO, path: str) -> object:
    """:func:`safe_unpickle` with every failure turned into a :class:`DataError` naming ``path``."""
    try:
        return safe_unpickle(data)
    except RefusedGlobal as e:
        raise DataError(
            f"{path}: refused to unpickle: it asks for {e}, which is not part of the CIFAR-10 batch "
            f"format (nothing was run). The file is not a genuine CIFAR-10 batch; {REPLACE_HINT}"
        ) from None
    except MemoryError:
        raise DataError(f"{path}: corrupt pickle (it asks for more memory than there is); {REPLACE_HINT}") from None
    except Exception as e:  # the restricted unpickler runs no code: anything here is damaged bytes
        raise DataError(
            f"{path}: truncated or corrupt pickle ({type(e).__name__}: {e}); {REPLACE_HINT}"
        ) from None


def parse_batch(data: bytes | BinaryIO, path: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file (bytes or an open binary file) -> (X uint8 (n, 3072), y int64 (n,)).

    Every :class:`DataError` names ``path``, the field and the fix.
    """
    obj = _unpickle_file_or_bytes(data, path)
    if not isinstance(obj, dict):
        raise DataError(
            f"{path}: expected a pickled dict with fields 'data' and 'labels'; got {type(obj).__name__}. {REPLACE_HINT}"
        )
    X, y = _key(obj, "data"), _key(obj, "labels")
    if X is None or y is None:
        keys = sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k) for k in obj)
        missing = " and ".join(f"'{k}'" for k, v in (("data", X), ("labels", y)) if v is None)
        raise DataError(f"{path}: field {missing} is missing; the dict has {keys}. {REPLACE_HINT}")
    if not isinstance(X, np.ndarray) or X.dtype != np.uint8 or X.ndim != 2 or X.shape[1] != N_FEATURES:
        desc = f"{X.dtype} array of shape {X.shape}" if isinstance(X, np.ndarray) else type(X).__name__
        raise DataError(
            f"{path}: field 'data' must be a uint8 array of shape (n, {N_FEATURES}) (3 x 32 x 32, "
            f"channel-first); got {desc}. {REPLACE_HINT}"
        )
    try:
        y = np.asarray(y)
        if y.ndim == 1 and y.size == 0:
            y = y.astype(np.int64)  # an empty list comes back as float64
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: field 'labels' must be a list of ints; {e}. {REPLACE_HINT}") from None
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(
            f"{path}: field 'labels' must be a list of ints; got {y.dtype} of shape {y.shape}. {REPLACE_HINT}"
        )
    if len(y) != len(X):
        raise DataError(
            f"{path}: field 'labels' has {len(y)} entries but field 'data' has {len(X)} rows. {REPLACE_HINT}"
        )
    if len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
        raise DataError(
            f"{path}: field 'labels' must lie in 0..{N_CLASSES - 1}; found {y.min()}..{y.max()}. {REPLACE_HINT}"
        )
    return X, y.astype(np.int64)


def read_label_names(folder: Path) -> tuple[str, ...]:
    """``batches.meta`` label names if the file is there, else the standard ten."""
    path = Path(folder) / "batches.meta"
    if not path.exists():
        return CIFAR10_LABEL_NAMES
    meta = _unpickle_file_or_bytes(path.read_bytes(), str(path))
    try:
        names = _key(meta, "label_names")
        names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except Exception as e:  # any damage to the meta file is reported with its name
        raise DataError(f"{path}: cannot read field 'label_names' ({type(e).__name__}: {e}); {REPLACE_HINT}") from None
    if len(names) != N_CLASSES:
        raise DataError(f"{path}: field 'label_names' must list {N_CLASSES} names; got {len(names)}. {REPLACE_HINT}")
    return names


def read_python_batches(folder: str | os.PathLike, names: tuple[str, ...] = BATCH_NAMES) -> dict:
    """Read the named batch files of a ``cifar-10-batches-py`` folder (each file read once)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist or is not a folder. {GET_DATA_HINT}")
    raw = {}
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: batch file {name!r} is missing from {folder}. {GET_DATA_HINT}")
        try:
            with open(path, "rb") as f:  # unpickled straight from the file: no bytes copy
                raw[name] = parse_batch(f, str(path))
        except OSError as e:
            raise DataError(f"{path}: cannot read batch file {name!r} ({e.strerror or e}). {GET_DATA_HINT}") from None
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
    if data_dir and source in ("tfds", "download"):
        raise DataError(
            f"--data-dir {data_dir} reads a folder, but --source {source} was asked for; "
            f"drop one of them (--source folder or auto reads the folder)"
        )
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if source == "folder" or (source == "auto" and data_dir):
        if not data_dir:
            raise DataError(f"source 'folder' needs --data-dir DIR or ${DATA_DIR_ENV}. {GET_DATA_HINT}")
        raw = read_python_batches(data_dir, names)
        return build_dataset(raw, plan, n_val, read_label_names(Path(data_dir)), source=f"folder:{data_dir}")
    from lincls import sources  # the optional sources: tfds and the download cache

    raw, label_names, where = sources.load_raw(source, names)
    return build_dataset(raw, plan, n_val, label_names, source=where)
