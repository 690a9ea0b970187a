"""Fixtures shared by every test: where the public datasets live."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

#: The project's datasets, next to the repository: <repo>/../shared/datasets.
DEFAULT_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The datasets folder: ``$RECENGINE_DATASETS``, else the shared folder beside the repo."""
    return Path(os.environ.get("RECENGINE_DATASETS", DEFAULT_DATASETS))


@pytest.fixture(scope="session")
def require_dataset(datasets_dir: Path) -> Callable[[str], Path]:
    """``require_dataset("ml-100k")``: that dataset's folder, or skip the test when it is missing.

    With ``RECENGINE_REQUIRE_DATASETS=1`` (as in CI, where the data must be there) a missing
    folder fails the test instead.
    """

    def require(name: str) -> Path:
        folder = datasets_dir / name
        if not folder.is_dir():
            reason = f"dataset folder missing: {folder}"
            if os.environ.get("RECENGINE_REQUIRE_DATASETS") == "1":
                pytest.fail(reason)
            pytest.skip(reason)
        return folder

    return require


@pytest.fixture(scope="session")
def synthetic_pairs():
    """Per-pair interactions of a small synthetic rental log (seeded)."""
    from recengine.data.synthetic import generate
    from recengine.data.weighting import aggregate

    dataset = generate(n_users=300, n_items=150, seed=11)
    return aggregate(dataset.events, dataset.schema)
