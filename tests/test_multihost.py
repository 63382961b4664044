"""Two processes on this machine joined by jax.distributed, as two hosts would be.

Each process forces 2 CPU devices, so the settings axis spans 4 devices on 2 processes
(JAX's CPU collectives over gloo, coordinator on 127.0.0.1). The sweep command must give
the numbers of a one-process run, and only process 0 may write.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from fake_cifar import write_fake_cifar
from lincls import sweep

SETTINGS = ["--set", "lams=0,0.1,0.2,0.3,0.4", "--set", "etas=0.05,0.05,0.02,0.02,0.01"]
COMMON = ["--config", "configs/dd2424.py", "--set", "n_epochs=2", "--set", "n_batch=20", "--set", "progress=false",
          "--gradcheck-md", ""] + SETTINGS  # fmt: skip

SCRIPT = """
import sys
from lincls import sweep
sys.exit(sweep.main(sys.argv[1:]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n_processes: int, args_of, env_extra: dict) -> list[subprocess.CompletedProcess]:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu", **env_extra)
    procs = [
        subprocess.Popen([sys.executable, "-c", SCRIPT, *args_of(i)], env=dict(env, JAX_PROCESS_ID=str(i)),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(n_processes)
    ]  # fmt: skip
    done = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    folder = root / "cifar-10-batches-py"
    write_fake_cifar(folder, n_per_batch=60, seed=2)
    env = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}", "JAX_NUM_PROCESSES": "2"}
    runs = launch(2, lambda i: COMMON + ["--data-dir", str(folder), "--out", str(root / f"out_p{i}")], env)
    for r in runs:
        assert r.returncode == 0, r.stderr[-3000:]
    return root, folder, runs


def test_two_processes_give_the_one_process_numbers_and_only_process_0_writes(two_process_run, tmp_path):
    root, folder, runs = two_process_run
    assert not (root / "out_p1").exists()
    assert "setting 4: lam=0.4" in runs[0].stdout and "setting 4" not in runs[1].stdout  # one report
    multi = json.loads((root / "out_p0" / "metrics.json").read_text())
    assert multi["devices"] == {"platform": "cpu", "count": 4, "processes": 2}
    assert "'settings': 4" in multi["settings_sharding"] and "P('settings',)" in multi["settings_sharding"]

    assert sweep.main(COMMON + ["--data-dir", str(folder), "--out", str(tmp_path / "single")]) == 0
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert single["devices"]["processes"] == 1
    for a, b in zip(multi["settings"], single["settings"]):
        assert (a["lam"], a["eta"]) == (b["lam"], b["eta"])
        np.testing.assert_allclose(a["val_cost"], b["val_cost"], rtol=1e-5)
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=1e-6)
    W_multi = np.load(root / "out_p0" / "params.npz")["W"]
    W_single = np.load(tmp_path / "single" / "params.npz")["W"]
    assert W_multi.shape == (5, 10, 3072)  # the padding to 6 settings dropped
    np.testing.assert_allclose(W_multi, W_single, rtol=1e-4, atol=1e-6)


def test_a_coordinator_without_a_process_count_is_a_clear_error(tmp_path):
    env = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}"}
    (run,) = launch(1, lambda i: COMMON + ["--data-dir", str(tmp_path / "absent")], env)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "error: jax.distributed.initialize() failed: Number of processes must be defined" in run.stderr
    assert "JAX_NUM_PROCESSES and JAX_PROCESS_ID" in run.stderr and "Traceback" not in run.stderr
