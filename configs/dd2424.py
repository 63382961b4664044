"""DD2424 Assignment 1: the four (lambda, eta) experiments of the course report.

n_batch 100, 40 epochs, batches in order, every setting from the params of PRNGKey(400):

    python -m lincls.sweep --config configs/dd2424.py --data-dir ../shared/data/cifar-10-batches-py

Writes results/dd2424/ (metrics.json, REPORT.md, curves and weight images).
A quick look: add --set n_epochs=5.
"""

from lincls.config import Config


def get_config() -> Config:
    return Config(
        name="dd2424",
        lams=(0.0, 0.0, 0.1, 1.0),
        etas=(0.1, 0.001, 0.001, 0.001),
        n_batch=100,
        n_epochs=40,
        seed=400,
    )
