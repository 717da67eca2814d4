"""Every registry of selma-bench, reached one way: ``registry(kind)``.

Each is a lazy ``"module:attr"`` reference (a registry, or a function that builds one on first use), so
this index imports nothing until a registry is asked for. Plugins (:mod:`selma.plugins`) add entries to
these registries; they never add registries.
"""

from __future__ import annotations

import importlib
from typing import Any

from selma.errors import SelmaError
from selma.registry import Registry

REGISTRIES: dict[str, str] = {
    "model": "selma.models:model_registry",
    "models file": "selma.models:model_files",
    "suite": "selma.harness.suites:suite_registry",
    "suites file": "selma.harness.suites:suite_files",
    "suite format": "selma.harness.suites.loaders:loaders",
    "metric": "selma.harness.metrics:all_metrics",
    "VQA model": "selma.harness.metrics.vqa:vqa_models",
    "answer format": "selma.harness.answers:answer_formats",
    "answer matcher": "selma.harness.scoring.matchers:matchers",
    "scoring convention": "selma.harness.scoring.conventions:conventions",
    "LLM backend": "selma.recipe.datagen.backends:backends",
    "skill file": "selma.recipe.datagen.skills:skill_files",
}


def registry(kind: str) -> Registry[Any]:
    """The registry of ``kind`` (one of :data:`REGISTRIES`); an unknown kind is an error listing them."""
    if kind not in REGISTRIES:
        raise SelmaError(f"unknown registry {kind!r}; choose one of: {', '.join(REGISTRIES)}")
    module, _, attr = REGISTRIES[kind].partition(":")
    found = getattr(importlib.import_module(module), attr)
    return found if isinstance(found, Registry) else found()
