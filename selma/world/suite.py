"""The shapes world as a suite (prompts and questions) and its rendered ground truth."""

from __future__ import annotations

import random
from pathlib import Path

from selma.suites.spec import Prompt, Question
from selma.world.scenes import SKILLS, Spec, render, sample_spec


def world_specs(per_skill: int, seed: int, *, held_out: bool = False) -> list[tuple[str, Spec]]:
    """(prompt id, spec) for ``per_skill`` prompts of each skill, deterministic in ``seed``."""
    specs = []
    for skill in SKILLS:
        rng = random.Random(f"{seed}:{skill}")
        specs += [(f"shapes_{skill}_{i:04d}", sample_spec(skill, rng, held_out=held_out)) for i in range(per_skill)]
    return specs


def world_prompts(per_skill: int, seed: int) -> tuple[tuple[Prompt, ...], tuple[Question, ...]]:
    """Suite prompts (category = skill) and their DSG-style questions."""
    prompts, questions = [], []
    for prompt_id, spec in world_specs(per_skill, seed):
        prompts.append(Prompt(prompt_id, spec.caption(), spec.skill))
        questions += [
            Question(prompt_id, qid, text, parents=parents, element_type=_type(text))
            for qid, text, parents in spec.questions()
        ]
    return tuple(prompts), tuple(questions)


def _type(text: str) -> str:
    if text.startswith("Is there"):
        return "entity"
    if text.startswith("Are there exactly"):
        return "count"
    return "relation" if text.count(" the ") == 2 else "attribute"


def render_ground_truth(out: Path, per_skill: int, seed: int) -> Path:
    """Images that satisfy each suite prompt exactly, named ``<prompt id>.png``."""
    out.mkdir(parents=True, exist_ok=True)
    for prompt_id, spec in world_specs(per_skill, seed):
        render(spec, random.Random(f"render:{prompt_id}")).save(out / f"{prompt_id}.png")
    return out


def render_training_set(out: Path, skills: list[str], per_skill: int, seed: int) -> Path:
    """Ground-truth training data: ``per_skill`` exact scenes of each world skill (``world_count`` or
    ``count``), held-out pairs excluded, as an imagefolder with ``metadata.jsonl``.
    """
    import json

    from selma.errors import SelmaError

    names = [skill.removeprefix("world_") for skill in skills]
    unknown = [s for s in names if s not in SKILLS]
    if unknown:
        raise SelmaError(f"not skills of the shapes world: {', '.join(unknown)} (known: {', '.join(SKILLS)})")
    metadata = out / "metadata.jsonl"
    rows = []
    for skill in names:
        rng = random.Random(f"gt:{seed}:{skill}")
        for i in range(per_skill):
            spec = sample_spec(skill, rng, held_out=True)
            rows.append((f"{skill}_{i:05d}.png", spec, random.Random(rng.random())))
    if metadata.is_file() and sum(1 for _ in metadata.open(encoding="utf-8")) == len(rows):
        return out
    out.mkdir(parents=True, exist_ok=True)
    for name, spec, rng in rows:
        render(spec, rng).save(out / name)
    lines = [json.dumps({"file_name": name, "text": spec.caption(), "skill": spec.skill}) for name, spec, _ in rows]
    tmp = metadata.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(metadata)
    return out
