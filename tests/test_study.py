from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import DATA

from selma.errors import DataInputError
from selma.harness.suites import DataLocator
from selma.orchestration.study import StudyConfig, load_study, plan_study, run_study
from selma.reporting.paper import paper_configs

BASE = {
    "name": "tiny",
    "skills": ["coco", "countbench"],
    "prompts_per_skill": 4,
    "train": {
        "rank": 4,
        "alpha": 4,
        "train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "max_train_steps": 4,
        "checkpointing_steps": 2,
        "cache": True,
    },
    "variants": ["base", "expert:coco", "multi", "merged:paper"],
    "suites": ["drawbench"],
    "metrics": ["pickscore"],
    "limit": 2,
}


def _write(tmp_path: Path, tiny_models: dict[str, Path], tiny_clip: Path, **changes: object) -> Path:
    config = {
        **BASE,
        "base_model": str(tiny_models["tiny-sd1"]),
        "checkpoints": {"pickscore": {"model": str(tiny_clip), "processor": str(tiny_clip)}},
        **changes,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"variants": ["base", "lora"]}, "(top level)", "unknown variant 'lora'"),
        ({"variants": ["expert:whoops"]}, "(top level)", "names a skill not in skills"),
        ({"suites": ["dsg", "nosuch"]}, "suites", "unknown suite 'nosuch'"),
        ({"metrics": ["clipscore"]}, "metrics", "unknown metric 'clipscore'"),
        ({"prompts_per_skill": "many"}, "prompts_per_skill", "valid integer"),
        ({"train": {"learning_rat": 1}}, "train", "unknown training setting 'learning_rat'"),
        ({"colour": 1}, "colour", "unknown key"),
        ({"skills": ["cooking"]}, "skills", "unknown skill 'cooking'"),
        ({"conventions": {"dsg": "tifa-selma"}}, "conventions", "scores tifa, not dsg"),
        ({"conventions": {"dsg": "dsg-micro"}}, "conventions", "unknown convention 'dsg-micro'"),
        ({"checkpoint": 7}, "(top level)", "checkpoint: 7 is not a saved step (every 2 up to 4)"),
        ({"checkpoint": "best"}, "checkpoint", "expected 'final' or a checkpoint step (an integer), got 'best'"),
        ({"train": {"rank": 0}}, "train", "rank: expected a positive number, got 0"),
        ({"train": {"seed": -1}}, "train", "seed: expected zero or more, got -1"),
        ({"train": {"mixed_precision": "fp8"}}, "train", "mixed_precision: expected one of auto, no, fp16, bf16"),
        ({"train": {"rank": True}}, "train", "rank: Input should be a valid integer"),
        ({"merge": {"weights": {"coco": 1.0}}}, "(top level)", "merge.weights: needs one weight per skill"),
        ({"merge": {"density": 2}}, "merge.density", "less than or equal to 1"),
        ({"merge": {"method": "ties"}}, "merge.method", "unknown key"),
    ],
)
def test_bad_study_files(tmp_path: Path, changes: dict, field: str, message: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**BASE, "base_model": "tiny-sd1", **changes}))
    with pytest.raises(DataInputError) as info:
        load_study(path)
    assert str(path) in str(info.value) and f"field '{field}'" in str(info.value) and message in str(info.value)


def test_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(BASE))
    with pytest.raises(DataInputError, match=r"study.yaml: field 'base_model': missing"):
        load_study(path)


@pytest.mark.parametrize("name", sorted(paper_configs()))
def test_paper_configs_load_and_dry_run(name: str, tmp_path: Path, locator: DataLocator) -> None:
    study = load_study(paper_configs()[name])
    cells = plan_study(study, tmp_path, locator)
    assert len(cells) == len(study.variants) * len(study.suites)
    base = [c for c in cells if c["variant"] == "base"]
    assert base and all(c["run"]["n_images"] == c["run"]["n_prompts"] > 0 for c in base)
    assert all(c["run"] is None for c in cells if c["variant"] != "base")  # LoRAs are built first
    # SELMA's settings: its own scoring conventions, a stated checkpoint rule (never chosen on the test suite)
    assert study.conventions["dsg"] == "dsg-selma" and study.conventions.get("tifa", "tifa-selma") == "tifa-selma"
    sdxl = study.base_model == "sdxl-base"
    assert study.checkpoint == ("final" if sdxl else 3000)
    config = study.train_config()
    assert (config.max_train_steps, config.checkpointing_steps) == ((10000, 2000) if sdxl else (5000, 500))
    assert (config.train_batch_size * config.gradient_accumulation_steps) == (32 if sdxl else 64)


def test_study_dtype_reaches_every_render_and_keys_its_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from selma.cli import main
    from selma.orchestration.study import cell_request

    study_file = paper_configs()[sorted(paper_configs())[0]]
    dirs = {}
    for dtype in ("float32", "float16"):
        argv = ["study", str(study_file), "--out", str(tmp_path), "--data-dir", str(DATA), "--dry-run", "--json"]
        assert main([*argv, *(["--dtype", dtype] if dtype != "float32" else [])]) == 0
        cells = json.loads(capsys.readouterr().out)["cells"]
        dirs[dtype] = {c["run"]["images_dir"] for c in cells if c["run"]}
    assert dirs["float32"] and dirs["float32"].isdisjoint(dirs["float16"])  # fp16 images never reuse fp32 ones
    study = load_study(study_file).model_copy(update={"dtype": "bfloat16"})
    assert cell_request(study, "base", study.suites[0], None).dtype == "bfloat16"


def test_training_defaults_are_selmas_scripts() -> None:
    from selma.models import resolve_model
    from selma.recipe.train import TrainConfig, effective_config

    for name in ("sd-v1-4", "sd-v2"):  # ft_sd_lora.sh trains every SD model at 512 px, SD v2 (768 native) too
        config = effective_config(resolve_model(name), TrainConfig())
        assert config.resolution == 512 and config.vae is None
    sdxl = effective_config(resolve_model("sdxl-base"), TrainConfig())
    assert sdxl.resolution == 1024 and sdxl.vae == "madebyollin/sdxl-vae-fp16-fix"
    assert effective_config(resolve_model("sdxl-base"), TrainConfig(resolution=512, vae="/vae")).vae == "/vae"
    defaults = TrainConfig()
    assert (defaults.rank, defaults.alpha, defaults.learning_rate, defaults.seed) == (128, 128, 3e-4, 42)
    assert (defaults.max_train_steps, defaults.checkpointing_steps, defaults.lr_scheduler) == (5000, 500, "constant")
    study = StudyConfig(name="x", base_model="sdxl-base", skills=["coco"], variants=["base"])
    assert (study.train_config().train_batch_size, study.train_config().gradient_accumulation_steps) == (4, 8)
    assert study.train_config().checkpointing_steps == 2000  # a study on SDXL gets ft_sd_lora_sdxl.sh's settings


@pytest.mark.slow
def test_tiny_study_end_to_end_and_cached(
    tiny_models: dict[str, Path], tiny_clip: Path, tmp_path: Path, locator: DataLocator
) -> None:
    study = load_study(_write(tmp_path, tiny_models, tiny_clip))
    result = run_study(study, tmp_path / "out", locator, progress=False)
    assert list(result["table"].index) == BASE["variants"]
    assert list(result["table"].columns) == ["drawbench/PickScore ↑"]
    rows = list(csv.DictReader((tmp_path / "out" / "comparison.csv").open()))
    assert len(rows) == 4 and all(int(r["n_prompts"]) == 2 for r in rows)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.suffix in (".png", ".safetensors")]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    run_study(study, tmp_path / "out", locator, progress=False)
    assert {p: p.stat().st_mtime_ns for p in files} == stamps


@pytest.mark.slow
def test_killed_study_restarts_to_the_same_results(
    tiny_models: dict[str, Path], tiny_clip: Path, tmp_path: Path
) -> None:
    config = _write(tmp_path, tiny_models, tiny_clip)
    env = {**os.environ, "SELMA_BENCH_DATA": str(DATA), "OMP_NUM_THREADS": "1"}
    command = [str(Path(sys.executable).with_name("selma-bench")), "study", str(config)]
    subprocess.run([*command, "--out", str(tmp_path / "whole")], env=env, check=True, capture_output=True)
    process = subprocess.Popen(
        [*command, "--out", str(tmp_path / "cut")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "cut").rglob("checkpoint-2")):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # mid-training: a checkpoint exists, the LoRA does not
    process.wait()
    assert not (tmp_path / "cut" / "comparison.csv").exists()
    subprocess.run([*command, "--out", str(tmp_path / "cut")], env=env, check=True, capture_output=True)
    whole = list(csv.DictReader((tmp_path / "whole" / "comparison.csv").open()))
    cut = list(csv.DictReader((tmp_path / "cut" / "comparison.csv").open()))
    drop = lambda rows: [{k: v for k, v in r.items() if k not in ("run", "score_run")} for r in rows]  # noqa: E731
    assert drop(whole) == drop(cut)


@pytest.mark.slow
def test_study_as_local_job_arrays(
    tiny_models: dict[str, Path], tiny_clip: Path, tmp_path: Path, locator: DataLocator
) -> None:
    """submitit's local cluster runs every unit in its own process, as Slurm would; the results are the same."""
    study = load_study(_write(tmp_path, tiny_models, tiny_clip, variants=["base", "expert:coco"]))
    here = run_study(study, tmp_path / "here", locator, progress=False)
    jobs = run_study(
        study, tmp_path / "jobs", locator, progress=False, launcher="local", launcher_params={"timeout_min": 10}
    )
    assert jobs["table"].equals(here["table"])
    assert list((tmp_path / "jobs" / "jobs").glob("*_result.pkl"))  # the units ran as submitit jobs


def test_train_settings_are_declared_once() -> None:
    """`train`'s flags, their defaults and checks, and a study's `train:` section come from TrainConfig's fields."""
    import argparse
    from dataclasses import fields

    from selma.cli.train import add_train_settings, train_overrides
    from selma.recipe.train_config import TrainConfig, check_overrides, train_settings

    parser = argparse.ArgumentParser()
    add_train_settings(parser)
    flags = {a.dest: a for a in parser._actions if a.dest != "help"}
    exposed = {s.name for s in train_settings() if s.cli}
    assert set(flags) == exposed and exposed < {f.name for f in fields(TrainConfig)}
    assert flags["train_batch_size"].option_strings == ["--batch-size"]
    assert flags["random_flip"].option_strings == ["--no-random-flip"]
    assert "(default 5,000; SDXL 10,000)" in flags["max_train_steps"].help
    args = parser.parse_args(
        ["--rank", "8", "--no-random-flip", "--validation-prompt", "a", "--validation-prompt", "b"]
    )
    assert train_overrides(args) == {"rank": 8, "random_flip": False, "validation_prompts": ("a", "b")}
    with pytest.raises(SystemExit):
        parser.parse_args(["--rank", "0"])
    assert check_overrides({"rank": 8, "random_flip": False}) == {"rank": 8, "random_flip": False}


def test_study_merge_section_reaches_the_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from selma.orchestration.study import units

    seen: dict[str, object] = {}

    def fake_merge(model: object, experts: dict, target: Path, **kwargs: object) -> dict:
        seen.update(kwargs, experts=sorted(experts))
        return {}

    monkeypatch.setattr("selma.recipe.merge.merge_experts", fake_merge)
    merge = {"weights": {"coco": 0.7, "countbench": 0.3}, "density": 0.4, "seed": 5}
    study = StudyConfig.model_validate({**BASE, "base_model": "tiny-sd1", "merge": merge})
    units.merge_unit(study, tmp_path, "ties")
    assert seen == {
        "method": "ties",
        "weights": [0.7, 0.3],
        "density": 0.4,
        "seed": 5,
        "force": False,
        "experts": ["coco", "countbench"],
    }


def test_study_train_values_become_what_the_fields_hold() -> None:
    """YAML reads 3e-4 as a string and a quoted false as a word: the study holds the float and the bool."""
    study = StudyConfig.model_validate(
        {**BASE, "base_model": "tiny-sd1", "train": {"learning_rate": "3e-4", "random_flip": "false"}}
    )
    assert study.train == {"learning_rate": 0.0003, "random_flip": False}
    assert study.train_config().learning_rate == 0.0003 and study.train_config().random_flip is False
