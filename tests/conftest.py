"""Shared fixtures, loaded by pytest for every test folder (tests/engine, tests/tools, tests/app,
tests/deeppose): a model folder with random weights, the shipped model folders, a seeded random
generator. Plain helpers and paths are in tests/support (``from support import ...``); tests
never import this file."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from support import WEIGHTS_BODY, WEIGHTS_FLIC, WEIGHTS_LSP, make_random_model

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """A 3-stage FLIC model folder with random weights (shapes as the shipped model)."""
    return make_random_model(tmp_path_factory.mktemp("random_model"))


@pytest.fixture(scope="session")
def flic_weights() -> Path:
    """The shipped FLIC model folder; skips while it is not trained yet."""
    if not (WEIGHTS_FLIC / "manifest.json").is_file():
        pytest.skip("weights/flic not trained yet")
    return WEIGHTS_FLIC


@pytest.fixture(scope="session")
def lsp_weights() -> Path:
    """The shipped full-body (LSP) model folder; skips while it is not installed."""
    if not (WEIGHTS_LSP / "manifest.json").is_file():
        pytest.skip("weights/lsp is not installed")
    return WEIGHTS_LSP


@pytest.fixture(scope="session")
def body_weights() -> Path:
    """The shipped psi v2 model folder (weights/body); skips while it is not installed."""
    if not (WEIGHTS_BODY / "manifest.json").is_file():
        pytest.skip("the body model (weights/body) is not installed")
    return WEIGHTS_BODY


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
