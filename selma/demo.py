"""``selma-bench demo``: the whole SELMA recipe on a tiny random-weight model, on a CPU, in minutes.

datagen (offline backend) → images from the base model per skill → one LoRA expert per skill →
multi-skill LoRA → merged experts (paper merge and ties) → ground-truth-data LoRA (rendered
shapes) → weak-to-strong LoRA (trained on another model's images) → images of every variant for
held-out prompts, and ``summary.json``. Every stage is skipped when its output already exists.
Random weights make the images noise: this checks the machinery, not the paper's claims.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selma.generate import GenerationSettings, generate
from selma.results.store import make_provenance, now
from selma.study import GtSource, StudyConfig, build_variants
from selma.variants import resolve_variant, variant_dir


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (small enough for a CPU in a few minutes)."""

    model: str = "tiny-sd1"
    weak_model: str = "tiny-sd2"
    skills: tuple[str, ...] = ("coco", "countbench", "whoops")
    prompts_per_skill: int = 12
    eval_prompts: int = 6
    train_steps: int = 20
    batch_size: int = 4
    rank: int = 4
    seed: int = 0


def demo_study(config: DemoConfig) -> StudyConfig:
    """The demo as a study: every variant of the recipe on a tiny model."""
    return StudyConfig(
        name="demo",
        base_model=config.model,
        skills=list(config.skills),
        prompts_per_skill=config.prompts_per_skill,
        train={
            "rank": config.rank,
            "alpha": config.rank,
            "train_batch_size": config.batch_size,
            "gradient_accumulation_steps": 1,
            "max_train_steps": config.train_steps,
            "checkpointing_steps": max(1, config.train_steps // 2),
            "checkpoints_total_limit": 1,
            "cache": True,
        },
        gt={"shapes": GtSource(shapes=4 * config.prompts_per_skill)},
        weak_models=[config.weak_model],
        variants=[
            "base",
            *(f"expert:{s}" for s in config.skills),
            "multi",
            "merged:paper",
            "merged:ties",
            "gt:shapes",
            f"w2s:{config.weak_model}",
        ],
        seed=config.seed,
    )


def run_demo(out: Path, config: DemoConfig = DemoConfig(), *, progress: bool = True) -> dict[str, Any]:
    """Run every stage into ``out``; returns (and writes) the summary."""
    started = now()
    study = demo_study(config)
    built = build_variants(study, out, extra_prompts=config.eval_prompts, progress=progress)
    clock = time.perf_counter()
    eval_dirs = {}
    for variant in study.variants:
        chosen = resolve_variant(config.model, variant, workdir=built["workdir"])
        folder = out / "eval" / variant.replace(":", "-")
        generate(
            built["held_out"],
            GenerationSettings.for_variant(chosen, seed=config.seed),
            folder,
            chosen.load,
            progress=progress,
        )
        eval_dirs[variant] = folder
    timings = {**built["timings"], "evaluate-generate": round(time.perf_counter() - clock, 2)}
    model = built["model"]
    summary = {
        "model": config.model,
        "variants": {
            v: {"lora": str(variant_dir(built["workdir"], model, v) or ""), "images": str(eval_dirs[v])}
            for v in study.variants
        },
        "n_train_prompts": {s: len(p) for s, p in built["train_prompts"].items()},
        "n_eval_prompts": len(built["held_out"]),
        "timings_s": timings,
        "note": "tiny random-weight models: the machinery runs end to end; scores are not meaningful here",
        "provenance": make_provenance(
            {"command": "demo", **config.__dict__}, {}, seed=config.seed, started_at=started
        ).model_dump(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
