"""Where CIFAR-10 comes from when no ``--data-dir`` is given: tfds or a one-time download.

``load_raw(source, names)`` returns ``(raw, label_names, where)``: ``raw`` maps each
requested batch name (``data_batch_1`` .. ``data_batch_5``, ``test_batch``) to
``(X uint8 (n, 3072) channel-first, y int64 (n,))`` in the original order of the
python release, exactly as :func:`lincls.data.read_python_batches` gives them.

Sources:

``"download"``
    The original ``cifar-10-python.tar.gz`` (163 MB), fetched once into the cache folder
    (``$LINCLS_CACHE_DIR``, default ``~/.cache/lincls``), checked against its md5, and
    extracted to ``<cache>/cifar-10-batches-py``. The archive is written to a temporary
    name and renamed only once its md5 matches; the folder is extracted into a
    temporary folder and renamed only once every batch file is there. So whatever
    lies at the final names is complete, and an interrupted run leaves nothing that
    could be taken for good data. Needs nothing beyond the base install.
``"tfds"``
    tensorflow-datasets ``cifar10``, already prepared in the ``array_record`` format
    (``$TFDS_DATA_DIR``, default ``~/tensorflow_datasets``), read with
    ``tfds.data_source`` (no TensorFlow needed to read). Rows are sorted on the ``id``
    feature (``train_00000`` ..), which restores the original order; the 50000 train
    rows are cut into data_batch_1..5. Preparing it is *not* done here: it needs
    TensorFlow (see docs/data.md).
``"auto"``
    The extracted download cache if it is there; else tfds if cifar10 is prepared
    there; else the download.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

import numpy as np

from lincls.data import (
    BATCH_NAMES,
    CIFAR10_LABEL_NAMES,
    DATA_DIR_ENV,
    N_FEATURES,
    REPLACE_HINT,
    DataError,
    read_label_names,
    read_python_batches,
)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CACHE_DIR_ENV = "LINCLS_CACHE_DIR"
FOLDER_NAME = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
SOURCES = ("auto", "tfds", "download")
TIMEOUT_S = 10.0  # connect / per-read timeout; there is no retry loop

_BY_HAND = (
    "To get the data by hand: on a machine with network, download {url} (md5 {md5}), "
    "extract it, copy the cifar-10-batches-py folder here and pass --data-dir DIR "
    f"(or set ${DATA_DIR_ENV}=DIR); or put the extracted folder at {{folder}}"
)


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The download cache: ``cache``, else ``$LINCLS_CACHE_DIR``, else ``~/.cache/lincls``."""
    if cache is None:
        cache = os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "lincls"
    return Path(cache).expanduser()


def cached_folder(cache: str | os.PathLike | None = None) -> Path | None:
    """The extracted ``cifar-10-batches-py`` in the cache, or None if it is not there."""
    folder = cache_dir(cache) / FOLDER_NAME
    return folder if folder.is_dir() else None


def load_raw(
    source: str,
    names: tuple[str, ...] = BATCH_NAMES,
    *,
    cache: str | os.PathLike | None = None,
    tfds_data_dir: str | os.PathLike | None = None,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    timeout: float = TIMEOUT_S,
) -> tuple[dict, tuple[str, ...], str]:
    """The named raw batches from ``source`` ("auto", "tfds" or "download").

    Returns ``(raw, label_names, where)`` with ``where`` saying what was read, e.g.
    ``"download:/home/me/.cache/lincls/cifar-10-batches-py"``.
    """
    unknown = sorted(set(names) - set(BATCH_NAMES))
    if unknown:
        raise DataError(f"unknown batch names {unknown}; CIFAR-10 has {list(BATCH_NAMES)}")
    if source == "download":
        folder = download_cifar10(cache, url=url, md5=md5, timeout=timeout)
        return _read_folder(folder, names)
    if source == "tfds":
        return load_tfds(names, tfds_data_dir)
    if source == "auto":
        folder = cached_folder(cache)
        if folder is not None:
            return _read_folder(folder, names)
        builder, why_not = _tfds_ready(tfds_data_dir)
        if builder is not None:
            return load_tfds(names, tfds_data_dir)
        try:
            folder = download_cifar10(cache, url=url, md5=md5, timeout=timeout)
        except DataError as e:
            raise DataError(
                f"no CIFAR-10 found: no --data-dir (or ${DATA_DIR_ENV}), nothing in the cache "
                f"{cache_dir(cache)}, and tfds cannot serve it ({why_not}). The download failed too: {e}"
            ) from None
        return _read_folder(folder, names)
    raise DataError(f"unknown data source {source!r}; use one of 'folder', {', '.join(map(repr, SOURCES))}")


def _read_folder(folder: Path, names: tuple[str, ...]) -> tuple[dict, tuple[str, ...], str]:
    """The download cache's folder; a damaged file there is fixed by downloading afresh, and the error says how."""
    try:
        return read_python_batches(folder, names), read_label_names(folder), f"download:{folder}"
    except DataError as e:
        raise DataError(
            f"{str(e).replace(REPLACE_HINT, 'the download cache is damaged')}. Delete {folder} and run again: "
            f"lincls downloads the archive afresh and checks its md5"
        ) from None


# ----------------------------------------------------------------------------- tfds


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # a dependency, but say so plainly if it is broken
        raise DataError(f"tensorflow-datasets cannot be imported ({e}); use --source download or --data-dir") from None
    return tfds


def _tfds_dir(data_dir: str | os.PathLike | None) -> str | None:
    """``data_dir``, else ``$TFDS_DATA_DIR`` read now (tfds reads it only once, at import), else tfds's default."""
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None
    return None if data_dir is None else os.fspath(Path(data_dir).expanduser())


def _tfds_ready(data_dir: str | os.PathLike | None):
    """``(builder, "")`` if cifar10 is prepared in an array_record form, else ``(None, why not)``."""
    try:
        tfds = _import_tfds()
    except DataError as e:
        return None, str(e)
    from tensorflow_datasets.core import file_adapters

    try:
        builder = tfds.builder("cifar10", data_dir=_tfds_dir(data_dir))
    except Exception as e:  # a broken tfds data dir: report it, never prepare
        return None, f"tfds cannot open cifar10 ({type(e).__name__}: {e})"
    if not builder.is_prepared():
        return None, f"cifar10 is not prepared in {builder.data_dir}"
    fmt = builder.info.file_format or file_adapters.DEFAULT_FILE_FORMAT  # None in datasets of older tfds
    if fmt not in file_adapters.FileFormat.with_random_access():
        return None, (
            f"cifar10 in {builder.data_dir} is prepared as {fmt.value}, which tfds.data_source cannot read; "
            "it needs file_format='array_record'"
        )
    return builder, ""


def tfds_prepared(data_dir: str | os.PathLike | None = None) -> bool:
    """Whether ``load_tfds`` can read cifar10 from ``data_dir`` without preparing anything."""
    return _tfds_ready(data_dir)[0] is not None


def load_tfds(
    names: tuple[str, ...] = BATCH_NAMES, data_dir: str | os.PathLike | None = None
) -> tuple[dict, tuple[str, ...], str]:
    """Read prepared tfds ``cifar10`` and rebuild the python batches (never downloads)."""
    builder, why_not = _tfds_ready(data_dir)
    if builder is None:
        raise DataError(
            f"source 'tfds': {why_not}. lincls does not prepare it for you: preparing needs TensorFlow "
            "(tensorflow-cpu: about 310 MB to download, 1.4 GB installed; see docs/data.md) and the network. Options: "
            "(1) --source download (the original archive, no TensorFlow); "
            "(2) --data-dir DIR with an extracted cifar-10-batches-py; "
            "(3) with TensorFlow installed, prepare it once: python -c \"import tensorflow_datasets as tfds; "
            "tfds.builder('cifar10', file_format='array_record').download_and_prepare()\" "
            "(set $TFDS_DATA_DIR to choose where)"
        )
    tfds = _import_tfds()
    splits = [s for s in ("train", "test") if any(n.startswith("data_batch" if s == "train" else "test") for n in names)]
    try:
        sources = tfds.data_source(
            "cifar10",
            split=splits,
            data_dir=_tfds_dir(data_dir),
            download=False,
            decoders={"image": tfds.decode.SkipDecoding()},  # decode only the rows asked for
        )
        examples_per_split = [_all_examples(ds) for ds in sources]
    except Exception as e:  # damaged array_record files, a half-written tfds dir, ...
        raise DataError(
            f"tfds cifar10 in {builder.data_dir} cannot be read ({type(e).__name__}: {e}); "
            "delete that folder and prepare it again, or use --source download or --data-dir"
        ) from None
    image_feature = builder.info.features["image"]
    raw = {}
    for split, examples in zip(splits, examples_per_split):
        order = _order_by_id(examples, split)
        n = len(order)
        if split == "train":
            if n % 5:
                raise DataError(f"tfds cifar10 'train' has {n} rows, which do not cut into 5 equal data batches")
            m = n // 5
            rows = {f"data_batch_{k + 1}": order[k * m : (k + 1) * m] for k in range(5)}
        else:
            rows = {"test_batch": order}
        for name, idx in rows.items():
            if name in names:
                raw[name] = _to_batch([examples[i] for i in idx], image_feature, f"tfds cifar10 '{split}' ({name})")
    label_names = tuple(builder.info.features["label"].names)
    if label_names == tuple(str(i) for i in range(10)):  # a builder made from code, not from prepared files
        label_names = CIFAR10_LABEL_NAMES
    return raw, label_names, f"tfds:{builder.data_dir}"


def _all_examples(ds) -> list:
    n = len(ds)
    if hasattr(ds, "__getitems__"):
        return list(ds.__getitems__(list(range(n))))
    return [ds[i] for i in range(n)]


def _order_by_id(examples: list, split: str) -> np.ndarray:
    """Positions of ``examples`` sorted on their id ``<split>_NNNNN``; the ids must be 0..n-1."""
    prefix = f"{split}_"
    numbers = np.empty(len(examples), np.int64)
    for i, ex in enumerate(examples):
        id_ = ex["id"]
        id_ = id_.decode() if isinstance(id_, bytes) else str(id_)
        if not id_.startswith(prefix) or not id_[len(prefix) :].isdigit():
            raise DataError(f"tfds cifar10 '{split}': field 'id' is {id_!r}, expected '{prefix}NNNNN'")
        numbers[i] = int(id_[len(prefix) :])
    order = np.argsort(numbers, kind="stable")
    if not np.array_equal(numbers[order], np.arange(len(examples))):
        raise DataError(
            f"tfds cifar10 '{split}': field 'id' does not number the rows {prefix}00000 .. {len(examples) - 1} "
            "once each, so the original order cannot be restored; re-prepare cifar10 or use --source download"
        )
    return order


def _to_batch(examples: list, image_feature, what: str) -> tuple[np.ndarray, np.ndarray]:
    """tfds examples (HWC images, PNG bytes or arrays) -> (X uint8 (n, 3072) channel-first, y int64)."""
    X = np.empty((len(examples), N_FEATURES), np.uint8)
    y = np.empty(len(examples), np.int64)
    for i, ex in enumerate(examples):
        img = ex["image"]
        if isinstance(img, bytes):
            img = image_feature.decode_example_np(img)
        img = np.asarray(img)
        if img.shape != (32, 32, 3) or img.dtype != np.uint8:
            raise DataError(f"{what}: field 'image' must be uint8 (32, 32, 3); got {img.dtype} {img.shape}")
        X[i] = img.transpose(2, 0, 1).reshape(-1)  # HWC -> R plane, G plane, B plane
        y[i] = int(ex["label"])
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{what}: field 'label' must lie in 0..9; found {y.min()}..{y.max()}")
    return X, y


# ----------------------------------------------------------------------------- download


def download_cifar10(
    cache: str | os.PathLike | None = None,
    *,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    timeout: float = TIMEOUT_S,
    quiet: bool = False,
) -> Path:
    """The extracted ``cifar-10-batches-py`` in the cache, downloading it first if needed.

    ``url`` and ``md5`` default to the original release; the archive is removed once
    it has been extracted (the folder is all that is read).
    """
    cache = cache_dir(cache)
    folder = cache / FOLDER_NAME
    if folder.is_dir():
        return folder
    by_hand = _BY_HAND.format(url=url, md5=md5, folder=folder)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the cache folder {cache} ({e.strerror or e}); set ${CACHE_DIR_ENV}=DIR") from None
    archive = cache / ARCHIVE_NAME
    if archive.is_file() and _md5_of(archive) != md5:
        archive.unlink()  # a stale or foreign file at the final name: never trust it
    if not archive.is_file():
        _fetch(url, archive, md5, timeout, by_hand, quiet)
    _extract(archive, folder, by_hand)
    archive.unlink(missing_ok=True)
    return folder


def _md5_of(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_resolves(host: str, port: int, timeout: float) -> None:
    """Resolve ``host`` within ``timeout`` seconds (the socket timeout does not cover DNS)."""
    result: list = []

    def resolve():
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as e:
            result.append(e)

    t = threading.Thread(target=resolve, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        raise OSError(f"resolving {host} took longer than {timeout:g} s")
    if isinstance(result[0], OSError):
        raise result[0]


def _behind_proxy(url: str) -> bool:
    """Whether urllib sends ``url`` through a proxy (``https_proxy`` and friends, not bypassed)."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(parts.hostname or "")


def _write_chunk(out, chunk: bytes, tmp: Path) -> None:
    """``out.write(chunk)``; a failure is the disk's, not the network's, and says so."""
    try:
        out.write(chunk)
    except OSError as e:
        raise DataError(f"cannot write the download to {tmp.parent}: {e.strerror or e} (is the disk full?); "
                        f"nothing was kept; free some space or set $LINCLS_CACHE_DIR to another folder") from None


def _fetch(url: str, dest: Path, md5: str, timeout: float, by_hand: str, quiet: bool) -> None:
    """Download ``url`` to a temporary file beside ``dest``; rename it only if the md5 matches."""
    parts = urllib.parse.urlsplit(url)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                if parts.hostname and not _behind_proxy(url):  # a proxy resolves names itself
                    _check_resolves(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), timeout)
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    size = response.headers.get("Content-Length")
                    if not quiet:
                        mb = f" ({int(size) / 1e6:.0f} MB)" if size and size.isdigit() else ""
                        print(f"lincls: downloading {url}{mb} into {dest.parent} (once) ...", file=sys.stderr, flush=True)
                    h = hashlib.md5(usedforsecurity=False)
                    while chunk := response.read(1 << 20):
                        h.update(chunk)
                        _write_chunk(out, chunk, tmp)
            except urllib.error.HTTPError as e:
                raise DataError(f"downloading {url} failed: the server answered HTTP {e.code} {e.reason}. {by_hand}") from None
            except http.client.HTTPException as e:  # a server that answers, but not in HTTP
                raise DataError(
                    f"cannot download {url}: the server's answer is not HTTP ({type(e).__name__}: {str(e).strip()}). {by_hand}"
                ) from None
            except (urllib.error.URLError, OSError) as e:  # no network, refused, timed out, reset
                reason = getattr(e, "reason", None) or e
                raise DataError(
                    f"cannot download {url}: {reason}. Is there no network here? {by_hand}"
                ) from None
        got = h.hexdigest()
        if got != md5:
            raise DataError(
                f"downloaded {url} but its md5 is {got}, not {md5}: the file is damaged or not the "
                f"CIFAR-10 release; it was removed (nothing was kept in {dest.parent}). Try again, or: {by_hand}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    if not quiet:
        print(f"lincls: {dest} checked (md5 {md5})", file=sys.stderr, flush=True)


def _checked_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Every member, if all are plain files or folders with relative paths inside the archive."""
    members = tar.getmembers()
    for m in members:
        parts = PurePosixPath(m.name).parts
        if m.name.startswith(("/", "\\")) or os.path.isabs(m.name) or ".." in parts or (parts and ":" in parts[0]):
            raise DataError(f"{archive}: member {m.name!r} has an absolute path or '..'; refusing to extract it")
        if not (m.isfile() or m.isdir()):
            raise DataError(f"{archive}: member {m.name!r} is a link or device, not a file; refusing to extract it")
    return members


def _extract(archive: Path, folder: Path, by_hand: str) -> None:
    """Extract into a temporary folder beside ``folder``; rename it into place once complete."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.", suffix=".part", dir=folder.parent))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                members = _checked_members(tar, archive)
                kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(tmp, members=members, **kwargs)
        except (tarfile.TarError, EOFError, OSError) as e:
            if isinstance(e, FileNotFoundError) and folder.is_dir():
                return  # another process extracted it and removed the archive meanwhile
            archive.unlink(missing_ok=True)
            raise DataError(f"{archive}: corrupt archive ({type(e).__name__}: {e}); it was removed. {by_hand}") from None
        except DataError:
            archive.unlink(missing_ok=True)
            raise
        extracted = tmp / FOLDER_NAME
        missing = [n for n in BATCH_NAMES if not (extracted / n).is_file()]
        if missing:
            archive.unlink(missing_ok=True)
            raise DataError(f"{archive}: the archive lacks {FOLDER_NAME}/{', '.join(missing)}; it was removed. {by_hand}")
        try:
            os.rename(extracted, folder)
        except OSError:
            if not folder.is_dir():  # else another process put a complete folder there first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
