"""Train every (lambda, eta) setting of a config at once: ``vmap`` over settings, sharded over devices.

    python -m lincls.sweep --config configs/dd2424.py --data-dir ../shared/data/cifar-10-batches-py

The settings axis is the only thing that varies, so it is the axis that is vmapped and
the axis that is split across devices: per-setting arrays (params, lambda, eta) live on
a ``jax.sharding.Mesh`` with ``PartitionSpec("settings")``; the data is replicated, one
copy per device, read once per batch for all the settings on that device. The number of
settings is padded up to a multiple of the device count and the padding dropped from
the results. With several hosts, ``jax.distributed.initialize()`` joins them and only
process 0 writes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lincls import config as config_lib
from lincls import model, train
from lincls.model import Params
from lincls.train import TrainData, TrainOptions

AXIS = "settings"


class SweepResult(NamedTuple):
    """Host-side results, padding dropped. History arrays are (S, n_epochs)."""

    params: dict[str, np.ndarray]  # W (S, K, d), b (S, K)
    history: dict[str, np.ndarray]
    test_accuracy: np.ndarray  # (S,)
    compile_time_s: float
    wall_time_s: float
    sharding: str  # how the settings axis was laid out, e.g. "NamedSharding(... PartitionSpec('settings',))"
    n_devices: int  # devices on the settings axis


# ----------------------------------------------------------------------------- pure parts


def init_sweep_params(key: jax.Array, n_settings: int, d: int, K: int, *, std: float = 0.01, share: bool = True) -> Params:
    """Params with a leading settings axis: every setting from ``init_params(key)`` when
    ``share``, else setting i from ``init_params(split(key, n_settings)[i])``."""
    if share:
        p = model.init_params(key, d, K, std)
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (n_settings,) + a.shape), p)
    return jax.vmap(lambda k: model.init_params(k, d, K, std))(jax.random.split(key, n_settings))


class StackedLayout(NamedTuple):
    """How the stacked path holds the settings' weights while it trains (all static).

    ``transposed``: W carried as (d, S, K) instead of (S, K, d). Each step's two matmuls
    need W in one layout and the batch in both (``X_b W^T`` and ``G^T X_b``), so one of
    them is copied per step: W^T when S*K is small, the batch's transpose when S*K is
    wide (copying the (S K) x d weights each step costs more than the GEMMs save).
    ``n_split``: W and each batch cut into this many column blocks of d. On a CPU the
    thin (n_batch x d) x (d x S K) GEMMs of a few settings do not keep two cores busy; two
    independent half-d GEMMs (summed logits, separate weight halves) run side by side.
    """

    transposed: bool = False
    n_split: int = 1


def stacked_layout(n_settings: int, K: int, d: int, n_batch: int, platform: str | None = None) -> StackedLayout:
    """The layout the sweep uses; thresholds measured on a 2-core CPU (benchmarks/results.md)."""
    platform = platform or jax.default_backend()
    wide = n_settings * K >= 4 * n_batch
    return StackedLayout(transposed=wide, n_split=2 if platform == "cpu" and not wide and d >= 2 else 1)


def _split_bounds(d: int, n_split: int) -> list[tuple[int, int]]:
    cuts = [round(i * d / n_split) for i in range(n_split + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def stacked_evaluate(W, b, X, y, lams, loss_fn=model.CROSS_ENTROPY, transposed: bool = False):
    """(loss, cost, accuracy), each (S,), of every setting on (X, y) from one GEMM.

    ``W`` is (S, K, d), or (d, S, K) when ``transposed``; the logits of all settings come
    from one GEMM, ``X W^T`` with the settings stacked into S*K columns, laid out (n, S, K)
    for a few settings and (S, n, K) for many (measured: the wide sweep's loss then reads
    each setting's logits contiguously, 5-10% faster at 64-256 settings).
    """
    if transposed:
        logits = jnp.einsum("nd,dsk->snk", X, W) + b[:, None, :]  # (S, n, K)
        reg = lams * jnp.sum(W * W, axis=(0, 2))
        s_axis = 0
    else:
        logits = jnp.einsum("nd,skd->nsk", X, W) + b  # (n, S, K)
        reg = lams * jnp.sum(W * W, axis=(1, 2))
        s_axis = 1
    loss = jax.vmap(loss_fn.value, in_axes=(s_axis, None))(logits, y)
    acc = jnp.mean(jnp.argmax(logits, axis=2) == jnp.expand_dims(y, s_axis), axis=1 - s_axis)
    return loss, loss + reg, acc


def _stacked_parts(params: Params, options: TrainOptions, layout: StackedLayout):
    """The stacked path's carry, epoch function and way back to params (S, K, d)."""
    bounds = _split_bounds(params["W"].shape[2], layout.n_split)
    t = layout.transposed
    w_axis = 1 if t else 0  # the settings axis of each W piece
    spec_fwd, spec_bwd = ("nd,dsk->nsk", "nsk,nd->dsk") if t else ("nd,skd->nsk", "nsk,nd->skd")

    def to_pieces(W):
        return tuple(jnp.transpose(W[..., lo:hi], (2, 0, 1)) if t else W[..., lo:hi] for lo, hi in bounds)

    def whole(pieces):  # the pieces joined along d, still in the carried layout
        return jnp.concatenate(pieces, axis=0 if t else 2) if len(pieces) > 1 else pieces[0]

    axes = {"W": (w_axis,) * len(bounds), "b": 0}
    init = jax.vmap(train.init_state, in_axes=(axes, 0), out_axes=(axes, 0))
    # optax's plain SGD step for every setting at once (the learning rate lives in the state)
    update = jax.vmap(lambda g, s, p, eta: train.sgd(eta).update(g, s, p), in_axes=(axes, 0, axes, 0), out_axes=(axes, 0))

    def grads(pieces, b, Xb, yb, lams):
        Xs = [Xb[:, lo:hi] for lo, hi in bounds] if len(bounds) > 1 else [Xb]
        logits = sum(jnp.einsum(spec_fwd, x, w) for x, w in zip(Xs, pieces)) + b
        G = jax.vmap(options.loss_fn.grad_logits, in_axes=(1, None), out_axes=1)(logits, yb)  # (nb, S, K)
        lam = lams[None, :, None] if t else lams[:, None, None]
        dW = tuple(jnp.einsum(spec_bwd, G, x) + 2 * lam * w for x, w in zip(Xs, pieces))
        return {"W": dW, "b": G.sum(axis=0)}

    def epoch(state, data: TrainData, lams, etas, epoch_key):
        n, nb = data.X_train.shape[0], options.n_batch
        n_steps = n // nb
        if n_steps == 0:
            raise ValueError(f"n_batch={nb} is larger than the training set (n={n})")
        order = jax.random.permutation(epoch_key, n) if options.shuffle else None

        def step(state, start):
            p, opt_state = state
            Xb, yb = train.take_batch(data.X_train, data.y_train, order, start, nb)
            upd, opt_state = update(grads(p["W"], p["b"], Xb, yb, lams), opt_state, p, etas)
            return (optax.apply_updates(p, upd), opt_state), None

        state, _ = jax.lax.scan(step, state, jnp.arange(n_steps) * nb)
        W, b = whole(state[0]["W"]), state[0]["b"]
        metrics = sum((stacked_evaluate(W, b, X, y, lams, options.loss_fn, t) for X, y in
                       ((data.X_train, data.y_train), (data.X_val, data.y_val))), ())
        return state, dict(zip(train.METRICS, metrics))

    def start(params, etas):
        return init({"W": to_pieces(params["W"]), "b": params["b"]}, etas)

    def finish(state):
        W = whole(state[0]["W"])
        return {"W": jnp.transpose(W, (1, 2, 0)) if t else W, "b": state[0]["b"]}

    return start, epoch, finish


def _train_sweep(params: Params, data: TrainData, lams, etas, key, options: TrainOptions, on_epoch, layout):
    """:func:`train_sweep` with the layout given: a :class:`StackedLayout`, or None for the
    reference path (:func:`lincls.train.train_epoch` vmapped over the settings axis)."""
    if layout is None:
        start = jax.vmap(train.init_state)
        epoch_of_all = jax.vmap(partial(train.train_epoch, options=options), in_axes=(0, None, 0, 0, None))

        def finish(state):
            return state[0]
    else:
        start, epoch_of_all, finish = _stacked_parts(params, options, layout)

    def epoch(state, xs):
        index, epoch_key = xs
        state, metrics = epoch_of_all(state, data, lams, etas, epoch_key)
        if on_epoch is not None:
            jax.debug.callback(on_epoch, index + 1, metrics)
        return state, metrics

    xs = (jnp.arange(options.n_epochs), jax.random.split(key, options.n_epochs))
    state, history = jax.lax.scan(epoch, start(params, etas), xs)
    return finish(state), {k: v.T for k, v in history.items()}


def train_sweep(params: Params, data: TrainData, lams, etas, *, key: jax.Array, options: TrainOptions, on_epoch=None):
    """Every setting trained as :func:`lincls.train.train` would train it alone.

    Epochs are a ``lax.scan``; each epoch trains every setting over the shared batches
    (the data and the batch order are shared; params, lams and etas have a leading
    settings axis S) and then records the metrics, so ``on_epoch(epoch, metrics)``, if
    given, sees every setting at once, through ``jax.debug.callback``. Returns params
    (S, ...) and history of (S, n_epochs) arrays.

    With the hand gradient the settings are stacked: each step is one
    (n_batch x d) x (d x S K) GEMM for the logits of all settings and one
    (S K x n_batch) x (n_batch x d) GEMM for their weight gradients (see
    :class:`StackedLayout`), and each epoch's evaluation one GEMM per data set. With
    ``grad="autodiff"`` it is :func:`lincls.train.train_epoch` vmapped over the settings.
    """
    S, K, d = params["W"].shape
    layout = stacked_layout(S, K, d, options.n_batch) if options.grad == "hand" else None
    return _train_sweep(params, data, lams, etas, key, options, on_epoch, layout)


def sweep_accuracy(params: Params, X, y) -> jax.Array:
    """Accuracy of every setting on (X, y): (S,)."""
    return jax.vmap(model._accuracy, in_axes=(0, None, None))(params, X, y)


@partial(jax.jit, static_argnames=("options", "on_epoch"), donate_argnums=0)
def train_and_test(params: Params, data: TrainData, X_test, y_test, lams, etas, key, options: TrainOptions, on_epoch=None):
    """The whole sweep as one compiled program: train every setting, then its test accuracy."""
    params, history = train_sweep(params, data, lams, etas, key=key, options=options, on_epoch=on_epoch)
    return params, history, sweep_accuracy(params, X_test, y_test)


def first_nonfinite_epoch(history: dict[str, np.ndarray]) -> np.ndarray:
    """Per setting, the 1-based first epoch with a NaN or inf metric, or 0 if none."""
    bad = np.zeros_like(next(iter(history.values())), dtype=bool)
    for values in history.values():
        bad |= ~np.isfinite(values)
    return np.where(bad.any(axis=1), bad.argmax(axis=1) + 1, 0)


def padded_size(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_settings(a: np.ndarray, size: int) -> np.ndarray:
    """Pad the leading axis to ``size`` by repeating the last setting (results are dropped)."""
    return np.concatenate([a, np.repeat(a[-1:], size - len(a), axis=0)]) if size > len(a) else a


# ----------------------------------------------------------------------------- devices


def make_mesh(n_devices: int = 0) -> Mesh:
    """A 1-D mesh with axis "settings" over the first ``n_devices`` devices (0 = all)."""
    devices = jax.devices()
    if n_devices > len(devices):
        raise config_lib.ConfigError(f"field 'devices' = {n_devices}, but only {len(devices)} devices are visible")
    chosen = devices[: n_devices or len(devices)]
    if len({d.process_index for d in chosen}) < jax.process_count():
        raise config_lib.ConfigError(
            f"field 'devices' = {n_devices} leaves some of the {jax.process_count()} processes without a device on "
            f"the mesh; use 0 (every device) or a multiple of the {jax.local_device_count()} devices per process"
        )
    return Mesh(np.array(chosen), (AXIS,))


def put(x: np.ndarray, mesh: Mesh, spec: PartitionSpec) -> jax.Array:
    """A global array with ``spec`` on ``mesh`` from a host array every process holds."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, spec), lambda index: x[index])


def to_host(x: jax.Array) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    try:
        return int(text) if text else default
    except ValueError:
        raise config_lib.ConfigError(f"environment variable {name}={text!r} must be a whole number") from None


def maybe_initialize_distributed(force: bool = False) -> bool:
    """Join the other processes of a multi-host run; return whether it did.

    It does when forced (``--distributed``), when ``JAX_COORDINATOR_ADDRESS`` is set (then
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` give the count and this process's index),
    or under a SLURM or Open MPI launch of more than one task, which
    ``jax.distributed.initialize()`` detects by itself, as it does a Cloud TPU slice.
    A failure to join is a :class:`lincls.config.ConfigError` that says what to set.
    """
    cluster = _env_int("SLURM_NTASKS", 1) > 1 or _env_int("OMPI_COMM_WORLD_SIZE", 1) > 1
    if not (force or os.environ.get("JAX_COORDINATOR_ADDRESS") or cluster):
        return False
    kwargs = {}
    if os.environ.get("JAX_NUM_PROCESSES"):
        kwargs["num_processes"] = _env_int("JAX_NUM_PROCESSES", 1)
    if os.environ.get("JAX_PROCESS_ID"):
        kwargs["process_id"] = _env_int("JAX_PROCESS_ID", 0)
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, RuntimeError) as e:
        raise config_lib.ConfigError(
            f"jax.distributed.initialize() failed: {str(e).rstrip('.')}. On every process set JAX_COORDINATOR_ADDRESS=host:port "
            "(process 0's address), JAX_NUM_PROCESSES and JAX_PROCESS_ID, or launch under SLURM, Open MPI "
            "or on a Cloud TPU slice, where JAX finds them itself"
        ) from None
    return True


# ----------------------------------------------------------------------------- the run


class ProgressPrinter(NamedTuple):
    """``on_epoch`` callback: one line per epoch with each setting's val accuracy (process 0 only).

    A NamedTuple so that two equal printers are one static argument (no recompile).
    """

    n_epochs: int
    n_settings: int
    max_shown: int = 8

    def __call__(self, epoch, metrics):
        if jax.process_index() != 0:
            return
        acc = np.asarray(metrics["val_accuracy"])[: self.n_settings]
        cost = np.asarray(metrics["val_cost"])[: self.n_settings]
        shown = " ".join(f"{a:.3f}" for a in acc[: self.max_shown]) + (" ..." if len(acc) > self.max_shown else "")
        bad = np.flatnonzero(~np.isfinite(cost))
        note = f"  diverged (NaN/inf): settings {bad.tolist()}" if len(bad) else ""
        print(f"epoch {int(epoch):3d}/{self.n_epochs}  val acc {shown}  best {np.nanmax(np.where(np.isfinite(cost), acc, np.nan), initial=0):.3f}{note}", flush=True)


def run_sweep(config: config_lib.Config, dataset, *, mesh: Mesh | None = None) -> SweepResult:
    """Train ``config``'s settings on ``dataset`` (a lincls.data.Dataset) over ``mesh``."""
    mesh = mesh or make_mesh(config.devices)
    settings = np.array(config.settings, dtype=np.float32).reshape(-1, 2)
    S = len(settings)
    size = padded_size(S, mesh.size)
    key = jax.random.PRNGKey(config.seed)
    d, K = dataset.n_features, dataset.n_classes
    params0 = init_sweep_params(key, S, d, K, std=config.init_std, share=config.share_init)
    params0 = {k: pad_settings(np.asarray(v), size) for k, v in params0.items()}
    lams, etas = pad_settings(settings[:, 0], size), pad_settings(settings[:, 1], size)
    options = TrainOptions(n_batch=config.n_batch, n_epochs=config.n_epochs, grad=config.grad, shuffle=config.shuffle)

    per_setting, replicated = PartitionSpec(AXIS), PartitionSpec()
    args = (
        {k: put(v, mesh, per_setting) for k, v in params0.items()},
        TrainData(*(put(a, mesh, replicated) for a in (dataset.X_train, dataset.y_train, dataset.X_val, dataset.y_val))),
        put(dataset.X_test, mesh, replicated),
        put(dataset.y_test, mesh, replicated),
        put(lams, mesh, per_setting),
        put(etas, mesh, per_setting),
        jax.random.fold_in(key, 1),  # the data key (batch order when shuffling): shared by all settings
    )
    on_epoch = ProgressPrinter(config.n_epochs, S) if config.progress else None
    start = time.perf_counter()
    compiled = train_and_test.lower(*args, options=options, on_epoch=on_epoch).compile()
    compile_time = time.perf_counter() - start

    start = time.perf_counter()
    params, history, test_acc = jax.block_until_ready(compiled(*args))
    wall = time.perf_counter() - start
    history = {k: to_host(v)[:S] for k, v in history.items()}
    return SweepResult(
        params={k: to_host(v)[:S] for k, v in params.items()},
        history=history,
        test_accuracy=to_host(test_acc)[:S],
        compile_time_s=compile_time,
        wall_time_s=wall,
        sharding=str(test_acc.sharding),
        n_devices=mesh.size,
    )


# ----------------------------------------------------------------------------- the command


def build_metrics(config: config_lib.Config, dataset, result: SweepResult, command: str) -> dict:
    """metrics.json: the config, the data, the devices, times, and per setting its numbers."""
    diverged_at = first_nonfinite_epoch(result.history)
    settings = []
    for i, (lam, eta) in enumerate(config.settings):
        finite = np.isfinite(result.params["W"][i]).all() and diverged_at[i] == 0
        settings.append({
            "index": i, "lam": float(lam), "eta": float(eta),
            "test_accuracy": float(result.test_accuracy[i]) if finite else float("nan"),
            "diverged": not finite,
            "diverged_epoch": int(diverged_at[i]) if diverged_at[i] else None,
            **{k: [float(v) for v in result.history[k][i]] for k in train.METRICS},
        })  # fmt: skip
    return {
        "name": config.name,
        "command": command,
        "config": config.to_dict(),
        "label_names": list(dataset.label_names),
        "dataset": {
            "source": dataset.source, "plan": dataset.plan,
            "n_train": len(dataset.y_train), "n_val": len(dataset.y_val), "n_test": len(dataset.y_test),
        },  # fmt: skip
        "devices": {"platform": jax.devices()[0].platform, "count": result.n_devices, "processes": jax.process_count()},
        "settings_sharding": result.sharding,
        "wall_time_s": result.wall_time_s,
        "compile_time_s": result.compile_time_s,
        "settings": settings,
    }


def say(text: str) -> None:
    """Print on process 0 only, so that a multi-host run reports once."""
    if jax.process_index() == 0:
        print(text, flush=True)


def run_and_write(config, dataset, mesh: Mesh, out: Path, command: str, gradcheck_md: Path | None) -> dict:
    """Run one sweep, print its summary, and (process 0) write its outputs into ``out``."""
    from lincls import report

    S = len(config.settings)
    say(f"{config.name}: {S} settings x {config.n_epochs} epochs on {len(dataset.y_train)} training images; "
          f"{mesh.size} {jax.devices()[0].platform} device(s) on the settings axis")  # fmt: skip
    result = run_sweep(config, dataset, mesh=mesh)
    metrics = build_metrics(config, dataset, result, command)
    for s in metrics["settings"]:
        status = f"DIVERGED at epoch {s['diverged_epoch']} (NaN/inf)" if s["diverged"] else f"test accuracy {100 * s['test_accuracy']:.2f}%"
        say(f"  setting {s['index']}: lam={s['lam']:g} eta={s['eta']:g}  {status}")
    say(f"compile {result.compile_time_s:.2f} s, train {result.wall_time_s:.2f} s ({result.sharding})")
    if jax.process_index() == 0:
        grid = {"lams": list(config.lams), "etas": list(config.etas)} if config.grid else None
        written = report.write_outputs(out, metrics, result.params["W"], result.params["b"], gradcheck_md=gradcheck_md, grid=grid)
        say(f"wrote {len(written)} files to {out}/ (see {out}/REPORT.md)")
    return metrics


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m lincls.sweep",
        description="Train every (lambda, eta) setting of a config in one vmapped, sharded program.",
    )
    parser.add_argument("--config", default="configs/dd2424.py", help="a configs/*.py file with get_config()")
    parser.add_argument("--data-dir", help="a cifar-10-batches-py folder (or $LINCLS_DATA_DIR)")
    parser.add_argument("--source", default="auto", choices=("auto", "folder", "tfds", "download"), help="where CIFAR-10 comes from")
    parser.add_argument("--out", help="output folder (default results/<config name>/)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="override a config field; repeatable")
    parser.add_argument("--gradcheck-md", default="results/gradcheck.md", help="gradient table to include in REPORT.md if it exists")
    parser.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() (automatic when JAX_COORDINATOR_ADDRESS is set)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from lincls import data, report

    args = parse_args(argv)
    try:
        config = config_lib.apply_overrides(config_lib.load_config_file(args.config), args.set)
        where = args.config + (" with " + " ".join(f"--set {s}" for s in args.set) if args.set else "")
        config_lib.validate(config, where=where)
        maybe_initialize_distributed(args.distributed)
        dataset = data.load_dataset(args.data_dir, plan=config.plan, n_val=config.n_val, source=args.source)
        config_lib.validate(config, n_train=len(dataset.y_train), where=where)
        left_out = len(dataset.y_train) % config.n_batch
        if left_out:
            say(f"note: n_batch={config.n_batch} leaves {left_out} of the {len(dataset.y_train)} training rows out of "
                f"every epoch ({'a new remainder each epoch' if config.shuffle else 'always the last ones'})")
        mesh = make_mesh(config.devices)
    except (config_lib.ConfigError, data.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    command = "python -m lincls.sweep " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out or f"results/{config.name}")
    metrics = run_and_write(config, dataset, mesh, out, command, Path(args.gradcheck_md) if args.gradcheck_md else None)
    if config.refine:
        best = report.best_setting(metrics)
        if best is None:
            print("refine: every setting of the coarse grid diverged; nothing to refine", file=sys.stderr)
            return 1
        fine = config_lib.refined(config, best)
        say(f"refine: a {len(fine.lams)} x {len(fine.etas)} grid around lam={config.settings[best][0]:g}, "
              f"eta={config.settings[best][1]:g}: lams {fine.lams[0]:g}..{fine.lams[-1]:g}, etas {fine.etas[0]:g}..{fine.etas[-1]:g}")
        run_and_write(fine, dataset, mesh, out / "refine", command + "  (refine step)", None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
