from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from selma.harness.score import score_folder
from selma.harness.suites import DataLocator, load_suite
from selma.world.evaluator import ShapesAnswerer, answer, detect
from selma.world.scenes import HELD_OUT, SKILLS, render, sample_scene
from selma.world.suite import render_ground_truth, world_scenes


@pytest.fixture
def offline() -> DataLocator:
    return DataLocator.from_env(None, offline=True)


def test_suite_is_generated_with_dependent_questions(offline: DataLocator) -> None:
    suite = load_suite("shapes", offline)
    assert len(suite.prompts) == 200 and {p.category for p in suite.prompts} == set(SKILLS)
    by_id = {(q.prompt_id, q.id): q for q in suite.questions}
    spatial = [q for q in suite.questions if q.prompt_id == "shapes_spatial_0000"]
    assert [q.element_type for q in spatial] == ["entity", "attribute", "entity", "attribute", "relation"]
    assert spatial[-1].parents == ("2", "4") and by_id[("shapes_spatial_0000", "2")].parents == ("1",)
    assert load_suite("shapes", offline).prompts == suite.prompts  # deterministic


def test_rendered_ground_truth_scores_100_and_blank_scores_0(offline: DataLocator, tmp_path: Path) -> None:
    truth = render_ground_truth(tmp_path / "truth", 50, 1234)
    summary, _, _ = score_folder(
        "shapes", truth, "dsg", offline, checkpoints={"vqa": "shapes-exact"}, out=tmp_path / "truth-run"
    )
    assert summary.score == 100.0 and summary.n_prompts == 200
    assert summary.by_category == {skill: 100.0 for skill in SKILLS}
    blank = tmp_path / "blank"
    blank.mkdir()
    for prompt_id, _ in world_scenes(50, 1234):
        Image.new("RGB", (32, 32)).save(blank / f"{prompt_id}.png")
    summary, _, _ = score_folder(
        "shapes", blank, "dsg", offline, checkpoints={"vqa": "shapes-exact"}, out=tmp_path / "blank-run"
    )
    assert summary.score == 0.0


def test_evaluator_on_many_renders() -> None:
    failures = 0
    for prompt_id, spec in world_scenes(100, 7):
        objects = detect(render(spec, random.Random(prompt_id)))
        failures += sum(answer(objects, text) != "yes" for _, text, _ in spec.questions())
    assert failures == 0


def test_another_caption_mostly_fails() -> None:
    """Chance level: an image scored against another prompt of the same skill rarely satisfies it."""
    specs = world_scenes(50, 3)
    satisfied = 0
    for (prompt_id, spec), (_, other) in zip(specs, specs[1:] + specs[:1], strict=True):
        objects = detect(render(spec, random.Random(prompt_id)))
        satisfied += all(answer(objects, text) == "yes" for _, text, _ in other.questions())
    assert satisfied / len(specs) < 0.1


def test_held_out_pairs_never_appear_in_training_specs() -> None:
    rng = random.Random(0)
    for _ in range(500):
        spec = sample_scene(rng.choice(SKILLS), rng)
        assert not any((thing.color, thing.shape) in HELD_OUT for thing, _ in spec.items)


def test_unknown_questions_are_refused() -> None:
    with pytest.raises(ValueError, match="not a question of the shapes world"):
        answer([], "Is the cat happy?")
    answerer = ShapesAnswerer()
    image = Image.new("RGB", (32, 32))
    assert answerer.answer([image, image], ["Is there a circle?", "Is there a square?"], ["a", "a"]) == ["no", "no"]
    assert answerer.calls == 1  # one detection per distinct image


def test_world_prompt_writer_through_datagen(tmp_path: Path) -> None:
    import json

    from selma.recipe.datagen.loop import RougeFilter, generate_prompts
    from selma.world.plugin import world_skills
    from selma.world.prompt_writer import WorldWriter

    skills = world_skills()
    assert list(skills) == [f"world_{s}" for s in SKILLS]
    counts = generate_prompts(list(skills.values()), 20, WorldWriter(), tmp_path / "p.jsonl", seed=0, progress=False)
    assert counts == {f"world_{s}": 20 for s in SKILLS}
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    rouge = RougeFilter()
    for skill in skills.values():
        texts = [r["text"] for r in rows if r["skill"] == skill.name]
        assert all(WorldWriter.skill_of(t) == skill.name.removeprefix("world_") for t in texts)
        assert not any(f"{c} {s}" in t for t in texts for c, s in HELD_OUT)  # held-out pairs stay out
        pool = list(skill.seeds)
        for text in texts:
            assert rouge.accepts(text, pool)
            pool.append(text)
