"""The model registry and resolution of a model reference to something ``from_pretrained`` loads.

A reference is a registry name (``sd-v2``, ``tiny-sd1``, ``shapes-base``, …), a local diffusers
directory, or any diffusers pipeline on the hub (``prompthero/openjourney``), optionally pinned to a
revision (``org/name@REV`` or ``sd-v2@REV``; ``--revision`` on the command line). Real models resolve to
their hub id (diffusers' cache, or ``HF_HUB_OFFLINE`` with a filled cache); tiny ones are built once
into the selma-bench cache and then loaded through the same path; the shapes world's trained models
ship inside the package.
"""

from __future__ import annotations

import importlib
import json
import re
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
    revision: str | None = None
    """Packaged models: a hash of the weights, so caches follow retraining. Hub models given a revision
    (and hub ids outside the registry): the commit it resolved to, passed to every ``from_pretrained``."""

    @property
    def load_kwargs(self) -> dict[str, Any]:
        """What every ``from_pretrained`` of this model's components takes besides the source."""
        return {"revision": self.revision} if self.revision and not Path(self.source).is_dir() else {}


model_files: Registry[Path] = Registry("models file")
"""Further models files, each registered by a plugin (the shapes world's ``selma/world/models.yaml``)."""


@cache
def model_registry() -> Registry[ModelSpec]:
    """The model registry, read from ``models.yaml`` and the plugins' :data:`model_files`."""
    registry: Registry[ModelSpec] = Registry("model")
    for path in [MODELS_FILE, *(model_files.get(name) for name in model_files.names())]:
        for name, entry in yaml.safe_load(path.read_text(encoding="utf-8")).items():
            registry.add(name, ModelSpec(name=name, **entry))
    return registry


def tiny_model_dir(name: str) -> Path:
    """Where the tiny model ``name`` is built: ``<cache>/models/<name>-w<TINY_WEIGHTS>``, so that a build of
    other weights (an older selma-bench) is never reused.
    """
    from selma.models.tiny import TINY_WEIGHTS

    return default_cache_dir() / "models" / f"{name}-w{TINY_WEIGHTS}"


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_SPEC_FILES = ("model_index.json", "unet/config.json", "vae/config.json", "scheduler/scheduler_config.json")


def with_revision(ref: str, revision: str | None) -> str:
    """``ref`` pinned to the hub ``revision`` (a branch, tag or commit): ``ref@revision`` (``--revision``)."""
    if not revision:
        return ref
    if Path(ref).is_dir():
        raise SelmaError(f"--revision {revision}: {ref!r} is a local directory, not a hub model")
    if "@" in ref:
        raise SelmaError(f"--revision {revision}: {ref!r} already names a revision")
    return f"{ref}@{revision}"


def resolve_model(ref: str) -> ResolvedModel:
    """Resolve a registry name, a local diffusers directory or a hub pipeline id (each ``@REV`` for a hub
    revision); tiny models are built on first use.
    """
    path = Path(ref)
    if path.is_dir():
        return ResolvedModel(spec_from_directory(path), str(path))
    name, _, revision = ref.partition("@")
    registry = model_registry()
    if name not in registry:
        if _HUB_ID.fullmatch(name):
            snapshot, commit = _hub_configs(name, revision or None)
            return ResolvedModel(replace(spec_from_directory(snapshot), name=name), name, commit)
        raise SelmaError(
            f"unknown model {ref!r}: not a local diffusers directory, a hub id (org/name) or one of: "
            f"{', '.join(registry.names())}"
        )
    spec = registry.get(name)
    if revision and spec.hub_id is None:
        raise SelmaError(f"model {name!r} ships with selma-bench: it has no hub revision (@{revision})")
    if spec.packaged:
        return _packaged(spec)
    if spec.tiny:
        from selma.models.tiny import save_tiny_pipeline

        target = tiny_model_dir(name)
        if not (target / "model_index.json").is_file():
            save_tiny_pipeline(spec.family, spec.prediction_type, target)
        return ResolvedModel(spec, str(target))
    assert spec.hub_id is not None
    if revision:
        return ResolvedModel(spec, spec.hub_id, _hub_configs(spec.hub_id, revision)[1])
    return ResolvedModel(spec, spec.hub_id)


def _hub_configs(repo: str, revision: str | None) -> tuple[Path, str]:
    """The configurations of hub pipeline ``repo`` at ``revision`` (default: its main branch), fetched or read
    from the Hugging Face cache: the snapshot folder holding them and the commit the revision resolved to.
    """
    from huggingface_hub import hf_hub_download

    try:
        paths = [Path(hf_hub_download(repo, name, revision=revision)) for name in _SPEC_FILES]
    except Exception as exc:  # not found, offline, gated: the hub client raises several types
        from selma.weights import hub_cache

        at = f" at revision {revision!r}" if revision else ""
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SelmaError(
            f"model {repo!r}{at}: no diffusers pipeline configuration found on the hub or in the Hugging Face "
            f"cache {hub_cache()} ({reason}); give a registry name (`selma-bench models`) or a local directory"
        ) from None
    snapshot = paths[0].parent
    return snapshot, snapshot.name  # the cache's snapshot folders are named by commit


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
    if model.revision:  # packaged: the weights' hash; hub: the commit
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
    kwargs: dict[str, Any] = dict(model.load_kwargs)
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
    from selma.finite import check_finite_modules

    check_finite_modules(pipe.components, model.source)
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


def load_component(model: ResolvedModel, name: str, default: Any) -> Any:
    """Component ``name`` of the pipeline (``unet``, ``vae``, ``text_encoder``, ...): the selma class its
    ``model_index.json`` names (the world's coordinate UNet, bidirectional text encoder or pixel
    autoencoder), else ``default`` (``UNet2DConditionModel``, ``AutoencoderKL``, ``CLIPTextModel``, ...),
    each with ``from_pretrained``.
    """
    from selma.finite import check_finite_modules

    component = _component(model.source, name)
    if component is not None and component[0].startswith("selma."):
        cls = getattr(importlib.import_module(component[0]), component[1])
        loaded = cls.from_pretrained(model.source, subfolder=name)
    else:
        loaded = default.from_pretrained(model.source, subfolder=name, **model.load_kwargs)
    check_finite_modules({name: loaded}, model.source)
    return loaded


def load_vae(model: ResolvedModel) -> Any:
    """The pipeline's autoencoder: ``AutoencoderKL``, or the selma class its ``model_index.json`` names."""
    from diffusers import AutoencoderKL

    return load_component(model, "vae", AutoencoderKL)
