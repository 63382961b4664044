"""Atomic writes: every result file is written to a temporary name, then renamed.

A set of files that belong together (a run's report, metrics and figures) is written
into a staging folder first and moved into place only when all of it was written.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    On an exception the temporary file is removed, so nothing half-written is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.chmod(0o644)  # mkstemp makes 0600; results are for everyone to read
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _finite_or_null(obj):
    """``obj`` with every NaN or inf float, in dicts, lists and tuples, replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj) -> Path:
    """Strict JSON (NaN and inf are written as null, which every JSON reader accepts)."""
    return write_text(path, json.dumps(_finite_or_null(obj), indent=2, allow_nan=False) + "\n")


@contextlib.contextmanager
def staged_folder(out_dir: str | os.PathLike, *, stale: Sequence[str] = (), last: str | None = None) -> Iterator[Path]:
    """Yield an empty hidden folder inside ``out_dir`` to write a set of files into.

    When the block succeeds, the files of ``out_dir`` that match a glob of ``stale`` and
    are not in the new set are removed (an older run's figures never stand beside a newer
    report), then each new file is renamed into ``out_dir``, ``last`` after the others.
    When the block fails, the staging folder is removed and ``out_dir`` is as it was.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging.", dir=out))
    try:
        yield stage
        new = sorted(p.name for p in stage.iterdir())
        for pattern in stale:
            for old in out.glob(pattern):
                if old.is_file() and old.name not in new:
                    old.unlink()
        for name in sorted(new, key=lambda name: name == last):
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
