"""lincls.sources without network: tfds from a tiny local cifar10, the download from 127.0.0.1.

Every test points the download cache and the tfds data dir at tmp_path, so nothing
here reads or writes ``~/.cache/lincls`` or ``~/tensorflow_datasets``, and no test
talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import errno
import hashlib
import http.server
import os
import socket
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fake_cifar import fake_raw, make_tarball, tfds_examples, write_fake_cifar, write_tfds_cifar10

from lincls import data, sources
from lincls.data import BATCH_NAMES, DataError


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real cache, no real tfds data dir, no --data-dir from the environment."""
    monkeypatch.setenv(sources.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds-empty"))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


def assert_same(raw_out: dict, raw_in: dict, names=BATCH_NAMES):
    assert sorted(raw_out) == sorted(names)
    for name in names:
        X, y = raw_out[name]
        assert X.dtype == np.uint8 and X.shape == raw_in[name][0].shape
        np.testing.assert_array_equal(X, raw_in[name][0], err_msg=name)
        np.testing.assert_array_equal(y, raw_in[name][1], err_msg=name)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------- tfds


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A prepared tfds cifar10 (array_record, written without TensorFlow), rows shuffled."""
    raw = fake_raw(4)  # 20 train rows -> 5 data batches of 4; 4 test rows
    data_dir = tmp_path_factory.mktemp("tfds")
    write_tfds_cifar10(data_dir, raw, seed=1)
    return data_dir, raw


def test_tfds_restores_the_original_order_from_id(tfds_dir):
    data_dir, raw = tfds_dir
    out, names, where = sources.load_raw("tfds", tfds_data_dir=data_dir)
    assert_same(out, raw)
    assert names == data.CIFAR10_LABEL_NAMES
    assert where == f"tfds:{data_dir / 'cifar10' / '3.0.2'}"


def test_tfds_reads_only_the_batches_asked_for(tfds_dir):
    data_dir, raw = tfds_dir
    out, _, _ = sources.load_raw("tfds", ("data_batch_2", "test_batch"), tfds_data_dir=data_dir)
    assert_same(out, raw, ("data_batch_2", "test_batch"))


def test_load_dataset_from_tfds_equals_load_dataset_from_a_folder(tfds_dir, tmp_path, monkeypatch):
    data_dir, raw = tfds_dir
    folder = tmp_path / "folder"
    folder.mkdir()
    from fake_cifar import write_batch, write_meta

    for name, (X, y) in raw.items():
        write_batch(folder / name, X, y)
    write_meta(folder)
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    a = data.load_dataset(source="tfds", plan="all", n_val=2)
    b = data.load_dataset(folder, plan="all", n_val=2)
    for f in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test", "mean", "std"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    assert a.source.startswith("tfds:")


def test_tfds_through_mock_data_with_shuffled_ids(monkeypatch):
    """tfds.testing.mock_data serves shuffled examples through tfds.data_source itself."""
    import tensorflow_datasets as tfds

    raw = fake_raw(3)
    examples = tfds_examples(raw, seed=2)
    calls = []

    def as_data_source(self, split, decoders=None, **kwargs):
        calls.append((split, decoders))
        return [examples[s] for s in split]

    # under mock_data the builder reads from a non-existing dir, so say it is prepared
    monkeypatch.setattr(sources, "_tfds_ready", lambda data_dir: (tfds.builder("cifar10"), ""))
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=as_data_source):
        out, names, where = sources.load_raw("tfds")
    assert_same(out, raw)
    assert names == data.CIFAR10_LABEL_NAMES and where.startswith("tfds:")
    (split, decoders), = calls
    assert split == ["train", "test"] and isinstance(decoders["image"], tfds.decode.SkipDecoding)


def test_tfds_not_prepared_says_what_to_do_and_never_prepares(tmp_path, monkeypatch):
    from tensorflow_datasets.core import dataset_builder

    def forbidden(*a, **k):
        raise AssertionError("download_and_prepare must not be called")

    monkeypatch.setattr(dataset_builder.DatasetBuilder, "download_and_prepare", forbidden)
    t0 = time.monotonic()
    with pytest.raises(DataError) as e:
        sources.load_raw("tfds", tfds_data_dir=tmp_path / "empty")
    assert time.monotonic() - t0 < 10
    msg = str(e.value)
    for part in ("cifar10 is not prepared in", str(tmp_path / "empty"), "--source download", "--data-dir", "TensorFlow", "array_record"):  # fmt: skip
        assert part in msg, (part, msg)
    assert not sources.tfds_prepared(tmp_path / "empty")


def test_tfds_bad_ids_are_reported(monkeypatch):
    import tensorflow_datasets as tfds

    raw = fake_raw(2)
    examples = tfds_examples(raw)
    examples["train"][3] = dict(examples["train"][3], id=examples["train"][4]["id"])  # a duplicate id
    monkeypatch.setattr(sources, "_tfds_ready", lambda data_dir: (tfds.builder("cifar10"), ""))
    with tfds.testing.mock_data(as_data_source_fn=lambda self, split, **k: [examples[s] for s in split]):
        with pytest.raises(DataError, match=r"tfds cifar10 'train': field 'id' does not number the rows"):
            sources.load_raw("tfds")
    examples["train"][0] = dict(examples["train"][0], id=b"test_00000")
    with tfds.testing.mock_data(as_data_source_fn=lambda self, split, **k: [examples[s] for s in split]):
        with pytest.raises(DataError, match=r"field 'id' is 'test_00000', expected 'train_NNNNN'"):
            sources.load_raw("tfds")


# ----------------------------------------------------------------------------- download


class _Server:
    """http.server on 127.0.0.1 in a thread, serving ``files`` (path -> bytes); counts requests."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def archive(tmp_path, server):
    """A tiny cifar-10-python.tar.gz served at /cifar-10-python.tar.gz: (url, md5, raw)."""
    raw = fake_raw(3)
    path = tmp_path / "served.tar.gz"
    md5 = make_tarball(path, raw)
    server.files["/cifar-10-python.tar.gz"] = path.read_bytes()
    return server.url("/cifar-10-python.tar.gz"), md5, raw


def test_download_good_checksum_loads_and_is_fetched_once(archive, server, tmp_path):
    url, md5, raw = archive
    cache = tmp_path / "cache"
    out, names, where = sources.load_raw("download", url=url, md5=md5)
    assert_same(out, raw)
    assert names == data.CIFAR10_LABEL_NAMES
    assert where == f"download:{cache / 'cifar-10-batches-py'}"
    assert leftovers(cache) == ["cifar-10-batches-py"]  # no archive, no temporary files
    assert len(server.requests) == 1
    out, _, _ = sources.load_raw("download", ("test_batch",), url=url, md5=md5)  # from the cache
    assert_same(out, raw, ("test_batch",))
    assert len(server.requests) == 1


def test_download_bad_checksum_is_refused_and_removed(archive, tmp_path):
    url, md5, _ = archive
    with pytest.raises(DataError) as e:
        sources.load_raw("download", url=url, md5="0" * 32)
    msg = str(e.value)
    assert f"its md5 is {md5}, not {'0' * 32}" in msg and "it was removed" in msg and "--data-dir" in msg
    assert leftovers(tmp_path / "cache") == []


def test_download_with_no_server_fails_fast(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(DataError) as e:
        sources.load_raw("download", url=f"http://127.0.0.1:{port}/cifar-10-python.tar.gz")
    assert time.monotonic() - t0 < 5
    msg = str(e.value)
    for part in ("cannot download", "no network", "--data-dir", sources.CIFAR10_MD5, "cifar-10-batches-py"):
        assert part in msg, (part, msg)
    assert leftovers(tmp_path / "cache") == []


def test_download_from_a_silent_server_times_out_fast(tmp_path):
    with socket.socket() as s:  # listens, never answers
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        t0 = time.monotonic()
        with pytest.raises(DataError, match=r"cannot download .*timed out.*no network"):
            sources.load_raw("download", url=f"http://127.0.0.1:{s.getsockname()[1]}/x.tar.gz", timeout=0.5)
        assert time.monotonic() - t0 < 5
    assert leftovers(tmp_path / "cache") == []


def test_download_of_an_unresolvable_host_fails_fast(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(DataError, match=r"cannot download http://no-such-host\.invalid/.*--data-dir"):
        sources.load_raw("download", url="http://no-such-host.invalid/cifar-10-python.tar.gz", timeout=2)
    assert time.monotonic() - t0 < 5


def test_download_from_a_server_that_answers_garbage(tmp_path):
    with socket.socket() as s:  # answers anything but HTTP, then hangs up
        s.bind(("127.0.0.1", 0))
        s.listen(1)

        def garble():
            conn, _ = s.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"garbage\r\n")

        t = threading.Thread(target=garble, daemon=True)
        t.start()
        with pytest.raises(DataError, match=r"cannot download .*: the server's answer is not HTTP \(BadStatusLine: garbage\)\. .*--data-dir"):
            sources.load_raw("download", url=f"http://127.0.0.1:{s.getsockname()[1]}/x.tar.gz", timeout=2)
        t.join(5)
    assert leftovers(tmp_path / "cache") == []


def test_a_full_disk_is_reported_as_the_disk_not_the_network(server, tmp_path, monkeypatch):
    server.files["/cifar-10-python.tar.gz"] = b"x" * 100

    real_fdopen = os.fdopen

    class FullDisk:  # the download's temporary file, on a disk with no room left
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, chunk):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r": FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(DataError, match=r"cannot write the download to .*No space left on device \(is the disk full\?\)"):
        sources.load_raw("download", url=server.url("/cifar-10-python.tar.gz"))
    assert leftovers(tmp_path / "cache") == []


def test_a_proxy_skips_the_local_name_check(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert sources._behind_proxy("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
    monkeypatch.setenv("no_proxy", "www.cs.toronto.edu")
    assert not sources._behind_proxy("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz")
    assert not sources._behind_proxy("file:///tmp/x.tar.gz")


def test_download_http_error(server, tmp_path):
    with pytest.raises(DataError, match=r"the server answered HTTP 404 Not Found.*--data-dir"):
        sources.load_raw("download", url=server.url("/missing.tar.gz"))
    assert leftovers(tmp_path / "cache") == []


def _member(name: str, kind=tarfile.REGTYPE, size: int = 1, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, (size if kind == tarfile.REGTYPE else 0), linkname
    return info


@pytest.mark.parametrize(
    "member, why",
    [
        (_member("cifar-10-batches-py/../../evil"), "has an absolute path or '..'"),
        (_member("/tmp/evil"), "has an absolute path or '..'"),
        (_member("cifar-10-batches-py/link", tarfile.SYMTYPE, linkname="/etc/passwd"), "is a link or device"),
        (_member("cifar-10-batches-py/hard", tarfile.LNKTYPE, linkname="/etc/passwd"), "is a link or device"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path, server, member, why):
    path = tmp_path / "evil.tar.gz"
    md5 = make_tarball(path, extra=[member])
    server.files["/evil.tar.gz"] = path.read_bytes()
    with pytest.raises(DataError, match=f"member {member.name!r} {why}"):
        sources.load_raw("download", url=server.url("/evil.tar.gz"), md5=md5)
    cache = tmp_path / "cache"
    assert leftovers(cache) == []  # the archive is removed, nothing was extracted
    assert not (tmp_path / "evil").exists()


def test_corrupt_archive_with_matching_md5(tmp_path, server):
    body = b"this is not gzip" * 100
    server.files["/bad.tar.gz"] = body
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz: corrupt archive .*it was removed"):
        sources.load_raw("download", url=server.url("/bad.tar.gz"), md5=hashlib.md5(body).hexdigest())
    assert leftovers(tmp_path / "cache") == []


def test_archive_missing_a_batch_is_not_put_in_place(tmp_path, server):
    raw = fake_raw(2, names=("data_batch_1", "data_batch_2", "test_batch"))
    path = tmp_path / "partial.tar.gz"
    md5 = make_tarball(path, raw)
    server.files["/partial.tar.gz"] = path.read_bytes()
    with pytest.raises(DataError, match=r"the archive lacks cifar-10-batches-py/data_batch_3, data_batch_4, data_batch_5"):
        sources.load_raw("download", url=server.url("/partial.tar.gz"), md5=md5)
    assert leftovers(tmp_path / "cache") == []


def test_a_stale_archive_in_the_cache_is_not_trusted(archive, server, tmp_path):
    url, md5, raw = archive
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "cifar-10-python.tar.gz").write_bytes(b"half a download")
    out, _, _ = sources.load_raw("download", url=url, md5=md5)
    assert_same(out, raw)
    assert len(server.requests) == 1


# ----------------------------------------------------------------------------- auto


def test_auto_takes_the_cache_first(tmp_path, monkeypatch):
    raw = write_fake_cifar(tmp_path / "cache" / "cifar-10-batches-py", n_per_batch=3)

    def no(*a, **k):
        raise AssertionError("auto must not look further when the cache is there")

    monkeypatch.setattr(sources, "_tfds_ready", no)
    monkeypatch.setattr(sources, "_fetch", no)
    out, _, where = sources.load_raw("auto")
    assert_same(out, raw)
    assert where == f"download:{tmp_path / 'cache' / 'cifar-10-batches-py'}"
    ds = data.load_dataset()  # no --data-dir: auto -> the cache
    np.testing.assert_array_equal(ds.y_val, raw["data_batch_2"][1])


def test_a_damaged_file_in_the_cache_says_to_delete_the_cache(tmp_path):
    folder = tmp_path / "cache" / "cifar-10-batches-py"
    write_fake_cifar(folder, n_per_batch=3)
    (folder / "data_batch_2").write_bytes((folder / "data_batch_2").read_bytes()[:50])
    with pytest.raises(DataError) as e:
        sources.load_raw("auto")
    msg = str(e.value)
    assert msg.startswith(f"{folder / 'data_batch_2'}: truncated or corrupt pickle"), msg
    assert f"Delete {folder} and run again" in msg and "--source download" not in msg


def test_auto_takes_prepared_tfds_when_there_is_no_cache(tfds_dir, monkeypatch):
    data_dir, raw = tfds_dir
    monkeypatch.setattr(sources, "_fetch", lambda *a, **k: pytest.fail("must not download"))
    out, _, where = sources.load_raw("auto", tfds_data_dir=data_dir)
    assert_same(out, raw)
    assert where.startswith("tfds:")


def test_auto_downloads_when_there_is_nothing_else(archive, server):
    url, md5, raw = archive
    out, _, where = sources.load_raw("auto", url=url, md5=md5)
    assert_same(out, raw)
    assert where.startswith("download:") and len(server.requests) == 1


def test_auto_with_nothing_and_no_network_explains_every_option(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError) as e:
        sources.load_raw("auto", url=f"http://127.0.0.1:{port}/x.tar.gz")
    msg = str(e.value)
    for part in ("no CIFAR-10 found", "--data-dir", str(tmp_path / "cache"), "cifar10 is not prepared", "cannot download"):
        assert part in msg, (part, msg)


def test_unknown_source_and_batch_names():
    with pytest.raises(DataError, match=r"unknown data source 'web'; use one of 'folder', 'auto', 'tfds', 'download'"):
        sources.load_raw("web")
    with pytest.raises(DataError, match=r"unknown batch names \['data_batch_9'\]"):
        sources.load_raw("auto", ("data_batch_9",))


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv(sources.CACHE_DIR_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sources.cache_dir() == tmp_path / ".cache" / "lincls"
    assert sources.cached_folder() is None
