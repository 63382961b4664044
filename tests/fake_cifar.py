"""Tiny generated CIFAR-10 look-alikes for tests: python batch folders, tar.gz, tfds.

``write_fake_cifar(folder)`` writes a ``cifar-10-batches-py``-style folder of small
pickled batches (random pixels, labels 0..9) and returns the arrays it wrote, so any
test can compare what a loader gives back with what went in. Nothing here reads the
real data.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from lincls.data import BATCH_NAMES, CIFAR10_LABEL_NAMES

FOLDER_NAME = "cifar-10-batches-py"


def fake_raw(n_per_batch: int | dict = 20, seed: int = 0, names=BATCH_NAMES) -> dict:
    """``{name: (X uint8 (n, 3072), y int64 (n,))}``; ``n_per_batch`` may be a dict per name.

    Each batch gets its own pixel distribution (a per-batch offset), so statistics
    computed on the wrong batch differ visibly from the training ones.
    """
    rng = np.random.default_rng(seed)
    raw = {}
    for k, name in enumerate(names):
        n = n_per_batch[name] if isinstance(n_per_batch, dict) else n_per_batch
        lo = 10 * k
        X = rng.integers(lo, 200 + lo, size=(n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).astype(np.int64)
        raw[name] = (X, y)
    return raw


def batch_dict(X, y, name: str = "data_batch_1", str_keys: bool = False) -> dict:
    """A batch as the original python release pickles it (bytes keys, labels as a list)."""
    d = {
        b"batch_label": f"fake {name}".encode(),
        b"labels": [int(v) for v in y],
        b"data": X,
        b"filenames": [f"{name}_{i:04d}.png".encode() for i in range(len(y))],
    }
    return {k.decode(): v for k, v in d.items()} if str_keys else d


def write_batch(path, X, y, protocol: int = 2, **kw) -> Path:
    path = Path(path)
    path.write_bytes(pickle.dumps(batch_dict(X, y, path.name, **kw), protocol=protocol))
    return path


def write_meta(folder, label_names=CIFAR10_LABEL_NAMES) -> Path:
    meta = {b"label_names": [n.encode() for n in label_names], b"num_cases_per_batch": 10000, b"num_vis": 3072}
    path = Path(folder) / "batches.meta"
    path.write_bytes(pickle.dumps(meta, protocol=2))
    return path


def write_fake_cifar(folder, n_per_batch: int | dict = 20, seed: int = 0, names=BATCH_NAMES, protocol: int = 2) -> dict:
    """Write a fake ``cifar-10-batches-py`` folder (with ``batches.meta``); return the raw arrays."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw = fake_raw(n_per_batch, seed, names)
    for name, (X, y) in raw.items():
        write_batch(folder / name, X, y, protocol=protocol)
    write_meta(folder)
    return raw


def make_tarball(path, raw: dict | None = None, extra: list[tarfile.TarInfo] | None = None, n_per_batch: int = 4) -> str:
    """Write a ``cifar-10-python.tar.gz`` look-alike holding ``cifar-10-batches-py/``; return its md5.

    ``extra`` members (e.g. a ``../evil`` path or a symlink) are appended, with empty content.
    """
    raw = raw if raw is not None else fake_raw(n_per_batch)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folder = tarfile.TarInfo(FOLDER_NAME)
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tar.addfile(folder)
        files = {name: pickle.dumps(batch_dict(X, y, name), protocol=2) for name, (X, y) in raw.items()}
        files["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in CIFAR10_LABEL_NAMES]}, protocol=2)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{FOLDER_NAME}/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    data = buf.getvalue()
    Path(path).write_bytes(data)
    return hashlib.md5(data).hexdigest()


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(img).save(out, format="PNG")
    return out.getvalue()


def tfds_examples(raw: dict, seed: int = 0) -> dict[str, list[dict]]:
    """tfds-style ``cifar10`` examples of ``raw`` per split, in a shuffled order.

    ``id`` numbers the rows across data_batch_1..5 (``train_00000`` ..) and the test
    batch (``test_00000`` ..), as tfds does; images are HWC PNG bytes.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
        X = np.concatenate([raw[n][0] for n in names])
        y = np.concatenate([raw[n][1] for n in names])
        images = X.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        order = rng.permutation(len(y))
        if np.array_equal(order, np.arange(len(y))):
            order = np.roll(order, 1)  # really shuffled, whatever the seed
        out[split] = [
            {"id": f"{split}_{i:05d}".encode(), "image": png_bytes(np.ascontiguousarray(images[i])), "label": int(y[i])}
            for i in order
        ]
    return out


def write_tfds_cifar10(data_dir, raw: dict, seed: int = 0) -> Path:
    """A prepared tfds ``cifar10`` (array_record) holding ``raw``, rows shuffled; no TensorFlow needed.

    Written with tfds's own serializer, split metadata and ``dataset_info.json``, so
    ``tfds.builder('cifar10', data_dir=...).is_prepared()`` is true and
    ``tfds.data_source`` reads it as it would a real one.
    """
    import tensorflow_datasets as tfds
    from array_record.python import array_record_module
    from tensorflow_datasets.core import example_serializer
    from tensorflow_datasets.core import splits as splits_lib

    builder = tfds.builder("cifar10", data_dir=os.fspath(data_dir), file_format="array_record")
    builder.info.features["label"].names = list(CIFAR10_LABEL_NAMES)
    features = builder.info.features
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    Path(builder.data_path).mkdir(parents=True, exist_ok=True)
    infos = []
    for split, examples in tfds_examples(raw, seed).items():
        path = Path(builder.data_path) / f"cifar10-{split}.array_record-00000-of-00001"
        writer = array_record_module.ArrayRecordWriter(os.fspath(path), "group_size:1")
        n_bytes = 0
        for ex in examples:
            record = serializer.serialize_example(features.encode_example(ex))
            writer.write(record)
            n_bytes += len(record)
        writer.close()
        infos.append(splits_lib.SplitInfo(name=split, shard_lengths=[len(examples)], num_bytes=n_bytes))
    builder.info.set_splits(splits_lib.SplitDict(infos))
    builder.info.write_to_directory(builder.data_path)
    return Path(builder.data_path)
