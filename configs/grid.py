"""Grid search: 8 lambdas x 8 learning rates, log-spaced, trained as one sharded sweep.

The best setting is chosen on validation accuracy only; its test accuracy is reported.
Then (refine=True) a second 8 x 8 grid spans the neighbours of the best cell.

    python -m lincls.sweep --config configs/grid.py --data-dir ../shared/data/cifar-10-batches-py

Writes results/grid/ (REPORT.md with heatmaps of validation accuracy and cost) and
results/grid/refine/ (the finer grid); --set refine=false skips the second grid.
On several devices the 64 settings are split across them: --set devices=N picks N.
"""

import numpy as np

from lincls.config import Config


def get_config() -> Config:
    return Config(
        name="grid",
        lams=tuple(float(v) for v in np.r_[0.0, np.logspace(-4, 0, 7)].round(6)),  # 0 and 1e-4 .. 1
        etas=tuple(float(v) for v in np.logspace(-3.5, -0.5, 8).round(6)),  # 3.2e-4 .. 0.32
        grid=True,
        n_batch=100,
        n_epochs=40,
        seed=400,
        refine=True,
    )
