"""The sweep sharded over 8 (forced host) devices equals the unsharded sweep.

JAX fixes its device count when it starts, so these run in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=8.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, "tests")
    from test_train import toy_dataset, small_config
    from lincls import sweep

    assert jax.device_count() == 8, jax.devices()
    ds = toy_dataset(jax.random.PRNGKey(3))
    out = {}
    for n_settings in (8, 5):  # divisible by the device count, and not
        lams = tuple(np.linspace(0, 0.5, n_settings).round(3))
        cfg = small_config(lams=lams, etas=(0.05,) * n_settings)
        one = sweep.run_sweep(cfg, ds, mesh=sweep.make_mesh(1))
        many = sweep.run_sweep(cfg, ds, mesh=sweep.make_mesh(0))
        out[n_settings] = {
            "sharding_one": one.sharding, "sharding_many": many.sharding,
            "shape": list(many.params["W"].shape),
            "max_diff_W": float(np.abs(one.params["W"] - many.params["W"]).max()),
            "max_diff_hist": max(float(np.abs(one.history[k] - many.history[k]).max()) for k in one.history),
            "test_equal": bool(np.allclose(one.test_accuracy, many.test_accuracy)),
            "n_test": len(many.test_accuracy),
        }
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def sharded_run():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


@pytest.mark.parametrize("n_settings", ["8", "5"])
def test_sharded_sweep_equals_unsharded(sharded_run, n_settings):
    r = sharded_run[n_settings]
    assert r["shape"][0] == int(n_settings) and r["n_test"] == int(n_settings)  # padding dropped
    assert r["max_diff_W"] < 1e-5 and r["max_diff_hist"] < 1e-5 and r["test_equal"]


def test_settings_axis_is_really_sharded(sharded_run):
    r = sharded_run["8"]
    assert "'settings': 8" in r["sharding_many"] and "PartitionSpec('settings',)" in r["sharding_many"].replace("P(", "PartitionSpec(")
    assert "'settings': 1" in r["sharding_one"]
