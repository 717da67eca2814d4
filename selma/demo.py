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
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selma.datagen.backends import OfflineBackend
from selma.datagen.run import generate_prompts
from selma.datagen.skills import load_skills
from selma.demo_data import render_shapes_dataset
from selma.generate import GenerationSettings, generate
from selma.merge import merge_experts
from selma.models import resolve_model
from selma.prompts import PromptItem
from selma.results.store import make_provenance, now
from selma.train import TrainConfig, train_lora
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


def run_demo(out: Path, config: DemoConfig = DemoConfig(), *, progress: bool = True) -> dict[str, Any]:
    """Run every stage into ``out``; returns (and writes) the summary."""
    started, clock = now(), time.perf_counter()
    timings: dict[str, float] = {}

    def tick(stage: str, since: float) -> float:
        timings[stage] = round(time.perf_counter() - since, 2)
        return time.perf_counter()

    workdir = out / "work"
    model = resolve_model(config.model)
    skills = load_skills()
    chosen = [skills[name] for name in config.skills]
    prompt_file = out / "prompts.jsonl"
    generate_prompts(
        chosen,
        config.prompts_per_skill + config.eval_prompts,
        OfflineBackend(),
        prompt_file,
        seed=config.seed,
        progress=progress,
    )
    by_skill: dict[str, list[PromptItem]] = defaultdict(list)
    for row in (json.loads(line) for line in prompt_file.read_text(encoding="utf-8").splitlines() if line.strip()):
        by_skill[row["skill"]].append(PromptItem(row["id"], row["text"]))
    train_prompts = {s: items[: config.prompts_per_skill] for s, items in by_skill.items()}
    eval_prompts = [item for items in by_skill.values() for item in items[config.prompts_per_skill :]]
    clock = tick("datagen", clock)

    def render(ref: str, variant: str, prompts: list[PromptItem], folder: Path) -> Path:
        chosen = resolve_variant(ref, variant, workdir=workdir)
        settings = GenerationSettings.for_variant(chosen, seed=config.seed)
        generate(prompts, settings, folder, chosen.load, progress=progress)
        return folder

    images = {s: render(config.model, "base", items, out / "images" / s) for s, items in train_prompts.items()}
    weak = {s: render(config.weak_model, "base", items, out / "images-weak" / s) for s, items in train_prompts.items()}
    clock = tick("generate", clock)

    train = TrainConfig(
        rank=config.rank,
        alpha=config.rank,
        train_batch_size=config.batch_size,
        gradient_accumulation_steps=1,
        max_train_steps=config.train_steps,
        checkpointing_steps=max(1, config.train_steps // 2),
        checkpoints_total_limit=1,
        seed=42,
        cache=True,
    )

    def fit(variant: str, data: list[Path]) -> None:
        target = variant_dir(workdir, model, variant)
        assert target is not None
        train_lora(model, [str(d) for d in data], target, train, resume="latest", progress=progress)

    for skill, folder in images.items():
        fit(f"expert:{skill}", [folder])
    fit("multi", list(images.values()))
    fit("gt:shapes", [render_shapes_dataset(out / "gt-shapes", 4 * config.prompts_per_skill, seed=config.seed)])
    fit(f"w2s:{config.weak_model}", list(weak.values()))
    clock = tick("train", clock)

    experts = {skill: variant_dir(workdir, model, f"expert:{skill}") for skill in images}
    for method in ("paper", "ties"):
        target = variant_dir(workdir, model, f"merged:{method}")
        assert target is not None
        merge_experts(model, {k: v for k, v in experts.items() if v is not None}, target, method=method)
    clock = tick("merge", clock)

    variants = [
        "base",
        *(f"expert:{s}" for s in images),
        "multi",
        "merged:paper",
        "merged:ties",
        "gt:shapes",
        f"w2s:{config.weak_model}",
    ]
    eval_dirs = {v: render(config.model, v, eval_prompts, out / "eval" / v.replace(":", "-")) for v in variants}
    tick("evaluate-generate", clock)

    summary = {
        "model": config.model,
        "variants": {
            v: {"lora": str(variant_dir(workdir, model, v) or ""), "images": str(eval_dirs[v])} for v in variants
        },
        "n_train_prompts": {s: len(p) for s, p in train_prompts.items()},
        "n_eval_prompts": len(eval_prompts),
        "timings_s": timings,
        "note": "tiny random-weight models: the machinery runs end to end; scores are not meaningful here",
        "provenance": make_provenance(
            {"command": "demo", **config.__dict__}, {}, seed=config.seed, started_at=started
        ).model_dump(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
