"""The performance benchmark of lincls: the DD2424 sweep against its FLOP floor and baselines.

    python benchmarks/run.py            # the full run (8 to 12 minutes on 2 cores), writes
                                        # benchmarks/results.md and benchmarks/results.json
    python benchmarks/run.py --quick    # a smoke run (under a minute), writes results_quick.*

Everything runs on generated data of the real shapes (n = 10,000 training, 10,000
validation and 10,000 test images of d = 3072, K = 10 classes), so it runs anywhere.
Every target is a ratio of two numbers measured in this one run: the GEMM rate is
measured between the other measurements and the medians are compared, so a machine
shared with other work shifts both sides. Other processes' CPU use during each timed
call is read from /proc/stat and reported.

Sections (each timed ``--repeats`` times, median and spread reported):

1. the machine's float32 GEMM rate: a 4096 x 4096 matmul through JAX;
2. the FLOP floor of the sweep (forward and backward matmuls per step, one matmul per
   data set for each epoch's evaluation, one for the final test accuracy) at that rate;
3. the DD2424 sweep (4 settings x 40 epochs) through ``lincls.sweep.train_and_test``,
   compile time apart, and the same work as baselines: NumPy (the course algorithm, the
   settings one after another), lincls without vmap (``train.train`` per setting), and
   PyTorch on the CPU (stacked and one setting after another; skipped if not installed);
4. sweep width scaling: 1, 4, 16, 64, 256 settings (a lambda x eta grid), and the peak
   memory of 4, 64 and 256 settings, each in a fresh process;
5. gradient checks: the full float64 finite-difference check of all 30,730 parameters
   (n = 100, d = 3072), structure-aware and generic, and hand gradient vs jax.grad;
6. the layouts of the sweep's stacked path that were tried, against the vmapped one.
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

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

N, N_VAL, N_TEST, D, K, N_BATCH = 10_000, 10_000, 10_000, 3072, 10, 100
DD2424 = ((0.0, 0.1), (0.0, 0.001), (0.1, 0.001), (1.0, 0.001))  # (lambda, eta) of the assignment
TARGETS = {  # name: (threshold, what)
    "dd2424_fraction_of_floor": (0.75, "DD2424 sweep at >= 75% of the floor"),
    "speedup_vs_numpy": (5.0, ">= 5x faster than the NumPy baseline"),
    "speedup_vs_torch": (2.0, ">= 2x faster than the PyTorch baseline (the faster of its two forms)"),
    "width256_fraction_of_floor": (0.80, "256 settings at >= 80% of the floor"),
    "gradcheck_full_s": (2.0, "full float64 finite-difference check (30,730 params) in < 2 s, compile included"),
}


# ----------------------------------------------------------------------------- timing


def _busy_seconds() -> float:
    """CPU seconds spent by all processes (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Timed:
    """Wall time of a block and the share of the machine other processes used meanwhile."""

    def __enter__(self):
        self.b0, self.o0, self.t0 = _busy_seconds(), _own_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        try:
            other = (_busy_seconds() - self.b0) - (_own_seconds() - self.o0)
            self.other = max(0.0, other) / (self.wall * os.cpu_count())
        except OSError:
            self.other = float("nan")


def summary(walls: list[float], others: list[float] | None = None) -> dict:
    s = {"median": statistics.median(walls), "min": min(walls), "max": max(walls), "n": len(walls), "all": walls}
    if others is not None:
        s["other_load"] = others
    return s


def fmt_s(s: dict) -> str:
    return f"{s['median']:.3f} ({s['min']:.3f}-{s['max']:.3f})" if s["n"] > 1 else f"{s['median']:.3f}"


# ----------------------------------------------------------------------------- data and FLOPs


def make_data(seed: int = 0):
    """Standard-normal features and labels from a random linear teacher (learnable)."""
    rng = np.random.default_rng(seed)
    W_true = rng.standard_normal((K, D)).astype(np.float32)
    out = []
    for n in (N, N_VAL, N_TEST):
        X = rng.standard_normal((n, D), dtype=np.float32)
        y = np.argmax(X @ W_true.T + 8 * rng.standard_normal((n, K), dtype=np.float32), axis=1).astype(np.int32)
        out += [X, y]
    return out


def sweep_flops(S: int, epochs: int, test: bool) -> float:
    """Matmul FLOPs of S settings: per epoch and setting, forward and backward (2 K d n
    each) over the batches, one evaluation matmul per data set; the test set once."""
    n_used = (N // N_BATCH) * N_BATCH
    per_epoch = 2 * (2 * K * D * n_used) + 2 * K * D * (N + N_VAL)
    return S * (epochs * per_epoch + (2 * K * D * N_TEST if test else 0))


def grid(S: int) -> list[tuple[float, float]]:
    """An a x a lambda x eta grid with a*a = S (S = 1: the DD2424 setting lam 0, eta 0.001)."""
    a = int(round(S**0.5))
    assert a * a == S, S
    if a == 1:
        return [(0.0, 0.001)]
    lams, etas = np.logspace(-4, 0, a), np.logspace(-3.5, -1.5, a)
    return [(float(l), float(e)) for l in lams for e in etas]


# ----------------------------------------------------------------------------- the measurements


class Bench:
    def __init__(self, args):
        import jax
        import jax.numpy as jnp

        from lincls import sweep, train
        from lincls.train import TrainData, TrainOptions

        self.args, self.jax, self.jnp, self.sweep, self.train = args, jax, jnp, sweep, train
        self.TrainOptions = TrainOptions
        X, y, Xv, yv, Xt, yt = make_data()
        self.host = dict(X=X, y=y, Xv=Xv, yv=yv)
        self.data = TrainData(*(jnp.asarray(a) for a in (X, y, Xv, yv)))
        self.test = (jnp.asarray(Xt), jnp.asarray(yt))
        self.rates: list[float] = []
        self.results: dict = {}
        self.gemm_a = jnp.asarray(np.random.default_rng(1).standard_normal((4096, 4096), dtype=np.float32))
        self.gemm = jax.jit(lambda a: a @ a)
        jax.block_until_ready(self.gemm(self.gemm_a))

    # --- the GEMM rate, measured between the other measurements
    def measure_rate(self):
        with Timed() as t:
            self.jax.block_until_ready(self.gemm(self.gemm_a))
        self.rates.append(2 * 4096**3 / t.wall)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def params(self, S: int):
        p = self.sweep.init_sweep_params(self.jax.random.PRNGKey(400), S, D, K)
        return self.jax.block_until_ready({k: self.jnp.array(v) for k, v in p.items()})  # fresh buffers (donated)

    def settings(self, pairs):
        a = np.array(pairs, np.float32).reshape(-1, 2)
        return self.jnp.asarray(a[:, 0]), self.jnp.asarray(a[:, 1])

    # --- 2b. the GEMM rate at the sweep's own shapes
    def shape_rates(self, widths: list[int], repeats: int):
        """The three matmul shapes of a sweep of S settings, each alone in a scan over 20
        different batches: forward (n_b x d x S K), backward (S K x n_b x d), evaluation
        (n x d x S K). Their FLOP-weighted rates give the floor these shapes allow."""
        jax, jnp = self.jax, self.jnp
        X = self.data.X_train
        Xs = X[: 20 * N_BATCH].reshape(20, N_BATCH, D)
        rows = []
        for S in widths:
            SK = S * K
            W = jnp.asarray(np.random.default_rng(5).standard_normal((SK, D), dtype=np.float32))
            G = jnp.asarray(np.random.default_rng(6).standard_normal((20, N_BATCH, SK), dtype=np.float32))
            cases = {
                "forward": (jax.jit(lambda Xs, W: jax.lax.scan(lambda c, x: (c + jnp.sum(x @ W.T), None), 0.0, Xs)[0]), (Xs, W), 20 * 2 * N_BATCH * D * SK),
                "backward": (jax.jit(lambda Xs, G: jax.lax.scan(lambda c, xg: (c + jnp.sum(xg[1].T @ xg[0]), None), 0.0, (Xs, G))[0]), (Xs, G), 20 * 2 * N_BATCH * D * SK),
                "evaluation": (jax.jit(lambda X, W: jnp.sum(X @ W.T)), (X, W), 2 * N * D * SK),
            }
            row = {"settings": S}
            for name, (f, args, flops) in cases.items():
                jax.block_until_ready(f(*args))
                walls = []
                for _ in range(repeats):
                    with Timed() as t:
                        jax.block_until_ready(f(*args))
                    walls.append(t.wall)
                row[name] = flops / statistics.median(walls)
            # per setting-epoch, the forward and backward each do 2 K d n FLOPs and the evaluation 2 K d (n + n_val)
            w_fb, w_ev = 2 * K * D * N, 2 * K * D * (N + N_VAL)
            row["shape_floor_ms_per_setting_epoch"] = 1e3 * (w_fb / row["forward"] + w_fb / row["backward"] + w_ev / row["evaluation"])
            rows.append(row)
            self.measure_rate()
            print(f"  shapes at {S} settings: forward {row['forward'] / 1e9:.0f}, backward {row['backward'] / 1e9:.0f}, "
                  f"evaluation {row['evaluation'] / 1e9:.0f} GFLOP/s", flush=True)  # fmt: skip
        self.results["shape_rates"] = rows

    # --- 3. the DD2424 sweep and its baselines, interleaved repeat by repeat
    def dd2424(self, epochs: int, repeats: int):
        jax, sweep, train = self.jax, self.sweep, self.train
        import baselines

        S = len(DD2424)
        lams, etas = self.settings(DD2424)
        opts = self.TrainOptions(n_batch=N_BATCH, n_epochs=epochs)
        key = jax.random.PRNGKey(401)
        with Timed() as t:
            compiled = sweep.train_and_test.lower(self.params(S), self.data, *self.test, lams, etas, key, options=opts).compile()
        compile_s = t.wall
        # lincls without vmap: train.train per setting (one compiled program for all four)
        p1 = {k: v[0] for k, v in self.params(S).items()}
        with Timed() as t:
            jax.block_until_ready(train.train(p1, self.data, lams[0], etas[0], key=key, options=opts))
        compile_single_s = t.wall  # includes one run
        W0, b0 = np.asarray(p1["W"]), np.asarray(p1["b"])
        h = self.host
        prepared = baselines.numpy_layout(h["X"], h["y"], h["Xv"], K)
        try:
            import torch

            torch.set_num_threads(os.cpu_count())
            torch_version = torch.__version__
        except ImportError:
            torch_version = None

        def run_lincls():
            p = self.params(S)
            with Timed() as t:
                out = jax.block_until_ready(compiled(p, self.data, *self.test, lams, etas, key))
            return t, out

        def run_single():
            with Timed() as t:
                outs = [train.train(p1, self.data, lams[i], etas[i], key=key, options=opts) for i in range(S)]
                jax.block_until_ready(outs)
            return t, outs

        def run_numpy():
            with Timed() as t:
                out = baselines.numpy_sweep(h["X"], h["y"], h["Xv"], h["yv"], W0, b0, [l for l, _ in DD2424], [e for _, e in DD2424],
                                            N_BATCH, epochs, prepared=prepared)  # fmt: skip
            return t, out

        def run_torch(stacked):
            def go():
                with Timed() as t:
                    out = baselines.torch_sweep(h["X"], h["y"], h["Xv"], h["yv"], W0, b0, [l for l, _ in DD2424], [e for _, e in DD2424],
                                                N_BATCH, epochs, stacked=stacked)  # fmt: skip
                return t, out
            return go

        methods = {"lincls": run_lincls, "lincls_no_vmap": run_single, "numpy": run_numpy}
        if torch_version:
            methods["torch_stacked"] = run_torch(True)
            methods["torch_sequential"] = run_torch(False)
        walls = {m: [] for m in methods}
        others = {m: [] for m in methods}
        finals = {}
        for r in range(repeats):
            for m, fn in methods.items():
                self.measure_rate()
                t, out = fn()
                walls[m].append(t.wall), others[m].append(t.other)
                finals[m] = out
                print(f"  dd2424 repeat {r + 1}/{repeats}: {m:17s} {t.wall:7.3f} s  (others {100 * t.other:.0f}%)", flush=True)
        # the same work: every method ends at the same weights (float32 rounding apart)
        W_ref = np.asarray(finals["lincls"][0]["W"])
        agree = {"numpy": float(np.abs(finals["numpy"][0] - W_ref).max()),
                 "lincls_no_vmap": float(max(np.abs(np.asarray(p["W"]) - W_ref[i]).max() for i, (p, _) in enumerate(finals["lincls_no_vmap"])))}  # fmt: skip
        for m in ("torch_stacked", "torch_sequential"):
            if m in finals:
                agree[m] = float(np.abs(finals[m][0] - W_ref).max())
        flops = sweep_flops(S, epochs, test=True)
        res = {
            "settings": [list(s) for s in DD2424], "epochs": epochs, "n_batch": N_BATCH,
            "flops": flops, "compile_s": compile_s, "compile_single_setting_s_incl_one_run": compile_single_s,
            "times": {m: summary(walls[m], others[m]) for m in methods},
            "max_abs_W_difference_vs_lincls": agree, "torch_version": torch_version,
            "test_accuracy": [float(a) for a in np.asarray(finals["lincls"][2])],
        }  # fmt: skip
        self.results["dd2424"] = res

    # --- 4. width scaling
    def widths(self, plan: dict[int, tuple[int, int]]):
        jax, sweep = self.jax, self.sweep
        rows = []
        run = jax.jit(sweep.train_sweep, static_argnames=("options",), donate_argnums=0)
        key = jax.random.PRNGKey(402)
        for S, (epochs, repeats) in plan.items():
            lams, etas = self.settings(grid(S))
            opts = self.TrainOptions(n_batch=N_BATCH, n_epochs=epochs)
            with Timed() as t:
                compiled = run.lower(self.params(S), self.data, lams, etas, key=key, options=opts).compile()
            compile_s = t.wall
            walls, others = [], []
            for r in range(repeats):
                self.measure_rate()
                p = self.params(S)
                with Timed() as t:
                    jax.block_until_ready(compiled(p, self.data, lams, etas, key=key))
                walls.append(t.wall), others.append(t.other)
                print(f"  width {S:3d} x {epochs} epochs, repeat {r + 1}/{repeats}: {t.wall:.3f} s (others {100 * t.other:.0f}%)", flush=True)
            rows.append({"settings": S, "epochs": epochs, "flops": sweep_flops(S, epochs, test=False), "compile_s": compile_s,
                         "layout": sweep.stacked_layout(S, K, D, N_BATCH)._asdict(), "times": summary(walls, others)})  # fmt: skip
        self.results["widths"] = rows

    # --- 5. gradient checks
    def gradchecks(self, generic: bool, repeats: int):
        jax, jnp = self.jax, self.jnp
        from lincls import gradcheck, model

        out = {}
        with jax.enable_x64(True):
            rng = np.random.default_rng(3)
            X = jnp.asarray(rng.standard_normal((100, D)))
            y = jnp.asarray(rng.integers(0, K, 100).astype(np.int32))
            params = model.init_params(jax.random.PRNGKey(0), D, K, dtype=jnp.float64)
            lam = 0.1
            g_hand = model.hand_grad(params, X, y, lam)
            # structure-aware check, four-point (the table's) and two-point (the course's) stencils:
            # first call (compile included), then warm calls
            for order, name in ((4, "logit_numerical_grad"), (2, "logit_numerical_grad_2pt")):
                with Timed() as t:
                    g = jax.block_until_ready(gradcheck.logit_numerical_grad(params, X, y, lam, order=order))
                first = t.wall
                warm = []
                for _ in range(repeats):
                    with Timed() as t:
                        jax.block_until_ready(gradcheck.logit_numerical_grad(params, X, y, lam, order=order))
                    warm.append(t.wall)
                out[name] = {"order": order, "first_call_s": first, "warm": summary(warm),
                             "hand_vs_numerical": gradcheck.error_summary(g_hand, g)}  # fmt: skip
                g_num = g  # the two-point result, compared with the generic two-point reference below
                print(f"  gradcheck {name}: first call {first:.3f} s, warm {statistics.median(warm):.3f} s", flush=True)
            if generic:
                args = (X, y, jnp.asarray(lam))
                with Timed() as t:
                    c = gradcheck.numerical_grad.lower(model._cost, params, gradcheck.H, args=args).compile()
                compile_s = t.wall
                with Timed() as t:
                    g_gen = jax.block_until_ready(c(params, gradcheck.H, args=args))
                out["numerical_grad_generic"] = {"compile_s": compile_s, "run_s": t.wall,
                                                 "numerical_vs_generic": gradcheck.error_summary(g_num, g_gen)}  # fmt: skip
                print(f"  gradcheck numerical_grad (generic): compile {compile_s:.3f} s, run {t.wall:.3f} s", flush=True)
        out["per_batch"] = self._grad_per_batch(repeats)
        self.results["gradcheck"] = out

    def _grad_per_batch(self, repeats: int) -> dict:
        """hand_grad vs jax.grad on one (100, 3072) float32 batch: per call, and per batch in a scan."""
        jax, jnp = self.jax, self.jnp
        from lincls import model

        params = {k: v[0] for k, v in self.params(1).items()}
        X, y = self.data.X_train, self.data.y_train
        res = {}
        for name, fn in (("hand", model._hand_grad), ("autodiff", jax.grad(model._cost))):
            one = jax.jit(fn)
            Xb, yb = X[:N_BATCH], y[:N_BATCH]
            jax.block_until_ready(one(params, Xb, yb, 0.1))
            calls = []
            for _ in range(max(50, 20 * repeats)):
                t0 = time.perf_counter()
                jax.block_until_ready(one(params, Xb, yb, 0.1))
                calls.append(time.perf_counter() - t0)

            @jax.jit
            def scanned(params, X, y):
                def step(acc, s):
                    g = fn(params, jax.lax.dynamic_slice_in_dim(X, s, N_BATCH), jax.lax.dynamic_slice_in_dim(y, s, N_BATCH), 0.1)
                    return jax.tree.map(jnp.add, acc, g), None
                return jax.lax.scan(step, jax.tree.map(jnp.zeros_like, params), jnp.arange(N // N_BATCH) * N_BATCH)[0]

            jax.block_until_ready(scanned(params, X, y))
            walls = []
            for _ in range(repeats):
                with Timed() as t:
                    jax.block_until_ready(scanned(params, X, y))
                walls.append(t.wall / (N // N_BATCH))
            res[name] = {"per_call_us": summary([c * 1e6 for c in calls]), "per_batch_in_scan_us": summary([w * 1e6 for w in walls])}
            print(f"  {name} gradient: {1e6 * statistics.median(calls):.0f} us per call, "
                  f"{1e6 * statistics.median(walls):.0f} us per batch in a scan", flush=True)  # fmt: skip
        return res

    # --- 6. the layouts that were tried
    def ablation(self, cases: list[tuple[int, int, int]]):
        jax, sweep = self.jax, self.sweep
        from lincls.sweep import StackedLayout

        layouts = {
            "vmap of train_epoch (before)": None,
            "stacked, W (S,K,d), no split": StackedLayout(False, 1),
            "stacked, W (S,K,d), d split in 2": StackedLayout(False, 2),
            "stacked, W carried transposed (d,S,K)": StackedLayout(True, 1),
        }
        rows = []
        for S, epochs, repeats in cases:
            lams, etas = self.settings(grid(S) if S != 4 else DD2424)
            opts = self.TrainOptions(n_batch=N_BATCH, n_epochs=epochs)
            key = jax.random.PRNGKey(403)
            chosen = sweep.stacked_layout(S, K, D, N_BATCH)
            compiled = {}
            for name, layout in layouts.items():
                f = jax.jit(lambda p, d, l, e, k, layout=layout: sweep._train_sweep(p, d, l, e, k, opts, None, layout), donate_argnums=0)
                with Timed() as t:
                    compiled[name] = f.lower(self.params(S), self.data, lams, etas, key).compile()
            walls = {name: [] for name in layouts}
            for r in range(repeats):
                self.measure_rate()
                for name, c in compiled.items():
                    p = self.params(S)
                    with Timed() as t:
                        jax.block_until_ready(c(p, self.data, lams, etas, key))
                    walls[name].append(t.wall)
                    print(f"  ablation S={S} x {epochs} epochs, repeat {r + 1}/{repeats}: {name:40s} {t.wall:.3f} s", flush=True)
            for name, layout in layouts.items():
                rows.append({"settings": S, "epochs": epochs, "layout": name, "chosen": layout == chosen,
                             "flops": sweep_flops(S, epochs, test=False), "times": summary(walls[name])})  # fmt: skip
        self.results["ablation"] = rows


# ----------------------------------------------------------------------------- memory, in a fresh process per width


def probe_memory(S: int, epochs: int) -> dict:
    """Run in a fresh process: RSS before and after a sweep of S settings, and XLA's own count."""
    import jax
    import jax.numpy as jnp

    from lincls import sweep
    from lincls.train import TrainData, TrainOptions

    def status_mb(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def reset_peak():  # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    # the data made on the device directly: no host copy to muddy the count
    data = TrainData(jax.random.normal(keys[0], (N, D)), jax.random.randint(keys[1], (N,), 0, K),
                     jax.random.normal(keys[2], (N_VAL, D)), jax.random.randint(keys[3], (N_VAL,), 0, K))  # fmt: skip
    jax.block_until_ready(data)
    lams, etas = (jnp.asarray(a, jnp.float32) for a in zip(*grid(S)))
    params = jax.block_until_ready(sweep.init_sweep_params(jax.random.PRNGKey(1), S, D, K))
    params = jax.block_until_ready({k: jnp.array(v) for k, v in params.items()})
    opts = TrainOptions(n_batch=N_BATCH, n_epochs=epochs)
    run = jax.jit(sweep.train_sweep, static_argnames=("options",), donate_argnums=0)
    resettable = reset_peak()
    rss_data = status_mb("VmRSS")
    compiled = run.lower(params, data, lams, etas, key=jax.random.PRNGKey(2), options=opts).compile()
    peak_compile = status_mb("VmHWM")
    m = compiled.memory_analysis()
    reset_peak()
    rss_before_run = status_mb("VmRSS")
    jax.block_until_ready(compiled(params, data, lams, etas, key=jax.random.PRNGKey(2)))
    peak_run = status_mb("VmHWM")
    stats = jax.devices()[0].memory_stats()
    return {
        "settings": S, "epochs": epochs,
        "data_mb": (N + N_VAL) * D * 4 / 2**20,
        "peak_resettable": resettable, "rss_with_data_mb": rss_data, "peak_rss_compile_mb": peak_compile,
        "rss_before_run_mb": rss_before_run, "peak_rss_mb": peak_run,
        "xla_temp_mb": m.temp_size_in_bytes / 2**20, "xla_argument_mb": m.argument_size_in_bytes / 2**20,
        "xla_output_mb": m.output_size_in_bytes / 2**20,
        "xla_peak_mb": getattr(m, "peak_memory_in_bytes", 0) / 2**20,
        "per_setting_weights_mb": K * D * 4 / 2**20,
        "device_memory_stats": stats,
    }  # fmt: skip


def memory_section(widths: list[int]) -> list[dict]:
    rows = []
    for S in widths:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--probe-memory", str(S)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        line = next((l for l in proc.stdout.splitlines() if l.startswith("MEMORY")), None)
        if proc.returncode or line is None:
            rows.append({"settings": S, "error": proc.stderr[-2000:]})
            continue
        rows.append(json.loads(line[len("MEMORY"):]))
        r = rows[-1]
        print(f"  memory {S:3d} settings: peak RSS while training {r['peak_rss_mb']:.0f} MB (before {r['rss_before_run_mb']:.0f} MB), "
              f"XLA temp {r['xla_temp_mb']:.0f} MB", flush=True)  # fmt: skip
    return rows


# ----------------------------------------------------------------------------- the report


def machine_info() -> dict:
    import jax
    import jaxlib
    import optax

    try:
        import torch

        torch_v = torch.__version__
    except ImportError:
        torch_v = None
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cores": os.cpu_count(), "cpu": cpu, "platform": platform.platform(), "python": platform.python_version(),
        "jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__, "numpy": np.__version__,
        "torch": torch_v, "jax_backend": jax.default_backend(), "jax_devices": jax.device_count(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "git_commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }  # fmt: skip


def derive(results: dict) -> dict:
    """The ratios the targets are stated in, each from numbers of this run."""
    rate = results["gemm_rate"]["median"]
    dd = results["dd2424"]
    t = {m: s["median"] for m, s in dd["times"].items()}
    floor = dd["flops"] / rate
    out = {"floor_s": floor, "dd2424_fraction_of_floor": floor / t["lincls"], "speedup_vs_numpy": t["numpy"] / t["lincls"],
           "speedup_vs_lincls_no_vmap": t["lincls_no_vmap"] / t["lincls"],
           "numpy_fraction_of_floor": floor / t["numpy"]}  # fmt: skip
    torch_ms = [t[m] for m in ("torch_stacked", "torch_sequential") if m in t]
    if torch_ms:
        out["speedup_vs_torch"] = min(torch_ms) / t["lincls"]
        out["torch_fraction_of_floor"] = floor / min(torch_ms)
    for row in results.get("widths", []):
        row["floor_s"] = row["flops"] / rate
        row["fraction_of_floor"] = row["floor_s"] / row["times"]["median"]
        row["ms_per_setting_epoch"] = 1e3 * row["times"]["median"] / (row["settings"] * row["epochs"])
        if row["settings"] == 256:
            out["width256_fraction_of_floor"] = row["fraction_of_floor"]
    for row in results.get("shape_rates", []):
        row["fraction_of_rate"] = {k: row[k] / rate for k in ("forward", "backward", "evaluation")}
    shape = {r["settings"]: r for r in results.get("shape_rates", [])}
    for row in results.get("widths", []):
        if row["settings"] in shape:
            row["shape_floor_fraction"] = shape[row["settings"]]["shape_floor_ms_per_setting_epoch"] / row["ms_per_setting_epoch"]
    if 4 in shape:
        out["dd2424_fraction_of_shape_floor"] = 4 * dd["epochs"] * shape[4]["shape_floor_ms_per_setting_epoch"] / 1e3 / t["lincls"]
    for row in results.get("ablation", []):
        row["fraction_of_floor"] = row["flops"] / rate / row["times"]["median"]
    g = results.get("gradcheck", {}).get("logit_numerical_grad")
    if g:
        out["gradcheck_full_s"] = g["first_call_s"]
    return out


def target_rows(d: dict) -> list[dict]:
    rows = []
    for key, (threshold, what) in TARGETS.items():
        if key not in d:
            rows.append({"target": what, "measured": None, "met": None, "gap": "not measured in this run"})
            continue
        v = d[key]
        met = v < threshold if key.endswith("_s") else v >= threshold
        if met:
            gap = ""
        elif key.endswith("_s"):
            gap = f"{v / threshold:.2f}x too slow"
        else:
            gap = f"short by {100 * (1 - v / threshold):.0f}% ({v:.2f} of {threshold:g})"
        rows.append({"target": what, "key": key, "threshold": threshold, "measured": v, "met": met, "gap": gap})
    return rows


def write_report(results: dict, out_md: Path, command: str) -> str:
    m, d = results["machine"], results["derived"]
    rate = results["gemm_rate"]
    dd = results["dd2424"]
    L = []
    L.append("# lincls performance benchmark\n")
    L.append(f"Command: `{command}` ({results['wall_s']:.0f} s). Generated by `benchmarks/run.py`; raw numbers in "
             f"`{out_md.with_suffix('.json').name}`.\n")  # fmt: skip
    L.append(f"Machine: {m['cores']} CPU cores ({m['cpu']}), {m['platform']}; Python {m['python']}, jax {m['jax']} "
             f"(jaxlib {m['jaxlib']}, backend {m['jax_backend']}, {m['jax_devices']} device), optax {m['optax']}, "
             f"numpy {m['numpy']}, torch {m['torch'] or 'not installed'}; XLA_FLAGS={m['XLA_FLAGS'] or '(none)'}; "
             f"git {m['git_commit']}; {m['date']}.\n")  # fmt: skip
    other = results["other_load"]
    L.append(f"Times are wall seconds, median (min-max) of the repeats. Other processes used "
             f"{100 * other['median']:.0f}% of the machine during the median timed call (max {100 * other['max']:.0f}%); "
             f"the GEMM rate was measured before every timed call, so both sides of each ratio saw the same machine.\n")  # fmt: skip

    L.append("## Targets\n")
    L.append("| target | measured | met |\n|---|---:|---|")
    for r in results["targets"]:
        val = "" if r["measured"] is None else (f"{r['measured']:.3f} s" if r["target"].endswith("included") else f"{r['measured']:.2f}")
        L.append(f"| {r['target']} | {val} | {'yes' if r['met'] else ('no: ' + r['gap'] if r['met'] is False else r['gap'])} |")
    L.append("")

    L.append("## The floor\n")
    L.append(f"float32 GEMM rate (4096 x 4096 x 4096 through `jax.jit(lambda a: a @ a)`, {rate['n']} times during the run): "
             f"median **{rate['median'] / 1e9:.1f} GFLOP/s** (min {rate['min'] / 1e9:.1f}, max {rate['max'] / 1e9:.1f}).\n")  # fmt: skip
    per = sweep_flops(1, 1, False)
    L.append(f"FLOPs per setting and epoch: forward and backward matmuls over {N // N_BATCH} batches of {N_BATCH} "
             f"(2 x 2 K d n = {4 * K * D * N / 1e9:.3f} GFLOP) plus one evaluation matmul on the {N:,} training and one on the "
             f"{N_VAL:,} validation images (2 K d (n + n_val) = {2 * K * D * (N + N_VAL) / 1e9:.3f} GFLOP): {per / 1e9:.3f} GFLOP, "
             f"a floor of **{1e3 * per / rate['median']:.1f} ms per setting-epoch** at the median rate. The DD2424 sweep "
             f"(4 settings x {dd['epochs']} epochs, plus the final test-set matmul) is {dd['flops'] / 1e9:.1f} GFLOP: "
             f"floor **{d['floor_s']:.3f} s**.\n")  # fmt: skip

    if results.get("shape_rates"):
        L.append("### The GEMM rate at the sweep's own shapes\n")
        L.append("Each of the sweep's three matmul shapes alone (forward and backward in a `lax.scan` over 20 batches, "
                 "the evaluation as one call), as a fraction of the large-GEMM rate; the last column is the time per "
                 "setting-epoch these rates allow, a floor that knows the shapes.\n")  # fmt: skip
        L.append("| settings | forward n_b x d x SK GFLOP/s | backward SK x n_b x d GFLOP/s | evaluation n x d x SK GFLOP/s | "
                 "shape floor ms per setting-epoch |")  # fmt: skip
        L.append("|---:|---:|---:|---:|---:|")
        for r in results["shape_rates"]:
            f = r["fraction_of_rate"]
            L.append(f"| {r['settings']} | {r['forward'] / 1e9:.0f} ({f['forward']:.2f}) | {r['backward'] / 1e9:.0f} ({f['backward']:.2f}) | "
                     f"{r['evaluation'] / 1e9:.0f} ({f['evaluation']:.2f}) | {r['shape_floor_ms_per_setting_epoch']:.1f} |")  # fmt: skip
        L.append("")
    L.append("## The DD2424 sweep and the baselines\n")
    L.append(f"4 settings (lambda, eta) = {', '.join(f'({l:g}, {e:g})' for l, e in DD2424)}, {dd['epochs']} epochs, "
             f"n_batch {N_BATCH}, loss/cost/accuracy on the whole training and validation sets after every epoch, "
             f"same initial W for all. lincls compile time (apart): {dd['compile_s']:.2f} s.\n")  # fmt: skip
    L.append("| implementation | seconds | fraction of floor | lincls is faster by | max abs W difference vs lincls |")
    L.append("|---|---:|---:|---:|---:|")
    names = {
        "lincls": "lincls `sweep.train_and_test` (stacked settings, one program)",
        "lincls_no_vmap": "lincls without vmap: `train.train` per setting, one after another",
        "numpy": "NumPy float32, the course algorithm, settings one after another",
        "torch_stacked": "PyTorch CPU, settings stacked into one (S K) x d matrix",
        "torch_sequential": "PyTorch CPU, settings one after another",
    }
    tl = dd["times"]["lincls"]["median"]
    for key, s in dd["times"].items():
        diff = dd["max_abs_W_difference_vs_lincls"].get(key)
        L.append(f"| {names[key]} | {fmt_s(s)} | {d['floor_s'] / s['median']:.2f} | "
                 f"{s['median'] / tl:.2f}x | {'' if diff is None else f'{diff:.1e}'} |")  # fmt: skip
    if not dd.get("torch_version"):
        L.append("\nPyTorch is not installed (`pip install -e .[bench]`): its rows are skipped.")
    L.append("")

    if "widths" in results:
        L.append("## Sweep width\n")
        L.append("A lambda x eta grid through `jax.jit(sweep.train_sweep)` (no test pass), compile apart. Fewer epochs for the "
                 "wide sweeps to keep the run short (the per-epoch work is the same every epoch).\n")  # fmt: skip
        L.append("| settings | layout | epochs | seconds | ms per setting-epoch | fraction of floor | fraction of shape floor | compile s |")
        L.append("|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in results["widths"]:
            lay = r["layout"]
            lay_s = ("W transposed" if lay["transposed"] else "W (S,K,d)") + (f", d split {lay['n_split']}" if lay["n_split"] > 1 else "")
            L.append(f"| {r['settings']} | {lay_s} | {r['epochs']} | {fmt_s(r['times'])} | {r['ms_per_setting_epoch']:.1f} | "
                     f"{r['fraction_of_floor']:.2f} | {r.get('shape_floor_fraction', float('nan')):.2f} | {r['compile_s']:.2f} |")  # fmt: skip
        L.append("")
    if results.get("memory"):
        L.append("### Peak memory\n")
        L.append("Each width in a fresh process (1 epoch; data made on the device: "
                 f"{results['memory'][0].get('data_mb', 0):.0f} MB of training and validation features). "
                 "`peak RSS` is the process high-water mark; `XLA temp` is the compiled program's scratch "
                 "(`compiled.memory_analysis()`; `jax.devices()[0].memory_stats()` is "
                 f"{'unavailable' if not results['memory'][0].get('device_memory_stats') else 'shown in the JSON'} on this CPU backend). "
                 "A per-setting copy of the training data would add S x 117 MB.\n")  # fmt: skip
        L.append("| settings | RSS with data and params MB | peak RSS while training MB | growth MB | XLA temp MB | "
                 "peak RSS while compiling MB | S x training data would be MB |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|")
        for r in results["memory"]:
            if "error" in r:
                L.append(f"| {r['settings']} | failed: {r['error'][-200:]!r} | | | | | |")
                continue
            L.append(f"| {r['settings']} | {r['rss_before_run_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['peak_rss_mb'] - r['rss_before_run_mb']:.0f} | {r['xla_temp_mb']:.0f} | {r['peak_rss_compile_mb']:.0f} | "
                     f"{r['settings'] * N * D * 4 / 2**20:,.0f} |")  # fmt: skip
        L.append("")

    g = results.get("gradcheck")
    if g:
        L.append("## Gradient checks\n")
        L.append(f"All 30,730 parameters (W 10 x 3072 and b), n = 100, d = 3072, float64, h = 1e-4, lambda = 0.1.\n")
        L.append("| check | seconds | hand vs numerical max rel. error (W) |\n|---|---:|---:|")
        for name, label in (("logit_numerical_grad", "four-point (the table's)"), ("logit_numerical_grad_2pt", "two-point (the course's)")):
            ln = g.get(name)
            if ln:
                L.append(f"| `gradcheck.logit_numerical_grad`, {label}, first call (compile included) | {ln['first_call_s']:.3f} | {ln['hand_vs_numerical']['W']['max']:.1e} |")
                L.append(f"| `gradcheck.logit_numerical_grad`, {label}, warm | {fmt_s(ln['warm'])} | |")
        gen = g.get("numerical_grad_generic")
        if gen:
            L.append(f"| `gradcheck.numerical_grad` (generic: 61,460 full cost evaluations), compile | {gen['compile_s']:.3f} | |")
            L.append(f"| `gradcheck.numerical_grad` (generic), run | {gen['run_s']:.3f} | vs logit two-point {gen['numerical_vs_generic']['W']['max']:.1e} |")
        pb = g["per_batch"]
        L.append("")
        L.append("One batch (100 x 3072, float32), gradient of the cost:\n")
        L.append("| gradient | per jitted call us (with dispatch) | per batch inside a lax.scan us |\n|---|---:|---:|")
        for name, label in (("hand", "`model.hand_grad` (hand)"), ("autodiff", "`jax.grad(model.cost)`")):
            L.append(f"| {label} | {pb[name]['per_call_us']['median']:.0f} | {pb[name]['per_batch_in_scan_us']['median']:.0f} |")
        L.append("")

    if results.get("ablation"):
        L.append("## What was tried in the sweep (measured in this run)\n")
        L.append("`sweep._train_sweep` with each layout of the stacked path, and the vmapped path it replaced "
                 "(`train.train_epoch` vmapped over the settings, still used for `grad=\"autodiff\"`). "
                 "Chosen = what `sweep.stacked_layout` picks for that width.\n")  # fmt: skip
        L.append("| settings x epochs | path | seconds | fraction of floor | chosen |\n|---|---|---:|---:|---|")
        for r in results["ablation"]:
            L.append(f"| {r['settings']} x {r['epochs']} | {r['layout']} | {fmt_s(r['times'])} | {r['fraction_of_floor']:.2f} | {'yes' if r['chosen'] else ''} |")
        L.append("")

    L.append(NOTES)
    L.append(why_section(results))
    L.append(readme_paragraph(results))
    text = "\n".join(L) + "\n"
    return text


NOTES = """## Notes from development (hand-written; numbers from single comparisons on an earlier machine of this workplace, 2 cores with a 130 GFLOP/s GEMM rate, not from this run)

- **What XLA emits.** `jax.jit(...).lower(...).compile().as_text()` of the old sweep (`train.train_epoch`
  vmapped over the settings) shows that JAX's batching rule already folds the settings axis of a vmapped
  `X_b @ W.T` into the GEMM's columns: one `f32[100,3072] x f32[3072,40]` dot per step (an XNNPACK/YNNPACK
  `__ynn_fusion`), not 4 thin K = 10 GEMMs, and likewise one 40 x 100 x 3072 dot for the gradient and one
  10,000 x 3072 x 40 dot per evaluation. What else ran per step: a copy of the batch out of X
  (`dynamic-slice` fusion, ~90 us, reading DRAM), a transposed copy of W for the forward dot (~40 us), and
  ~10 small fusions (softmax, bias, update). Data already came in as arguments, not constants, and the
  params were already donated.
- **Profile** (a `jax.profiler` trace read back with `jax.profiler.ProfileData`): on 2 cores the
  100 x 3072 x 40 forward dot ran at about the rate of *one* core, and the copies ran on one thread while
  the other waited. The thin GEMMs of 4 settings do not spread over 2 cores (the shape table above measures
  them alone).
- **Kept: the settings stacked by hand** (`sweep.StackedLayout`): the same GEMMs, without vmap's
  transposes, with the layout chosen per width, and **d cut in two** on CPU for narrow sweeps: two
  independent 100 x 1536 x S K forward dots, which the XLA executor runs side by side, one per core, their
  logits summed; each half of W updated from its half of the batch. DD2424 sweep: 0.53-0.60 -> 0.64-0.72 of
  the floor across runs (the ablation table above repeats this in the run). On an AVX2-only machine with
  half that GEMM rate (the committed run of 2026-12-03, 21:06) the d split and the vmapped path came out
  within noise of each other at 4 settings (same minimum, 0.60 vs 0.65 median); at 256 settings the stacked
  transposed layout still wins, 0.84 vs 0.73.
- **Kept: W carried transposed, (d, S, K), for wide sweeps** (S K >= 4 n_batch): copying the (S K) x d
  weights transposed every step (31 MB at 256 settings) cost ~10%; copying the 100 x 3072 batch
  transposed instead is cheap. **Kept: evaluation logits laid out (S, n, K) for wide sweeps**: the
  per-setting loss then reads its logits contiguously, 5-10% off the evaluation at 64-256 settings.
- **Dropped (no gain beyond the noise):** prefetching the next batch in the scan carry so that its copy
  overlaps the step's GEMMs; the evaluation of epoch e run alongside the training of epoch e+1 (software
  pipelining); splitting the *settings* into two independent groups (+5%, less than the d split); d cut in
  3 or 4; the batch rows cut in two instead of d; the forward split but the backward whole (extra copies,
  slower); unrolling the batch loop so the slices are static (6 s compile, no faster: XLA still copies
  the slice); the two halves as one batched (2, ...) dot (XLA merged them back into one thin dot, 2x
  slower); XLA flags (`--xla_cpu_experimental_ynn_fusion_type=...`, the oneDNN and XNNPACK dot fusions,
  the concurrency-optimized scheduler): none consistently better, and flags must be set before JAX starts.
- **Dropped (2026-12-03, AVX2 machine): the stacked weights as one 2-D (S K) x d matrix**, the logits of a
  step as one `(S K) x n_b` dot (or `n_b x (S K)`), no d split: 0.64-0.70 of the floor against 0.72 for the
  kept layout over 5 epochs with evaluation, same numbers to 2e-7. A first probe of this closed over one
  array for both the training and the validation set; XLA then merged the two evaluations into one and the
  variant looked 1.6x faster. Pass distinct arrays as arguments when timing.
- **Dropped: a blocked update through the Gram matrix of the batches** (the logits of the next B batches from
  one R x d x S K GEMM plus (X_t X_s^T) G_s corrections, the weights from one S K x R x d GEMM per block of
  R = B n_b rows): bigger GEMMs, but the one-off Gram blocks (n R d FLOPs) and the thin correction GEMMs cost
  more than they saved (0.54 of the floor at B = 5, worse at B = 10 and 20), its rounding drifts further
  from `train.train` (4e-7 vs 1e-8), and it only works without shuffling.
- **Gradient check.** `gradcheck.logit_numerical_grad` now vmaps the d shifts of one logit column (a row of
  dW at a time, chunks of 1024) instead of mapping over all (i, j) pairs with a scatter per pair: 0.20 ->
  0.13 s warm, ~1.0 -> ~0.7 s for the first call, identical numbers. The generic `numerical_grad` is kept as
  the plain reference it is (61,460 evaluations of the full cost). The table's check is the four-point
  stencil with each loss change evaluated as `log1p(p_i expm1(t))` (no cancellation): twice the evaluations
  of the two-point one, max relative error 1e-12 instead of 5e-6.
"""


def why_section(results: dict) -> str:
    d = results["derived"]
    rate = results["gemm_rate"]["median"]
    shape = {r["settings"]: r for r in results.get("shape_rates", [])}
    lines = ["## Why the missed targets are missed\n"]
    missed = [r for r in results["targets"] if r["met"] is False]
    if not missed:
        lines.append("Every target was met in this run.\n")
        return "\n".join(lines)
    for r in missed:
        k = r["key"]
        if k == "dd2424_fraction_of_floor":
            txt = (f"- **DD2424 sweep at {d['dd2424_fraction_of_floor']:.2f} of the floor.** The floor assumes every "
                   f"FLOP at the 4096-cube GEMM rate ({rate / 1e9:.0f} GFLOP/s on both cores). Half the sweep's FLOPs "
                   f"are the per-step dots of 4 settings x K = 10 columns, 100 x 3072 x 40 and 40 x 100 x 3072: ")
            if 4 in shape:
                s4 = shape[4]
                txt += (f"alone, in a scan, they run at {s4['forward'] / 1e9:.0f} and {s4['backward'] / 1e9:.0f} GFLOP/s "
                        f"({s4['fraction_of_rate']['forward']:.2f} and {s4['fraction_of_rate']['backward']:.2f} of the rate; "
                        f"the 10,000 x 3072 x 40 evaluation dot runs at {s4['fraction_of_rate']['evaluation']:.2f}). "
                        f"At those rates the sweep's GEMMs alone would take {4 * results['dd2424']['epochs'] * s4['shape_floor_ms_per_setting_epoch'] / 1e3:.2f} s; "
                        f"lincls takes {results['dd2424']['times']['lincls']['median']:.2f} s "
                        f"({d.get('dd2424_fraction_of_shape_floor', float('nan')):.2f} of that shape floor: the d split runs the "
                        f"thin forward dots one per core, which a single dot does not). ")
            else:
                txt += "too thin to keep two cores busy at the large-GEMM rate. "
            txt += ("What is left per step is serial: the copy of the batch out of X (DRAM-bound), the transposed copy of "
                    "W that the forward dot wants, and ~10 small softmax/update fusions. Wider sweeps amortise all of "
                    "this (the width table).")
            lines.append(txt)
        elif k == "speedup_vs_numpy":
            lines.append(
                f"- **{d['speedup_vs_numpy']:.1f}x faster than NumPy, not 5x.** NumPy (OpenBLAS, both cores) runs the "
                f"course algorithm at {d['numpy_fraction_of_floor']:.2f} of the floor on this machine, so 5x faster "
                f"would need {5 * d['numpy_fraction_of_floor']:.2f} of the floor"
                + (": faster than the floor itself, impossible here." if 5 * d["numpy_fraction_of_floor"] > 1 else
                   ", i.e. the thin GEMMs near the large-GEMM rate.")
            )  # fmt: skip
        elif k == "speedup_vs_torch":
            t = results["dd2424"]["times"]
            seq = t.get("torch_sequential", {}).get("median")
            lines.append(
                f"- **{d['speedup_vs_torch']:.1f}x the speed of PyTorch (stacked), not 2x.** PyTorch with its settings "
                f"stacked into one GEMM, as lincls does, runs at {d.get('torch_fraction_of_floor', float('nan')):.2f} of the "
                f"floor (MKL's thin GEMMs are good); 2x faster would need {2 * d.get('torch_fraction_of_floor', float('nan')):.2f} "
                f"of the floor." + (f" Against PyTorch running the settings one after another, the direct port of the course "
                                    f"code, lincls is {seq / t['lincls']['median']:.1f}x faster." if seq else "")
            )  # fmt: skip
        elif k == "width256_fraction_of_floor":
            txt = f"- **256 settings at {d['width256_fraction_of_floor']:.2f} of the floor.** "
            if 256 in shape:
                s = shape[256]
                txt += (f"Here the GEMMs are wide, but even alone they run below the 4096-cube rate: forward "
                        f"{s['fraction_of_rate']['forward']:.2f}, backward {s['fraction_of_rate']['backward']:.2f}, evaluation "
                        f"{s['fraction_of_rate']['evaluation']:.2f} of it (shape floor {s['shape_floor_ms_per_setting_epoch']:.1f} ms "
                        f"per setting-epoch). ")
            txt += ("Each step also reads and writes the 31 MB of weights (with the gradient, beyond the 32 MB L3) and "
                    "copies the batch transposed; each evaluation writes 100 MB of logits.")
            lines.append(txt)
        elif k == "gradcheck_full_s":
            lines.append(f"- **Gradient check {d['gradcheck_full_s']:.2f} s**, most of it compilation.")
    lines.append("")
    return "\n".join(lines)


def readme_paragraph(results: dict) -> str:
    d, m = results["derived"], results["machine"]
    dd = results["dd2424"]
    w = {r["settings"]: r for r in results.get("widths", [])}
    if not w or 1 not in w:
        return "## For the README\n\n(run the full benchmark for this paragraph)\n"
    rate = results["gemm_rate"]["median"]
    t = dd["times"]["lincls"]["median"]
    E = dd["epochs"]
    per_se = 1e3 * t / (4 * E)
    widest = max(w)
    ww = w[widest]
    flat = [s for s in sorted(w) if w[s]["ms_per_setting_epoch"] <= 1.15 * ww["ms_per_setting_epoch"]]
    knee = flat[0] if flat else widest
    data_mb = (N + N_VAL + N_TEST) * D * 4 / 2**20
    epoch_wide = ww["ms_per_setting_epoch"] * widest / 1e3
    torch_txt = (f" and {d['speedup_vs_torch']:.1f}x as fast as the same algorithm in PyTorch with its settings stacked too"
                 if "speedup_vs_torch" in d else "")  # fmt: skip
    mem = [r for r in results.get("memory", []) if "error" not in r]
    mem_txt = (f"at {mem[-1]['settings']} settings the peak memory while training grows by "
               f"{mem[-1]['peak_rss_mb'] - mem[-1]['rss_before_run_mb']:.0f} MB (weights, gradients, logits), where a copy "
               f"of the training data per setting would need {mem[-1]['settings'] * N * D * 4 / 2**20:,.0f} MB"
               if mem else "memory grows with the weights and logits, never with copies of X")  # fmt: skip
    return f"""## For the README

**Performance.** On {m['cores']} shared CPU cores ({m['cpu']}, jax {m['jax']}), the DD2424 sweep (4 settings x
{E} epochs on 10,000 images, loss/cost/accuracy on the full training and validation sets after every epoch)
takes {t:.2f} s after a {dd['compile_s']:.1f} s compile: {per_se:.1f} ms per setting-epoch, {d['dd2424_fraction_of_floor']:.2f}
of the floor set by the machine's own float32 GEMM rate ({rate / 1e9:.0f} GFLOP/s, 2.46 GFLOP per
setting-epoch), {d['speedup_vs_numpy']:.1f}x faster than the course's NumPy code{torch_txt}. The settings are
stacked into the columns of one GEMM per step, so a wider sweep costs less per setting: from
{w[1]['ms_per_setting_epoch']:.0f} ms per setting-epoch for 1 setting down to about {ww['ms_per_setting_epoch']:.0f} ms from
{knee} settings on ({ww['fraction_of_floor']:.2f} of the floor at {widest}), with one shared copy of the data
({mem_txt}).
Across N devices the settings axis is sharded (`devices` in the config) and each device trains S/N settings
on its own replica of the data: {widest} settings take {epoch_wide:.1f} s per epoch here, and would take about
{epoch_wide:.1f}/N s on N such devices as long as each keeps at least {knee} settings. It stops being
embarrassingly parallel where (1) S/N drops below that and each device's GEMMs get thin (the per-setting
cost rises to {w[1]['ms_per_setting_epoch']:.0f} ms at 1 setting per device), (2) every device must first receive the
{data_mb:.0f} MB of features (once per sweep; ~{data_mb / 1e4:.2f} s at 10 GB/s, seconds over a network), and (3)
every device compiles the same program ({dd['compile_s']:.1f} s here, paid in parallel, so it does not shrink with
N). There is no per-step host loop to scale: the sweep is one compiled program with the epochs and batches
in `lax.scan`; Python is re-entered once per epoch only for the optional progress line. Measure your machine
with `python benchmarks/run.py` ({results['wall_s'] / 60:.0f} minutes here; `--quick` for a smoke run).
"""


# ----------------------------------------------------------------------------- main


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few epochs and repeats, narrow widths, no generic check")
    parser.add_argument("--repeats", type=int, help="repeats of each timed measurement (default 3, quick 1)")
    parser.add_argument("--out", help="output stem (default benchmarks/results, quick benchmarks/results_quick)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the layout comparison")
    parser.add_argument("--probe-memory", type=int, metavar="S", help=argparse.SUPPRESS)
    parser.add_argument("--render", metavar="JSON", help="measure nothing: rewrite the .md next to a results JSON from its numbers")
    args = parser.parse_args(argv)

    if args.render:
        path = Path(args.render)
        results = json.loads(path.read_text())
        write_atomic(path.with_suffix(".md"), write_report(results, path.with_suffix(".md"), results.get("command", "python benchmarks/run.py")))
        print(f"wrote {path.with_suffix('.md')} from {path}")
        return 0

    if args.probe_memory:
        print("MEMORY" + json.dumps(probe_memory(args.probe_memory, 1)), flush=True)
        return 0

    start = time.perf_counter()
    quick = args.quick
    repeats = args.repeats or (1 if quick else 3)
    stem = Path(args.out) if args.out else HERE / ("results_quick" if quick else "results")
    command = "python benchmarks/run.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:]) if (argv or sys.argv[1:]) else "")
    print(f"lincls benchmark ({'quick' if quick else 'full'}), {repeats} repeats", flush=True)

    bench = Bench(args)
    results = {"machine": machine_info(), "quick": quick, "repeats": repeats}
    print("DD2424 sweep and baselines", flush=True)
    bench.dd2424(epochs=2 if quick else 40, repeats=repeats)
    print("GEMM rates at the sweep's shapes", flush=True)
    bench.shape_rates([1, 4, 256] if not quick else [4], repeats=max(3, repeats))
    print("sweep width", flush=True)
    plan = {1: (2, 1), 4: (2, 1), 16: (1, 1)} if quick else {1: (20, 3), 4: (20, 3), 16: (8, 3), 64: (3, 2), 256: (2, 2)}
    bench.widths(plan)
    print("gradient checks", flush=True)
    bench.gradchecks(generic=not quick, repeats=repeats)
    if not quick and not args.no_ablation:
        print("layouts tried", flush=True)
        bench.ablation([(4, 20, 3), (256, 1, 2)])
    results.update(bench.results)
    print("peak memory (a fresh process per width)", flush=True)
    results["memory"] = memory_section([4] if quick else [4, 64, 256])
    results["gemm_rate"] = summary(bench.rates)
    loads = [o for sec in ([results["dd2424"]["times"][m] for m in results["dd2424"]["times"]] +
                           [r["times"] for r in results.get("widths", [])]) for o in sec.get("other_load", [])]  # fmt: skip
    results["other_load"] = {"median": statistics.median(loads), "max": max(loads)} if loads else {"median": 0.0, "max": 0.0}
    results["derived"] = derive(results)
    results["targets"] = target_rows(results["derived"])
    results["wall_s"] = time.perf_counter() - start
    results["command"] = command
    md = write_report(results, stem.with_suffix(".md"), command)
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(stem.with_suffix(".json"), json.dumps(results, indent=1, default=str))
    write_atomic(stem.with_suffix(".md"), md)
    print()
    for r in results["targets"]:
        value = "" if r["measured"] is None else f"{r['measured']:.3f}"
        print(f"{'MET ' if r['met'] else 'MISS' if r['met'] is False else '----'} {r['target']}: {value} {r['gap']}")
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')} ({results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
