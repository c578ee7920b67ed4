"""Shared test fixtures: where the real data lives, the manifests built from it, and skipping cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The same default and override as configs/prepare-data.sh.
SHARED_DATA = Path(os.environ.get("RADSCRIBE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """transformers' generate on two intra-op threads of a busy 2-core machine is 100x slower; tiny models need one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shared_path(*parts: str) -> Path:
    """A path under ``../shared/data`` (or ``$RADSCRIBE_DATA``); skips the calling test with a reason when it is absent."""
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


# ----- manifests built from the shared data, as configs/prepare-data.sh builds them (once per test session) -----


@pytest.fixture(scope="session")
def spine_manifest(tmp_path_factory) -> Path:
    """``data/cadma/spine.jsonl``: CADMA imported, then annotated with the spine template."""
    from radscribe.annotate import annotate_spine_manifest
    from radscribe.data import import_dataset

    source = shared_path("spine-cadma")
    folder = tmp_path_factory.mktemp("cadma")
    import_dataset("cadma", source, folder / "cadma.jsonl")
    annotate_spine_manifest(folder / "cadma.jsonl", folder / "spine.jsonl")
    return folder / "spine.jsonl"


@pytest.fixture(scope="session")
def chest_manifest(tmp_path_factory) -> Path:
    """``data/nih/chest.jsonl``: NIH ChestX-ray14 imported, chest template filled, 15 % carved out as valid (seed 0)."""
    from radscribe.annotate import annotate_chest_manifest
    from radscribe.data import assign_splits, import_dataset, read_manifest, write_manifest

    source = shared_path("nih-cxr14-621")
    folder = tmp_path_factory.mktemp("nih")
    import_dataset("nih-cxr14", source, folder / "nih.jsonl")
    annotate_chest_manifest(folder / "nih.jsonl", folder / "chest-all.jsonl")
    write_manifest(assign_splits(read_manifest(folder / "chest-all.jsonl"), valid=0.15, seed=0), folder / "chest.jsonl")
    return folder / "chest.jsonl"
