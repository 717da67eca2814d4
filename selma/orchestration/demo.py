"""``selma-bench demo``: the SELMA study in the shapes world, on a CPU, with exact scores.

World prompt writer (3 in-context examples, ROUGE-L filter) → the world's base model renders each
skill's prompts → one LoRA expert per skill → multi-skill LoRA → merged experts (the paper's merge
and TIES) → ground-truth LoRA (exactly rendered scenes) → weak-to-strong LoRA (the smaller world
model's images) → every variant renders the ``shapes`` suite → the exact evaluator answers its
DSG-style questions → per-skill tables with 95 % bootstrap intervals and a figure in
``<out>/reports/``. It is a study (``selma.orchestration.study``), so every unit is cached by hash and a re-run
does nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from selma.orchestration.demo_config import DemoConfig
from selma.orchestration.study import GtSource, StudyConfig, run_study

RECIPES: dict[str, Callable[[DemoConfig], dict[str, Any]]] = {
    # DreamSync's verifier: keep a training image only when every question of its prompt passes
    "verified": lambda config: {"filter": {"metric": "shapes-dsg", "threshold": 100.0}},
    # the training images rendered at a higher guidance than the evaluation's
    "g8": lambda config: {"guidance_scale": config.guidance},
}


def demo_study(config: DemoConfig) -> StudyConfig:
    """The demo as a study: every variant of the recipe on the world's base model."""
    return StudyConfig(
        name="demo",
        description="SELMA in the shapes world: exact DSG-style scores per skill",
        base_model=config.model,
        skills=list(config.skills),
        prompts_per_skill=config.prompts_per_skill,
        datagen={"backend": "world", "seed": config.seed},
        train={
            "rank": config.rank,
            "alpha": config.rank,
            "learning_rate": config.learning_rate,
            "train_batch_size": config.batch_size,
            "gradient_accumulation_steps": 1,
            "max_train_steps": config.train_steps,
            "checkpointing_steps": max(1, config.train_steps // 2),
            **({} if config.selection else {"checkpoints_total_limit": 1}),  # selection compares every checkpoint
            "random_flip": False,  # a flip turns "left of" into "right of"
            "cache": True,
            "seed": config.seed,
        },
        # ground truth in the layouts the world's models were trained on: anywhere-placed spatial scenes are
        # new data to the base, and a LoRA on them lowered spatial by 5-9 DSG (reports/world-position/findings.md)
        gt={"world": GtSource(world=config.prompts_per_skill * config.train_images_per_prompt, spatial_jitter=0)},
        weak_models=[config.weak_model],
        data_recipes={name: RECIPES[name](config) for name in config.recipes},
        selection={"validation_suite": "shapes-val", "variants": ["multi"]} if config.selection else None,
        variants=[
            "base",
            *(f"expert:{s}" for s in config.skills),
            "multi",
            *(f"merged:{m}" for m in config.merges),
            "gt:world",
            f"w2s:{config.weak_model}",
            *(f"multi+{name}" for name in config.recipes),
            *config.extra_variants,
        ],
        suites=[config.suite],
        metrics=["dsg"],
        checkpoints={"dsg": {"vqa": "shapes-exact"}},
        images_per_prompt=config.images_per_prompt,
        train_images_per_prompt=config.train_images_per_prompt,
        batch_size=64,
        seed=config.seed,
    )


def run_demo(out: Path, config: DemoConfig | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Run (or finish) the demo study into ``out`` and write its per-skill report to ``out/reports``."""
    from selma.harness.suites.data import DataLocator
    from selma.world.report import write_world_report

    config = config or DemoConfig()
    study = demo_study(config)
    result = run_study(study, out, DataLocator(), progress=progress)
    record = json.loads((out / "study.json").read_text(encoding="utf-8"))
    written = write_world_report(
        result["rows"],
        out / "reports",
        title="SELMA in the shapes world",
        config=asdict(config),
        timings=record["timings_s"],
        provenance=record["provenance"],
    )
    return {
        "rows": result["rows"],
        "reports": {k: str(v) for k, v in written.items()},
        "timings_s": record["timings_s"],
    }
