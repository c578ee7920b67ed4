"""Shared test fixtures: where the real data lives, and skipping cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def one_torch_thread():
    """transformers' generate on two intra-op threads of a busy 2-core machine is 100x slower; tiny models need one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shared_path(*parts: str) -> Path:
    """A path under ``../shared/data``; skips the calling test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture
def cadma_dir() -> Path:
    return shared_path("spine-cadma")


@pytest.fixture
def vqa_rad_dir() -> Path:
    return shared_path("vqa-rad")


@pytest.fixture
def nih_dir() -> Path:
    return shared_path("nih-cxr14-621")


@pytest.fixture
def iu_dir() -> Path:
    return shared_path("iu-xray-reports")


@pytest.fixture
def chexpert_rules_dir() -> Path:
    return shared_path("chexpert-rules")
