"""lincls: a one-layer softmax classifier on CIFAR-10 in JAX (KTH DD2424 Assignment 1)."""

__version__ = "0.1.0"
