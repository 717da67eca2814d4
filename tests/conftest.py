from __future__ import annotations

import os
import shutil
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n`: the workers share the cores, one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, here and in the CLI processes

import pytest

from selma.harness.suites import DataLocator

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SELMA_BENCH_DATA") or REPO.parent / "shared" / "data")
ANSWERS = DATA / "dsg" / "vqa_answers_release"
WORLD_STUDY = {
    "name": "world-study",
    "base_model": "shapes-base",
    "skills": ["world_count"],
    "prompts_per_skill": 4,
    "datagen": {"backend": "world"},
    "train": {
        "rank": 4,
        "alpha": 4,
        "learning_rate": 1e-3,
        "train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "max_train_steps": 2,
        "checkpointing_steps": 2,
        "random_flip": False,
    },
    "variants": ["base", "expert:world_count"],
    "suites": ["shapes-mini"],
    "metrics": ["dsg"],
}
"""The smallest study of one world expert (the Python API and upgrade tests run it)."""

if not (DATA / "dsg" / "dsg-1k-anns.csv").is_file():
    raise RuntimeError(f"benchmark data not found at {DATA}: set SELMA_BENCH_DATA to ../shared/data")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs offline, in its own working directory, with its own cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SELMA_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SELMA_BENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.delenv("SELMA_BENCH_DATA", raising=False)
    monkeypatch.delenv("SELMA_BENCH_MIRROR", raising=False)


@pytest.fixture
def locator() -> DataLocator:
    return DataLocator.from_env(DATA, offline=True)


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A writable copy of the small DSG and TIFA files, for tests that damage them."""
    target = tmp_path / "data"
    for sub in ("dsg", "tifa"):
        shutil.copytree(DATA / sub, target / sub, ignore=shutil.ignore_patterns("vqa_answers_release"))
    return target


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three tiny random-weight families, saved once per test session."""
    from selma.models.tiny import save_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny")
    families = {"tiny-sd1": ("sd1", "epsilon"), "tiny-sd2": ("sd2", "v_prediction"), "tiny-sdxl": ("sdxl", "epsilon")}
    return {name: save_tiny_pipeline(family, pred, root / name) for name, (family, pred) in families.items()}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny CLIPModel (open_clip-shaped config) with a local processor."""
    from selma.harness.metrics.tiny import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BlipForQuestionAnswering with its processor and a local BERT vocabulary."""
    from selma.harness.metrics.tiny import save_tiny_blip_vqa

    return save_tiny_blip_vqa(tmp_path_factory.mktemp("blip"))


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny LLaVA (CLIP vision tower, Llama decoder) with a chat template."""
    from selma.harness.metrics.tiny import save_tiny_llava

    return save_tiny_llava(tmp_path_factory.mktemp("llava"))
