"""The shapes world as a suite (prompts and questions) and its rendered ground truth."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

from selma.harness.suites.loaders import Loaded
from selma.harness.suites.spec import Prompt, Question, SuiteSpec
from selma.stage import ensure_output
from selma.world.scenes import SKILLS, Scene, render, sample_scene


def world_scenes(per_skill: int, seed: int, *, held_out: bool = False) -> list[tuple[str, Scene]]:
    """(prompt id, scene) for ``per_skill`` prompts of each skill, deterministic in ``seed``."""
    scenes = []
    for skill in SKILLS:
        rng = random.Random(f"{seed}:{skill}")
        scenes += [(f"shapes_{skill}_{i:04d}", sample_scene(skill, rng, held_out=held_out)) for i in range(per_skill)]
    return scenes


def world_prompts(per_skill: int, seed: int) -> tuple[tuple[Prompt, ...], tuple[Question, ...]]:
    """Suite prompts (category = skill) and their DSG-style questions."""
    prompts, questions = [], []
    for prompt_id, scene in world_scenes(per_skill, seed):
        prompts.append(Prompt(prompt_id, scene.caption(), scene.skill))
        questions += scene_questions(prompt_id, scene)
    return tuple(prompts), tuple(questions)


def scene_questions(prompt_id: str, scene: Scene) -> list[Question]:
    """The DSG-style questions of ``scene`` as the suite's :class:`Question` records of ``prompt_id``."""
    return [
        Question(prompt_id, qid, text, parents=parents, element_type=_type(text))
        for qid, text, parents in scene.questions()
    ]


def _type(text: str) -> str:
    if text.startswith("Is there"):
        return "entity"
    if text.startswith("Are there exactly"):
        return "count"
    return "relation" if text.count(" the ") == 2 else "attribute"


def render_ground_truth(out: Path, per_skill: int, seed: int) -> Path:
    """Images that satisfy each suite prompt exactly, named ``<prompt id>.png``."""
    out.mkdir(parents=True, exist_ok=True)
    for prompt_id, scene in world_scenes(per_skill, seed):
        render(scene, random.Random(f"render:{prompt_id}")).save(out / f"{prompt_id}.png")
    return out


def render_training_set(
    out: Path, skills: list[str], per_skill: int, seed: int, *, spatial_jitter: int | None = None
) -> Path:
    """Ground-truth training data: ``per_skill`` exact scenes of each world skill (``world_count`` or
    ``count``), held-out pairs excluded, as an imagefolder with ``metadata.jsonl``. ``spatial_jitter``:
    spatial scenes in the canonical layouts the shipped world models were trained on (``None``: anywhere
    the relation holds).
    """
    import json

    from selma.errors import SelmaError

    names = [skill.removeprefix("world_") for skill in skills]
    unknown = [s for s in names if s not in SKILLS]
    if unknown:
        raise SelmaError(f"not skills of the shapes world: {', '.join(unknown)} (known: {', '.join(SKILLS)})")
    rows = []
    for skill in names:
        rng = random.Random(f"gt:{seed}:{skill}")
        for i in range(per_skill):
            scene = sample_scene(skill, rng, held_out=True)
            rows.append((f"{skill}_{i:05d}.png", scene, random.Random(rng.random())))

    def build(tmp: Path) -> None:
        for name, scene, rng in rows:
            render(scene, rng, spatial_jitter=spatial_jitter).save(tmp / name)
        lines = [json.dumps({"file_name": n, "text": s.caption(), "skill": s.skill}) for n, s, _ in rows]
        (tmp / "metadata.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    key = {"skills": names, "per_skill": per_skill, "seed": seed, "spatial_jitter": spatial_jitter}
    return ensure_output(out, "world-gt", key, build)


def load_shapes_world(spec: SuiteSpec, files: Mapping[str, Path]) -> Loaded:
    """The ``shapes_world`` suite format: ``per_skill`` prompts of each skill from ``seed``, with questions."""
    return Loaded(*world_prompts(int(spec.options["per_skill"]), int(spec.options["seed"])))
