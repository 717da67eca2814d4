from __future__ import annotations

import json
from pathlib import Path

import pytest

from selma.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_runs_every_stage_and_reruns_as_a_no_op(tmp_path: Path) -> None:
    config = DemoConfig(skills=("coco", "countbench"), prompts_per_skill=4, eval_prompts=2, train_steps=2, batch_size=2)
    summary = run_demo(tmp_path / "demo", config, progress=False)
    variants = summary["variants"]
    assert list(variants) == [
        "base",
        "expert:coco",
        "expert:countbench",
        "multi",
        "merged:paper",
        "merged:ties",
        "gt:shapes",
        "w2s:tiny-sd2",
    ]
    for name, info in variants.items():
        rows = (Path(info["images"]) / "metadata.jsonl").read_text().splitlines()
        assert len(rows) == 4  # 2 held-out prompts x 2 skills
        if name != "base":
            assert (Path(info["lora"]) / "pytorch_lora_weights.safetensors").is_file()
    multi = json.loads((Path(variants["multi"]["lora"]) / "training.json").read_text())
    assert multi["n_examples"] == 8 and len(multi["data"]) == 2
    w2s = json.loads((Path(variants["w2s:tiny-sd2"]["lora"]) / "training.json").read_text())
    assert all("images-tiny-sd2" in d for d in w2s["data"])  # the weak model's images
    images = sorted((tmp_path / "demo").rglob("*.png")) + sorted((tmp_path / "demo").rglob("*.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in images}
    run_demo(tmp_path / "demo", config, progress=False)
    assert {p: p.stat().st_mtime_ns for p in images} == stamps
