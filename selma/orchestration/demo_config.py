"""The sizes of ``selma-bench demo`` (light to import: the CLI reads its defaults for ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass

WORLD_SKILLS = ("world_count", "world_binding", "world_spatial", "world_count_binding")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults are the full run (README: its measured time on a 2-core CPU)."""

    model: str = "shapes-base"
    weak_model: str = "shapes-weak"
    skills: tuple[str, ...] = WORLD_SKILLS
    prompts_per_skill: int = 40  # the world's grammar gives about 44 count prompts that pass ROUGE-L 0.8
    train_images_per_prompt: int = 3
    train_steps: int = 150
    batch_size: int = 16
    rank: int = 16
    learning_rate: float = 1e-3
    images_per_prompt: int = 1  # DSG scores the first image of each prompt
    merges: tuple[str, ...] = ("paper", "ties")
    suite: str = "shapes"  # 50 prompts per skill (the probe: an 8-point gain is significant); shapes-large: 200
    seed: int = 0
    extra_variants: tuple[str, ...] = ()
    recipes: tuple[str, ...] = ("verified",)  # multi-skill LoRAs on verifier-filtered (or, "g8", CFG-8) images
    guidance: float = 8.0  # the training images' guidance of the "g8" recipe (evaluation keeps the model's 4.0)
    selection: bool = False  # also pick multi's checkpoint on held-out prompts (shapes-val) vs on the test suite
