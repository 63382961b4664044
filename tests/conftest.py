"""Shared fixtures: explicit keys (equinox's ``getkey``) and a float64 switch."""

import itertools

import jax
import pytest


@pytest.fixture
def getkey():
    """``getkey()`` returns a fresh key on each call, all split from PRNGKey(0)."""
    counter = itertools.count()
    return lambda: jax.random.fold_in(jax.random.PRNGKey(0), next(counter))


@pytest.fixture
def x64():
    """Run the test with ``jax_enable_x64`` on; restored afterwards."""
    with jax.enable_x64(True):
        yield
