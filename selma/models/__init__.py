"""The model registry and resolution of a model reference to something ``from_pretrained`` loads.

A reference is a registry name (``sd-v2``, ``tiny-sd1``, ``shapes-base``, …) or a local diffusers
directory. Real models resolve to their hub id (diffusers' cache, or ``HF_HUB_OFFLINE`` with a filled
cache); tiny ones are built once into the selma-bench cache and then loaded through the same path;
the shapes world's trained models ship inside the package.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from selma.errors import SelmaError
from selma.io import default_cache_dir
from selma.registry import Registry

MODELS_FILE = Path(__file__).with_name("models.yaml")
FAMILIES = ("sd1", "sd2", "sdxl")  # the architectures whose pipelines, LoRA layouts and training defaults differ


@dataclass(frozen=True)
class ModelSpec:
    """A base model: where it comes from, its architecture family and its generation defaults."""

    name: str
    family: str
    """One of :data:`FAMILIES`."""
    resolution: int
    prediction_type: str
    steps: int
    guidance_scale: float
    hub_id: str | None = None
    tiny: bool = False
    packaged: str | None = None  # a pipeline directory inside the selma package
    train_resolution: int | None = None
    """The resolution SELMA's fine-tuning script trains at (default: the native one)."""
    train_vae: str | None = None
    """The autoencoder SELMA's fine-tuning script trains with, when not the pipeline's own."""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise SelmaError(f"model {self.name!r}: unknown family {self.family!r} (known: {', '.join(FAMILIES)})")


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference resolved: the spec and what to pass to ``from_pretrained``."""

    spec: ModelSpec
    source: str
    revision: str | None = None  # for packaged models: a hash of the weights, so caches follow retraining


@cache
def model_registry() -> Registry[ModelSpec]:
    """The model registry, read from ``models.yaml``."""
    registry: Registry[ModelSpec] = Registry("model")
    for name, entry in yaml.safe_load(MODELS_FILE.read_text(encoding="utf-8")).items():
        registry.add(name, ModelSpec(name=name, **entry))
    return registry


def tiny_model_dir(name: str) -> Path:
    """Where the tiny model ``name`` is built: ``<cache>/models/<name>``."""
    return default_cache_dir() / "models" / name


def resolve_model(ref: str) -> ResolvedModel:
    """Resolve a registry name or a local diffusers directory; tiny models are built on first use."""
    path = Path(ref)
    if path.is_dir():
        return ResolvedModel(spec_from_directory(path), str(path))
    registry = model_registry()
    if ref not in registry:
        raise SelmaError(
            f"unknown model {ref!r}: not a local diffusers directory, and not one of: {', '.join(registry.names())}"
        )
    spec = registry.get(ref)
    if spec.packaged:
        return _packaged(spec)
    if spec.tiny:
        from selma.models.tiny import save_tiny_pipeline

        target = tiny_model_dir(ref)
        if not (target / "model_index.json").is_file():
            save_tiny_pipeline(spec.family, spec.prediction_type, target)
        return ResolvedModel(spec, str(target))
    assert spec.hub_id is not None
    return ResolvedModel(spec, spec.hub_id)


@cache
def _packaged(spec: ModelSpec) -> ResolvedModel:
    from selma.io import config_hash, sha256_file

    assert spec.packaged is not None
    source = Path(__file__).parents[1] / spec.packaged
    if not (source / "model_index.json").is_file():
        raise SelmaError(f"model {spec.name!r}: its packaged pipeline is missing at {source}")
    weights = sorted(source.glob("*/*.safetensors"))
    revision = config_hash({str(p.relative_to(source)): sha256_file(p) for p in weights})[:12]
    return ResolvedModel(spec, str(source), revision)


def model_identity(model: ResolvedModel) -> str:
    """What a resolved model is: its registry name for a published model, ``name@revision`` for a packaged
    one, the digest of its files for a local directory (never its path).
    """
    if model.revision:
        return f"{model.spec.name}@{model.revision}"
    if Path(model.source).is_dir():
        from selma.io import content_identity

        return content_identity(model.source)
    return model.spec.name


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SelmaError(f"{path}: cannot read ({exc})") from None


def spec_from_directory(path: Path) -> ModelSpec:
    """Infer family, native resolution and prediction type of a saved diffusers pipeline."""
    index = path / "model_index.json"
    if not index.is_file():
        raise SelmaError(f"{path}: not a diffusers pipeline directory (no model_index.json)")
    pipeline_class = _read_json(index).get("_class_name", "")
    family = "sdxl" if "XL" in pipeline_class else "sd1"
    unet = _read_json(path / "unet" / "config.json")
    vae = _read_json(path / "vae" / "config.json")
    scheduler = _read_json(path / "scheduler" / "scheduler_config.json")
    if family == "sd1" and unet.get("use_linear_projection"):
        family = "sd2"
    scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    base = model_registry().get("sdxl-base" if family == "sdxl" else "sd-v1-5")
    return replace(
        base,
        name=str(path),
        family=family,
        hub_id=None,
        tiny=False,
        resolution=int(unet.get("sample_size", 64)) * scale,
        prediction_type=scheduler.get("prediction_type", "epsilon"),
        train_resolution=None,
        train_vae=None,
    )


def load_pipeline(model: ResolvedModel, *, device: str = "cpu", dtype: Any = None) -> Any:
    """Load the pipeline of ``model`` with diffusers' ``DiffusionPipeline.from_pretrained``.

    The safety checker is disabled, as in the official SELMA scripts.
    """
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    custom = import_custom_components(model.source)
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if model.spec.family != "sdxl":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    verbosity = diffusers_logging.get_verbosity()
    if custom:  # diffusers warns that the autoencoder is not an AutoencoderKL: by design
        diffusers_logging.set_verbosity_error()
    try:
        pipe = DiffusionPipeline.from_pretrained(model.source, **kwargs)
    except OSError as exc:
        raise SelmaError(f"cannot load model {model.spec.name!r} from {model.source}: {exc}") from None
    finally:
        diffusers_logging.set_verbosity(verbosity)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def _component(source: str, name: str) -> tuple[str, str] | None:
    """(library, class) of component ``name`` in a local pipeline's ``model_index.json``."""
    index = Path(source) / "model_index.json"
    if not index.is_file():
        return None
    entry = _read_json(index).get(name)
    return (entry[0], entry[1]) if isinstance(entry, list) and len(entry) == 2 else None


def import_custom_components(source: str) -> list[str]:
    """Import the selma modules that define components of a local pipeline (the world's autoencoder):
    diffusers resolves such components only from modules already imported. Returns their names.
    """
    index = Path(source) / "model_index.json"
    modules = []
    if index.is_file():
        for entry in _read_json(index).values():
            if isinstance(entry, list) and entry and isinstance(entry[0], str) and entry[0].startswith("selma."):
                modules.append(importlib.import_module(entry[0]).__name__)
    return modules


def load_vae(source: str) -> Any:
    """The pipeline's autoencoder: ``AutoencoderKL``, or the selma class its ``model_index.json`` names."""
    component = _component(source, "vae")
    if component is not None and component[0].startswith("selma."):
        return getattr(importlib.import_module(component[0]), component[1]).from_pretrained(source, subfolder="vae")
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(source, subfolder="vae")
