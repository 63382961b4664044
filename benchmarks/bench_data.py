"""Time loading the course split (``dd2424``) from the real CIFAR-10 folder.

Each timing is in-process: ``load_dataset(folder, plan)`` is called ``--repeats``
times in one Python process and the median is reported (the first call is shown
apart: it pays for fresh memory pages). ``--against REF`` also times the
``lincls`` package as it was at git ref ``REF`` (extracted with ``git archive``
into a temporary folder and run in a subprocess the same way), so before/after
numbers come from one command on one machine.

    python3 benchmarks/bench_data.py                      # prints a table
    python3 benchmarks/bench_data.py --against fd715a3 --out benchmarks/data_results.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = ROOT.parent / "shared" / "data" / "cifar-10-batches-py"


def time_in_process(folder: str, plan: str, repeats: int) -> dict:
    """Time ``read_python_batches`` + ``build_dataset`` (= ``load_dataset``) in this process."""
    import numpy as np

    from lincls import data

    times, reads = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ds = data.load_dataset(folder, plan)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        data.read_python_batches(folder, data.batches_needed(plan))
        reads.append(time.perf_counter() - t0)
    # A fingerprint of the result, to show that a speed-up changed no numbers.
    fp = {
        "shapes": [list(ds.X_train.shape), list(ds.X_val.shape), list(ds.X_test.shape)],
        "train_mean": float(np.mean(ds.X_train, dtype=np.float64)),
        "train_std": float(np.std(ds.X_train, dtype=np.float64)),
        "test_sum": float(np.sum(ds.X_test, dtype=np.float64)),
        "std_sum": float(np.sum(ds.std, dtype=np.float64)),
    }
    return {
        "first_s": times[0],
        "median_s": statistics.median(times),
        "min_s": min(times),
        "read_median_s": statistics.median(reads),
        "repeats": repeats,
        "fingerprint": fp,
        "module": data.__file__,
    }


def time_at_ref(ref: str, folder: str, plan: str, repeats: int) -> dict:
    """Run :func:`time_in_process` on the ``lincls`` package of git ref ``ref``."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "lincls"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        code = (
            "import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(1, sys.argv[2]);"
            "import bench_data; print(json.dumps(bench_data.time_in_process(sys.argv[3], sys.argv[4], int(sys.argv[5]))))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, tmp, str(Path(__file__).parent), folder, plan, str(repeats)],
            check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": tmp},
        ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(DEFAULT_FOLDER))
    p.add_argument("--plans", default="dd2424,all")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--against", metavar="REF", help="also time lincls as of this git ref (the 'before')")
    p.add_argument("--out", help="write a markdown table here")
    args = p.parse_args(argv)
    if not Path(args.data_dir, "data_batch_1").is_file():
        print(f"no CIFAR-10 folder at {args.data_dir}; pass --data-dir", file=sys.stderr)
        return 2

    rows = []
    for plan in args.plans.split(","):
        if args.against:
            rows.append((f"`{args.against}` (before)", plan, time_at_ref(args.against, args.data_dir, plan, args.repeats)))
        rows.append(("this tree", plan, time_in_process(args.data_dir, plan, args.repeats)))

    lines = [
        "# Data loading benchmark",
        "",
        "Command: `" + " ".join(["python3 benchmarks/bench_data.py", *(argv if argv is not None else sys.argv[1:])]) + "`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"numpy {__import__('numpy').__version__}. Folder: the real `cifar-10-batches-py` (files in the page cache).",
        "",
        "`load_dataset(folder, plan)`: read the batch files the plan needs, scale to [0, 1], "
        "standardize every split with the training mean and std. Median of "
        f"{args.repeats} in-process calls; the first call is shown apart. `read` is `read_python_batches` alone.",
        "",
        "| code | plan | median s | min s | first call s | read s | fingerprint (train mean, train std, test sum) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for code, plan, r in rows:
        fp = r["fingerprint"]
        lines.append(
            f"| {code} | {plan} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['first_s']:.3f} | {r['read_median_s']:.3f} "
            f"| {fp['train_mean']:.3e}, {fp['train_std']:.7f}, {fp['test_sum']:.6e} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        sys.path.insert(0, str(ROOT))
        from lincls.files import write_text

        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
