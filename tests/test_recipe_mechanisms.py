"""The recipe's mechanisms as study options: verifier-filtered data, the training images' guidance,
checkpoint selection on held-out prompts, and the claims report with its image grid."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from PIL import Image

from selma.errors import DataInputError, SelmaError
from selma.harness.metrics import all_metrics
from selma.orchestration.study import StudyConfig, filtered_dir, image_dir, load_study, study_units, training_data
from selma.orchestration.study.selection import best_step, summarize
from selma.recipe.variants import parse_variant, variant_dir
from selma.recipe.verify import filter_images
from selma.reporting.claims import Claim, selma_claims, verdict
from selma.reporting.grid import image_grid
from selma.world.scenes import SKILLS, parse_caption, render, sample_scene


def test_parse_caption_inverts_every_phrasing_of_the_grammar() -> None:
    rng = random.Random(0)
    for skill in (*SKILLS, "object"):
        for _ in range(300):
            scene = sample_scene(skill, rng, held_out=False)
            parsed = parse_caption(scene.caption())
            assert parsed.skill == scene.skill and parsed.relation == scene.relation
            assert sorted(q[1] for q in parsed.questions()) == sorted(q[1] for q in scene.questions())
    with pytest.raises(ValueError, match="not a caption of the shapes world"):
        parse_caption("a photo of a dog")


def test_shapes_dsg_scores_rendered_scenes_100_and_wrong_images_less() -> None:
    scorer = all_metrics().get("shapes-dsg").build({}, device="cpu")
    assert scorer.info.kind == "image" and scorer.info.higher_is_better
    rng = random.Random(1)
    scenes = [sample_scene(skill, rng) for skill in SKILLS for _ in range(5)]
    images = [render(scene, rng) for scene in scenes]
    captions = [scene.caption() for scene in scenes]
    assert scorer.score(images, captions) == [100.0] * len(scenes)
    shuffled = scorer.score(images[1:] + images[:1], captions)
    assert sum(shuffled) / len(shuffled) < 60
    blank = scorer.score([Image.new("RGB", (32, 32))], ["two red squares"])
    assert blank == [0.0]  # nothing there: the entity fails and its dependents are zeroed


def _generated_folder(folder: Path, n: int = 8) -> list[str]:
    """A folder as `generate` writes it: half the images show their caption, half another scene."""
    rng = random.Random(2)
    (folder / "images").mkdir(parents=True)
    rows, captions = [], []
    for i in range(n):
        scene = sample_scene("binding", rng)
        shown = scene if i % 2 == 0 else sample_scene("count", rng)
        name = f"images/p{i}_00.png"
        render(shown, rng).save(folder / name)
        rows.append({"file_name": name, "text": scene.caption(), "prompt_id": f"p{i}"})
        captions.append(scene.caption())
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return captions


def test_filter_keeps_what_the_verifier_accepts_and_is_a_stage(tmp_path: Path) -> None:
    captions = _generated_folder(tmp_path / "gen")
    out = tmp_path / "kept"
    record = filter_images(tmp_path / "gen", out, "shapes-dsg", 100.0, progress=False)
    assert record["n_images"] == 8 and record["n_kept"] == 4
    kept = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["text"] for r in kept] == captions[0::2]
    assert all((out / r["file_name"]).is_file() for r in kept)
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert [s["kept"] for s in scores] == [True, False] * 4
    again = filter_images(tmp_path / "gen", out, "shapes-dsg", 100.0, progress=False)
    assert again == record  # done: nothing recomputed
    with pytest.raises(SelmaError, match=r"other settings \(threshold: 100.0 -> 50.0\)"):
        filter_images(tmp_path / "gen", out, "shapes-dsg", 50.0, progress=False)
    with pytest.raises(SelmaError, match="is not a per-image metric"):
        filter_images(tmp_path / "gen", tmp_path / "k2", "dsg", 1.0, progress=False)
    with pytest.raises(SelmaError, match="no image .* scores 101"):
        filter_images(tmp_path / "gen", tmp_path / "k3", "shapes-dsg", 101.0, progress=False)
    assert not (tmp_path / "k3" / "metadata.jsonl").exists()


WORLD = {
    "name": "w",
    "base_model": "shapes-base",
    "skills": ["world_count", "world_spatial"],
    "prompts_per_skill": 4,
    "datagen": {"backend": "world"},
    "train": {"max_train_steps": 4, "checkpointing_steps": 2},
    "weak_models": ["shapes-weak"],
    "data_recipes": {"verified": {"filter": {"metric": "shapes-dsg", "threshold": 100}}, "g8": {"guidance_scale": 8}},
    "variants": ["base", "multi", "multi+verified", "merged:paper+g8", "w2s:shapes-weak+verified"],
    "suites": ["shapes-mini"],
    "metrics": ["dsg"],
}


def test_recipe_variants_plan_their_own_renders_filters_and_loras(tmp_path: Path) -> None:
    study = StudyConfig(**WORLD)
    units = study_units(study)
    assert units.renders == [
        ("shapes-base", "world_count", None),
        ("shapes-base", "world_spatial", None),
        ("shapes-base", "world_count", 8.0),
        ("shapes-base", "world_spatial", 8.0),
        ("shapes-weak", "world_count", None),
        ("shapes-weak", "world_spatial", None),
    ]
    assert units.filters == [
        ("shapes-base", "world_count", "verified"),
        ("shapes-base", "world_spatial", "verified"),
        ("shapes-weak", "world_count", "verified"),
        ("shapes-weak", "world_spatial", "verified"),
    ]
    assert units.trainings == [
        "expert:world_count+g8",
        "expert:world_spatial+g8",
        "multi",
        "multi+verified",
        "w2s:shapes-weak+verified",
    ]
    assert units.merges == [("paper", "g8")]
    out = tmp_path
    assert training_data(study, out, "shapes-base", "world_count", "g8") == out / "images-g8" / "world_count"
    assert training_data(study, out, "shapes-base", "world_count", None) == image_dir(
        out, "shapes-base", "world_count", "shapes-base"
    )
    assert training_data(study, out, "shapes-weak", "world_count", "verified") == filtered_dir(
        out, "shapes-weak", "world_count", "verified"
    )
    from selma.models import resolve_model

    model = resolve_model("shapes-base")
    assert variant_dir(tmp_path, model, "merged:paper+g8") == tmp_path / "shapes-base" / "merged-paper+g8"
    assert parse_variant("expert:x+v").plain == "expert:x"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variants": ["multi+nosuch"]}, "needs data_recipes.nosuch"),
        ({"variants": ["gt:world+verified"], "gt": {"world": {"world": 4}}}, "only variants trained on generated"),
        ({"data_recipes": {"v": {"filter": {"metric": "dsg", "threshold": 1}}}}, "unknown per-image metric 'dsg'"),
        ({"data_recipes": {"v": {"guidance_scale": 0}}}, "greater than 0"),
        ({"selection": {"validation_suite": "shapes-val", "variants": ["merged:paper+g8"]}}, "not a trained variant"),
        (
            {
                "selection": {"validation_suite": "shapes-val", "variants": ["multi"]},
                "train": {"max_train_steps": 4, "checkpointing_steps": 2, "checkpoints_total_limit": 1},
            },
            "needs every checkpoint kept",
        ),
        ({"selection": {"validation_suite": "nosuch", "variants": ["multi"]}}, "unknown suite 'nosuch'"),
        ({"datagen": {"backend": "gpt9"}}, "unknown LLM backend 'gpt9'"),
    ],
)
def test_bad_recipe_and_selection_settings_fail_before_any_work(tmp_path: Path, changes: dict, message: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**WORLD, **changes}))
    with pytest.raises(DataInputError, match=message):
        load_study(path)


def test_selection_picks_on_validation_and_measures_the_optimism_of_picking_on_test() -> None:
    assert best_step({100: 50.0, 200: 52.0, 300: 52.0}, higher=True) == 200  # ties: the earliest
    assert best_step({100: 3.0, 200: 1.0}, higher=False) == 200
    rows = [
        {"variant": "multi", "step": step, "suite": suite, "score": score}
        for step, validation, test in ((100, 70.0, 60.0), (200, 75.0, 58.0), (300, 72.0, 66.0))
        for suite, score in (("val", validation), ("test", test))
    ]
    (summary,) = summarize(rows, "val", "test", higher=True)
    assert (summary["picked_on_validation"], summary["test_score_at_it"]) == (200, 58.0)
    assert (summary["picked_on_test"], summary["test_score_at_it_on_test"]) == (300, 66.0)
    assert summary["selection_bias"] == 8.0 and summary["test_score_final"] == 66.0


def test_claims_follow_the_variants_and_verdicts_follow_significance() -> None:
    variants = ["base", "expert:world_count", "multi", "merged:paper", "gt:world", "w2s:shapes-weak", "multi+v"]
    claims = selma_claims(variants, {"world_count": "count"})
    pairs = [(c.variant, c.reference, c.category) for c in claims]
    assert ("expert:world_count", "base", "count") in pairs and ("merged:paper", "multi", None) in pairs
    assert ("gt:world", "base", None) in pairs and ("multi", "gt:world", None) in pairs
    assert ("w2s:shapes-weak", "base", None) in pairs and ("multi+v", "multi", None) in pairs
    improves, matches = Claim("x", "a", "b"), Claim("y", "a", "b", "matches")
    assert verdict(improves, +2.0, 0.01) == "holds" and verdict(improves, -2.0, 0.01) == "reversed"
    assert verdict(improves, +2.0, 0.2) == "not shown"
    assert verdict(matches, -1.0, 0.3) == "holds" and verdict(matches, -3.0, 0.01) == "reversed"


def test_image_grid_has_a_row_per_variant_and_a_column_per_prompt(tmp_path: Path) -> None:
    rng = random.Random(3)
    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.png")
        render(sample_scene("count", rng), rng).save(files[-1])
    path = image_grid(
        {"base": files, "multi": [files[0], None, files[2]]}, ["a", "b", "c"], tmp_path / "g.png", cell=64
    )
    with Image.open(path) as grid:
        assert grid.width == 190 + 3 * 64 and grid.height > 2 * 64
        assert grid.getpixel((190 + 64 + 30, grid.height - 30)) == (255, 255, 255)  # the missing image is blank
