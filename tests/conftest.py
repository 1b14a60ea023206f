"""Shared fixtures: MovieLens-100K (skipped with a reason when absent) and synthetic data."""

from __future__ import annotations

import os

import pytest
import torch

from rechub_core.datasets import find_movielens_100k, load_movielens_100k
from rechub_core.preprocess import PreparedData, prepare
from rechub_core.synthetic import synthetic_interactions

# pytest-xdist runs two workers on two cores: one thread each avoids oversubscription
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ml100k() -> PreparedData:
    """MovieLens-100K prepared under the protocol (max_len 50, min 5 interactions)."""
    folder = find_movielens_100k()
    if folder is None:
        pytest.skip(
            "MovieLens-100K not found: set RECHUB_DATA_DIR to the folder holding ml-100k/ "
            "(default ../shared/data next to the repository), or fetch it into the cache "
            "with `rechub data fetch movielens-100k`"
        )
    return prepare(load_movielens_100k(folder), max_len=50, min_interactions=5)


@pytest.fixture(scope="session")
def synthetic() -> PreparedData:
    """Small seeded synthetic data with planted structure (fast tests)."""
    return prepare(
        synthetic_interactions(n_users=300, n_items=120, n_clusters=6, seed=3), max_len=20
    )
