"""lincls.data: split plans, training-only standardization, layout, and every bad input.

All but the last test use small generated batch folders (tests/fake_cifar.py). The
``integration`` test reads the real folder and is skipped where it is absent.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from fake_cifar import batch_dict, fake_raw, write_batch, write_fake_cifar

from lincls import data
from lincls.data import DataError

REAL_FOLDER = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar-10-batches-py"


@pytest.fixture
def folder(tmp_path):
    return tmp_path / "cifar-10-batches-py"


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


def reference(X_train_u8, X_other_u8):
    """Independent float64 numpy: standardize ``X_other`` with the stats of ``X_train``."""
    Xt = X_train_u8.astype(np.float64) / 255
    mean, std = Xt.mean(axis=0), Xt.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (X_other_u8.astype(np.float64) / 255 - mean) / std, mean, std


# ----------------------------------------------------------------------------- split plans


def test_dd2424_plan_is_batch_1_2_and_test(folder):
    raw = write_fake_cifar(folder, n_per_batch=20)
    ds = data.load_dataset(folder, "dd2424")
    assert ds.X_train.shape == ds.X_val.shape == ds.X_test.shape == (20, 3072)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.y_train, raw["data_batch_1"][1])
    np.testing.assert_array_equal(ds.y_val, raw["data_batch_2"][1])
    np.testing.assert_array_equal(ds.y_test, raw["test_batch"][1])
    ref, _, _ = reference(raw["data_batch_1"][0], raw["data_batch_2"][0])
    np.testing.assert_allclose(ds.X_val, ref, atol=2e-6)
    assert ds.plan == "dd2424" and ds.source == f"folder:{folder}"
    assert ds.label_names == data.CIFAR10_LABEL_NAMES and ds.n_classes == 10 and ds.n_features == 3072


def test_dd2424_reads_only_the_batches_it_needs(folder):
    write_fake_cifar(folder, names=("data_batch_1", "data_batch_2", "test_batch"))
    assert data.load_dataset(folder, "dd2424").X_train.shape == (20, 3072)


@pytest.mark.parametrize("n_val", [1, 5, 20])
def test_all_plan_holds_out_the_last_n_val_rows_of_batch_5(folder, n_val):
    raw = write_fake_cifar(folder, n_per_batch=20)
    ds = data.load_dataset(folder, "all", n_val=n_val)
    train_names = [f"data_batch_{i}" for i in range(1, 6)]
    X_all = np.concatenate([raw[n][0] for n in train_names])
    y_all = np.concatenate([raw[n][1] for n in train_names])
    assert ds.X_train.shape == (100 - n_val, 3072) and ds.X_val.shape == (n_val, 3072)
    np.testing.assert_array_equal(ds.y_train, y_all[: 100 - n_val])
    np.testing.assert_array_equal(ds.y_val, y_all[100 - n_val :])
    ref_train, mean, std = reference(X_all[: 100 - n_val], X_all[: 100 - n_val])
    np.testing.assert_allclose(ds.X_train, ref_train, atol=2e-6)
    ref_val, _, _ = reference(X_all[: 100 - n_val], X_all[100 - n_val :])
    np.testing.assert_allclose(ds.X_val, ref_val, atol=2e-6)
    np.testing.assert_allclose(ds.mean, mean, rtol=1e-6)


def test_bad_plans_and_n_val(folder):
    write_fake_cifar(folder, n_per_batch=20)
    with pytest.raises(DataError, match=r"unknown split plan 'full'.*'dd2424'.*'all'"):
        data.load_dataset(folder, "full")
    with pytest.raises(DataError, match="n_val must be positive"):
        data.load_dataset(folder, "all", n_val=0)
    with pytest.raises(DataError, match=r"data_batch_5 has 20 rows, fewer than n_val=21.*--n-val"):
        data.load_dataset(folder, "all", n_val=21)


def test_bad_plan_fails_before_any_io(tmp_path):
    with pytest.raises(DataError, match="unknown split plan"):
        data.load_dataset(tmp_path / "nowhere", "nope")


# ----------------------------------------------------------------------------- standardization


def test_standardization_uses_training_statistics_only(folder):
    raw = write_fake_cifar(folder, n_per_batch=50)  # fake_raw gives each batch its own offset
    ds = data.load_dataset(folder, "dd2424")
    ref_train, mean, std = reference(raw["data_batch_1"][0], raw["data_batch_1"][0])
    np.testing.assert_allclose(ds.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(ds.std, std, rtol=1e-6)
    np.testing.assert_allclose(ds.X_train, ref_train, atol=2e-6)
    for X_split, name in ((ds.X_val, "data_batch_2"), (ds.X_test, "test_batch")):
        ref, _, _ = reference(raw["data_batch_1"][0], raw[name][0])
        np.testing.assert_allclose(X_split, ref, atol=2e-6)
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.X_train.std(axis=0), 1, atol=1e-5)
    # val and test were NOT standardized with their own statistics: their offsets show
    assert ds.X_val.mean() > 0.05 and ds.X_test.mean() > 0.3


def test_constant_dimension_gets_std_one():
    raw = fake_raw(10)
    X = raw["data_batch_1"][0].copy()
    X[:, 7] = 42
    raw["data_batch_1"] = (X, raw["data_batch_1"][1])
    ds = data.build_dataset(raw, "dd2424")
    assert ds.std[7] == 1.0
    np.testing.assert_allclose(ds.X_train[:, 7], 0, atol=1e-6)
    assert np.isfinite(ds.X_val).all()


def test_training_statistics_agree_for_uint8_and_float_input():
    X = fake_raw(30)["data_batch_1"][0]
    m8, s8 = data.training_statistics(X)
    mf, sf = data.training_statistics(X.astype(np.float64) / 255)
    np.testing.assert_allclose(m8, mf, rtol=1e-6)
    np.testing.assert_allclose(s8, sf, rtol=1e-6)
    np.testing.assert_allclose(data.standardize(X, m8, s8), data.standardize(X / 255, m8, s8), atol=2e-6)
    with pytest.raises(ValueError, match="pixels must be uint8 \\(0..255\\) or floats in \\[0, 1\\]; got int16"):
        data.standardize(X.astype(np.int16), m8, s8)  # 0..255 ints that are not uint8 would be misread as [0, 1]


def test_to_images_round_trip_and_channel_first_layout(folder):
    raw = fake_raw(6)
    X = raw["data_batch_1"][0].copy()
    # image 0: pixel (row 1, col 2) is R=250, G=5, B=128; a row is R plane, G plane, B plane
    for c, v in enumerate((250, 5, 128)):
        X[0, 1024 * c + 32 * 1 + 2] = v
    raw["data_batch_1"] = (X, raw["data_batch_1"][1])
    for name, (Xb, yb) in raw.items():
        folder.mkdir(exist_ok=True)
        write_batch(folder / name, Xb, yb)
    ds = data.load_dataset(folder, "dd2424")
    images = ds.to_images(ds.X_train)
    assert images.shape == (6, 32, 32, 3)
    np.testing.assert_allclose(images[0, 1, 2] * 255, (250, 5, 128), atol=1e-3)
    np.testing.assert_allclose(images * 255, X.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), atol=1e-3)
    np.testing.assert_allclose(ds.to_images(ds.X_test) * 255, raw["test_batch"][0].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), atol=1e-3)  # fmt: skip


def test_dataset_arrays_are_read_only(folder):
    write_fake_cifar(folder, n_per_batch=3)
    ds = data.load_dataset(folder)
    for arr in (ds.X_train, ds.y_val, ds.mean):
        with pytest.raises(ValueError):
            arr[0] = 0


@pytest.mark.parametrize(
    "sizes",
    [
        {"data_batch_1": 1, "data_batch_2": 1, "test_batch": 1},
        {"data_batch_1": 7, "data_batch_2": 3, "test_batch": 11},
        {"data_batch_1": 300, "data_batch_2": 0, "test_batch": 257},  # over a 256-row block; an empty val
    ],
)
def test_batches_of_any_size(folder, sizes):
    raw = write_fake_cifar(folder, n_per_batch=sizes, names=tuple(sizes))
    ds = data.load_dataset(folder, "dd2424")
    assert (len(ds.X_train), len(ds.X_val), len(ds.X_test)) == tuple(sizes.values())
    ref, _, _ = reference(raw["data_batch_1"][0], raw["test_batch"][0])
    np.testing.assert_allclose(ds.X_test, ref, atol=2e-6)


def test_all_plan_with_uneven_batches(folder):
    sizes = {"data_batch_1": 3, "data_batch_2": 0, "data_batch_3": 5, "data_batch_4": 1, "data_batch_5": 4, "test_batch": 2}
    raw = write_fake_cifar(folder, n_per_batch=sizes)
    ds = data.load_dataset(folder, "all", n_val=2)
    X_all = np.concatenate([raw[f"data_batch_{i}"][0] for i in range(1, 6)])
    ref, _, _ = reference(X_all[:-2], X_all[:-2])
    np.testing.assert_allclose(ds.X_train, ref, atol=2e-6)
    assert len(ds.X_val) == 2


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("str_keys", [False, True])
def test_pickle_protocols_and_key_types(folder, protocol, str_keys):
    raw = fake_raw(4, names=("data_batch_1", "data_batch_2", "test_batch"))
    folder.mkdir()
    for name, (X, y) in raw.items():
        write_batch(folder / name, X, y, protocol=protocol, str_keys=str_keys)
    ds = data.load_dataset(folder)
    np.testing.assert_array_equal(ds.y_test, raw["test_batch"][1])
    pixels = np.rint(255 * data.unstandardize(ds.X_test, ds.mean, ds.std))
    np.testing.assert_array_equal(pixels, raw["test_batch"][0])


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("dtype", [">i2", "<u4", "f8"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_arrays_round_trip_through_the_restricted_unpickler(protocol, dtype, order):
    a = np.asarray(np.arange(24).reshape(4, 6), dtype=dtype, order=order)
    back = data.safe_unpickle(pickle.dumps({b"a": a, b"nested": [a[:1]]}, protocol=protocol))
    assert back[b"a"].dtype == a.dtype and back[b"a"].flags.f_contiguous == (order == "F")
    np.testing.assert_array_equal(back[b"a"], a)
    np.testing.assert_array_equal(back[b"nested"][0], a[:1])


class _ForgedPointerArray:
    """An object array whose element pointer is bytes of the pickle's choosing (0x4141...)."""

    def __reduce__(self):
        return (np.ndarray, ((1,), np.dtype("O"), b"AAAAAAAA"))


class _ObjectFieldDtype:
    """A void dtype whose BUILD state claims an object field, with the flags that would mark it cleared."""

    def __reduce__(self):
        return (np.dtype, ("V8", False, True), (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 8, 1, 0))


class _ArrayOfForgedDtype:
    def __reduce__(self):
        reconstruct = np.ndarray.__reduce__(np.empty(0))[0]
        return (reconstruct, (np.ndarray, (0,), b"b"), (1, (1,), _ObjectFieldDtype(), False, b"AAAAAAAA"))


@pytest.mark.parametrize("payload", [_ForgedPointerArray(), _ArrayOfForgedDtype()], ids=["ndarray-call", "object-dtype"])
def test_admitted_numpy_names_cannot_forge_object_arrays(folder, payload):
    # Reading such an array would dereference 0x4141414141414141 (a crash, or worse); numpy's
    # real ndarray and dtype constructors must not be reachable from a pickle at all.
    blob = pickle.dumps({b"data": payload, b"labels": [0]}, protocol=2)
    with pytest.raises((data.RefusedGlobal, TypeError)):
        data.safe_unpickle(blob)
    expect_bad_file(folder, blob, FIX)


def test_folder_from_environment(folder, monkeypatch):
    write_fake_cifar(folder, n_per_batch=3)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(folder))
    assert data.load_dataset().source == f"folder:{folder}"
    monkeypatch.delenv(data.DATA_DIR_ENV)
    with pytest.raises(DataError, match=r"source 'folder' needs --data-dir DIR or \$LINCLS_DATA_DIR"):
        data.load_dataset(source="folder")


def test_label_names_from_batches_meta(folder):
    write_fake_cifar(folder, n_per_batch=2)
    names = [f"class{i}".encode() for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    assert data.load_dataset(folder).label_names == tuple(f"class{i}" for i in range(10))
    (folder / "batches.meta").unlink()
    assert data.load_dataset(folder).label_names == data.CIFAR10_LABEL_NAMES


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("source", ["tfds", "download"])
def test_a_folder_and_another_source_together_are_refused(folder, source):
    with pytest.raises(DataError, match=rf"--data-dir {folder} reads a folder, but --source {source} was asked for"):
        data.load_dataset(folder, source=source)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"data folder .*nowhere does not exist.*cifar-10-python\.tar\.gz.*--data-dir"):
        data.load_dataset(tmp_path / "nowhere")


def test_missing_batch_file(folder):
    write_fake_cifar(folder, names=("data_batch_1", "test_batch"))
    with pytest.raises(DataError, match=r"data_batch_2: batch file 'data_batch_2' is missing from .*--data-dir") as e:
        data.load_dataset(folder)
    assert str(folder) in str(e.value)


def expect_bad_file(folder, content: bytes, *patterns: str, name: str = "data_batch_2"):
    """Write ``content`` over batch ``name`` of a good folder; the DataError names the file and matches."""
    write_fake_cifar(folder, n_per_batch=5)
    path = folder / name
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        data.load_dataset(folder)
    msg = str(e.value)
    assert msg.startswith(f"{path}: "), msg
    for p in patterns:
        assert p in msg, (p, msg)
    return msg


FIX = "replace the file with one from the original cifar-10-python.tar.gz"


def good_bytes(n=5, **kw):
    X, y = fake_raw(n)["data_batch_2"]
    return pickle.dumps(batch_dict(X, y, **kw), protocol=2)


def test_truncated_pickle(folder):
    expect_bad_file(folder, good_bytes()[: len(good_bytes()) // 2], "truncated or corrupt pickle", FIX)


def test_empty_file(folder):
    expect_bad_file(folder, b"", "truncated or corrupt pickle", "EOFError", FIX)


def test_corrupt_pickle(folder):
    expect_bad_file(folder, b"\x80\x02this is not a pickle at all" * 10, "truncated or corrupt pickle", FIX)
    expect_bad_file(folder, os.urandom(4096), "pickle", FIX)


def test_not_a_dict(folder):
    expect_bad_file(folder, pickle.dumps([1, 2, 3], protocol=2), "expected a pickled dict", "'data' and 'labels'", FIX)


def test_missing_field(folder):
    X, y = fake_raw(5)["data_batch_2"]
    expect_bad_file(folder, pickle.dumps({b"data": X}, protocol=2), "field 'labels' is missing", "['data']", FIX)


@pytest.mark.parametrize(
    "X, shown",
    [
        (np.zeros((5, 3000), np.uint8), "uint8 array of shape (5, 3000)"),
        (np.zeros((5, 3072), np.float32), "float32 array of shape (5, 3072)"),
        (np.zeros((5, 3, 32, 32), np.uint8), "uint8 array of shape (5, 3, 32, 32)"),
        ([[0] * 3072] * 5, "got list"),
    ],
)
def test_wrong_data_shape_or_dtype(folder, X, shown):
    d = {b"data": X, b"labels": [0] * 5}
    expect_bad_file(folder, pickle.dumps(d, protocol=2), "field 'data' must be a uint8 array of shape (n, 3072)", shown, FIX)


@pytest.mark.parametrize(
    "labels, shown",
    [
        ([0, 1, 2, 3, 10], "field 'labels' must lie in 0..9; found 0..10"),
        ([-1, 1, 2, 3, 4], "field 'labels' must lie in 0..9; found -1..4"),
        ([0, 1, 2], "field 'labels' has 3 entries but field 'data' has 5 rows"),
        ([0.0, 1.0, 2.0, 3.0, 4.0], "field 'labels' must be a list of ints; got float64"),
        (["a", "b", "c", "d", "e"], "field 'labels' must be a list of ints"),
        ([[0, 1]] * 5, "field 'labels' must be a list of ints; got int64 of shape (5, 2)"),
    ],
)
def test_wrong_labels(folder, labels, shown):
    d = {b"data": np.zeros((5, 3072), np.uint8), b"labels": labels}
    expect_bad_file(folder, pickle.dumps(d, protocol=2), shown, FIX)


def test_bad_batches_meta(folder):
    write_fake_cifar(folder, n_per_batch=2)
    meta = folder / "batches.meta"
    meta.write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
    with pytest.raises(DataError, match=r"batches.meta: field 'label_names' must list 10 names; got 2"):
        data.load_dataset(folder)
    meta.write_bytes(b"\x80\x02junk")
    with pytest.raises(DataError, match=r"batches.meta: truncated or corrupt pickle"):
        data.load_dataset(folder)


class _Payload:
    """Unpickling this calls os.system(cmd): a pickle must never be able to do that."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def payloads(marker: Path) -> list[bytes]:
    cmd = f"touch {marker}"
    X, y = fake_raw(5)["data_batch_2"]
    evil = [
        pickle.dumps(_Payload(cmd), protocol=2),  # the whole file
        pickle.dumps({b"data": X, b"labels": list(y), b"filenames": _Payload(cmd)}, protocol=2),  # hidden in a field
        pickle.dumps({b"data": X, b"labels": _Payload(cmd)}, protocol=5),
    ]
    # hand-written: builtins.eval and subprocess through GLOBAL + REDUCE
    evil.append(b"cbuiltins\neval\n(V__import__('os').system('" + cmd.encode() + b"')\ntR.")
    evil.append(b"csubprocess\ncall\n((V/bin/sh\nV-c\nV" + cmd.encode() + b"\nltR.")
    return evil


def test_restricted_unpickler_refuses_os_system_and_runs_nothing(tmp_path):
    marker = tmp_path / "PWNED"
    # sanity: the plain unpickler really would run the first payload
    pickle.loads(payloads(tmp_path / "sanity")[0])
    assert (tmp_path / "sanity").exists()
    for blob in payloads(marker):
        with pytest.raises(data.RefusedGlobal):
            data.safe_unpickle(blob)
        assert not marker.exists()


def test_foreign_class_in_a_batch_file_is_refused(folder):
    marker = folder.parent / "PWNED"
    for blob in payloads(marker):
        msg = expect_bad_file(folder, blob, "refused to unpickle", "not part of the CIFAR-10 batch format", "nothing was run", FIX)
        assert not marker.exists(), msg
    assert "posix.system" in msg or "subprocess.call" in msg or "builtins.eval" in msg


def test_codecs_encode_is_admitted_for_latin1_only():
    ok = pickle.dumps({b"k": b"\xff\x00"}, protocol=2)  # python 3 spells bytes _codecs.encode(..., 'latin1')
    assert data.safe_unpickle(ok) == {b"k": b"\xff\x00"}
    rot = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    with pytest.raises(data.RefusedGlobal):
        data.safe_unpickle(rot)


def test_build_dataset_checks_raw_batches_from_any_source():
    raw = fake_raw(4, names=("data_batch_1", "data_batch_2", "test_batch"))
    bad = dict(raw, data_batch_2=(raw["data_batch_2"][0].astype(np.int16), raw["data_batch_2"][1]))
    with pytest.raises(DataError, match=r"batch 'data_batch_2': 'data' must be a uint8 array"):
        data.build_dataset(bad)
    bad = dict(raw, test_batch=(raw["test_batch"][0], raw["test_batch"][1] + 10))
    with pytest.raises(DataError, match=r"batch 'test_batch': 'labels' must lie in 0..9"):
        data.build_dataset(bad)
    with pytest.raises(DataError, match=r"split plan 'dd2424' needs batch 'test_batch', which the source lacks"):
        data.build_dataset({k: v for k, v in raw.items() if k != "test_batch"})


# ----------------------------------------------------------------------------- the real data


@pytest.mark.integration
@pytest.mark.skipif(not REAL_FOLDER.is_dir(), reason=f"real CIFAR-10 folder {REAL_FOLDER} is absent")
def test_real_cifar10_course_split():
    ds = data.load_dataset(REAL_FOLDER, "dd2424")
    assert ds.X_train.shape == ds.X_val.shape == ds.X_test.shape == (10000, 3072)
    assert ds.label_names == data.CIFAR10_LABEL_NAMES
    assert list(ds.y_train[:10]) == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert list(np.bincount(ds.y_train, minlength=10)) == [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
    assert list(ds.y_test[:10]) == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    np.testing.assert_allclose(ds.X_train.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(ds.X_train.std(axis=0), 1, atol=1e-4)
    # val and test use the training statistics, checked against independent float64 numpy
    raw = data.read_python_batches(REAL_FOLDER, ("data_batch_1", "data_batch_2", "test_batch"))
    assert list(raw["data_batch_1"][0][0, :3]) == [59, 43, 50]
    Xt = raw["data_batch_1"][0].astype(np.float64) / 255
    mean, std = Xt.mean(axis=0), Xt.std(axis=0)
    np.testing.assert_allclose(ds.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(ds.std, std, rtol=1e-6)
    assert abs(mean.mean() * 255 - 121.04) < 0.01  # the folder README's pixel mean of data_batch_1
    rows = np.random.default_rng(0).choice(10000, 500, replace=False)
    for X_split, name in ((ds.X_train, "data_batch_1"), (ds.X_val, "data_batch_2"), (ds.X_test, "test_batch")):
        ref = (raw[name][0][rows] / 255 - mean) / std
        np.testing.assert_allclose(X_split[rows], ref, atol=5e-6)
    assert abs(ds.X_val.mean()) > 1e-3 and abs(ds.X_test.mean()) > 1e-3  # not standardized with their own mean
