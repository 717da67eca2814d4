from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from selma.orchestration.demo import DemoConfig, run_demo

SMALL = DemoConfig(
    skills=("world_count", "world_spatial"),
    prompts_per_skill=4,
    train_images_per_prompt=2,
    train_steps=3,
    batch_size=4,
    merges=("paper",),
    suite="shapes-mini",
    recipes=("verified", "g8"),  # the guidance recipe and the checkpoint selection are options: tested here
    selection=True,
)


def _table(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_demo_runs_the_study_in_the_world_deterministically(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "a", SMALL, progress=False)
    reports = {name: Path(path) for name, path in result["reports"].items()}
    assert all(path.is_file() and path.stat().st_size > 0 for path in reports.values())
    with Image.open(reports["forest.png"]) as forest:  # one panel per skill and "all", a row per variant
        assert forest.width > 5 * 200 and forest.height > 8 * 30
    rows = _table(reports["per_skill.csv"])
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    assert variants == [
        "base",
        "expert:world_count",
        "expert:world_spatial",
        "multi",
        "merged:paper",
        "gt:world",
        "w2s:shapes-weak",
        "multi+verified",
        "multi+g8",
    ]
    assert {r["skill"] for r in rows} == {"count", "binding", "spatial", "count_binding", "all"}
    for row in rows:
        assert float(row["dsg_low"]) <= float(row["dsg"]) <= float(row["dsg_high"])
        assert 0.0 <= float(row["caption"]) <= float(row["dsg"]) + 1e-6  # all questions pass => DSG 100
        assert int(row["n_prompts"]) == (40 if row["skill"] == "all" else 10)
    assert all(r["delta"] == "" for r in rows if r["variant"] == "base")
    assert all(r["delta"] != "" for r in rows if r["variant"] != "base")
    markdown = reports["per_skill.md"].read_text()
    assert "| merged:paper |" in markdown and "paired bootstrap" in markdown
    claims = _table(reports["claims.csv"])
    assert {c["verdict"] for c in claims} <= {"holds", "reversed", "not shown"}
    assert any(c["variant"] == "gt:world" and c["reference"] == "base" for c in claims)
    assert any(c["variant"] == "multi+verified" and c["reference"] == "multi" for c in claims)
    assert "| the trainer teaches: ground truth (gt:world) improves the base model |" in markdown
    with Image.open(reports["grid.png"]) as grid:  # 9 variants x 8 prompts (2 per skill)
        assert grid.height > 9 * 96 and grid.width > 8 * 96
    study = json.loads((tmp_path / "a" / "study.json").read_text())
    (selection,) = study["selection"]["summary"]
    assert selection["variant"] == "multi" and selection["steps"] == [1, 2, 3]  # checkpoints every 3 // 2 steps
    assert study["selection"]["validation_suite"] == "shapes-val"
    kept = tmp_path / "a" / "filtered" / "verified" / "shapes-base" / "world_count" / ".selma-stage.json"
    verified = json.loads(kept.read_text())
    assert 0 < verified["record"]["n_kept"] <= verified["record"]["n_images"] == 8

    work = tmp_path / "a" / "work" / "shapes-base"
    w2s = json.loads((work / "w2s-shapes-weak" / "training.json").read_text())
    assert all("images-shapes-weak" in d for d in w2s["data"])  # the weak model's images
    gt = json.loads((work / "gt-world" / "training.json").read_text())
    assert gt["n_examples"] == 2 * 4 * 2 and gt["train_config"]["random_flip"] is False

    built = sorted((tmp_path / "a").rglob("*.png")) + sorted((tmp_path / "a").rglob("*.safetensors"))
    images = [p for p in built if "reports" not in p.parts]  # the report itself is rewritten from the cache
    stamps = {p: p.stat().st_mtime_ns for p in images}
    run_demo(tmp_path / "a", SMALL, progress=False)  # a re-run builds nothing
    assert {p: p.stat().st_mtime_ns for p in images} == stamps

    # the same seed rebuilds the same bytes: one expert's LoRA and its evaluation run, deleted and built again
    expert = work / "experts" / "world_count" / "pytorch_lora_weights.safetensors"
    lora, table = expert.read_bytes(), reports["per_skill.csv"].read_bytes()
    (evaluated,) = (tmp_path / "a" / "runs").glob("shapes-mini-shapes-base-expert-world_count-*")
    shutil.rmtree(expert.parent)
    shutil.rmtree(evaluated)
    run_demo(tmp_path / "a", SMALL, progress=False)
    assert expert.read_bytes() == lora and (evaluated / "images").is_dir()
    assert reports["per_skill.csv"].read_bytes() == table


def test_every_variant_gets_a_colour_of_its_own() -> None:
    from selma.world.report import _colors

    for n in (2, 12, 20, 27):
        variants = [f"v{i}" for i in range(n)]
        colors = _colors(variants)
        assert len({tuple(round(c, 3) for c in colors[v]) for v in variants}) == n
