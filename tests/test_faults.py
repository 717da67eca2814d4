"""Reliability: jobs killed at seeded points resume to exactly the bytes of an uninterrupted run, a resume
with changed settings is refused, caches follow content (never paths), and no file is unpickled.
"""

from __future__ import annotations

import ast
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, REPO
from PIL import Image

EXE = str(Path(sys.executable).with_name("selma-bench"))
# outputs whose bytes must match; provenance records (times, commands) and stage markers are not compared
RECORDS = {"generation.json", "training.json", "merge.json", ".selma-stage.json", "p.jsonl.provenance.json"}


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "SELMA_BENCH_DATA": str(DATA), "OMP_NUM_THREADS": "1", **extra}


def _cli(args: list[str], *, kill_at: str | None = None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = _env(**({"SELMA_BENCH_KILL_AT": kill_at} if kill_at else {}))
    return subprocess.run([EXE, *args], env=env, cwd=cwd, capture_output=True, text=True)


def _contents(folder: Path) -> dict[str, bytes]:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".selma-stage.json")]
    return {str(p.relative_to(folder)): p.read_bytes() for p in files if p.name not in RECORDS}


def _kill_points(stage: str, total: int, n: int = 2) -> list[int]:
    return sorted(random.Random(f"faults:{stage}").sample(range(1, total), n))


def _resume_matches(args: list[str], unit: str, total: int, tmp_path: Path, compare: Path) -> None:
    """Run uninterrupted into ``whole``; then, per seeded kill point, kill a run at that unit and resume it."""
    whole = [a.replace("{out}", str(tmp_path / "whole")) for a in args]
    done = _cli(whole, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    expected = _contents(tmp_path / "whole" / compare)
    for point in _kill_points(unit, total):
        out = tmp_path / f"cut{point}"
        cut = [a.replace("{out}", str(out)) for a in args]
        killed = _cli(cut, kill_at=f"{unit}:{point}", cwd=tmp_path)
        assert killed.returncode == -9, killed.stderr  # SIGKILL: no clean-up ran
        resumed = _cli(cut, cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert _contents(out / compare) == expected, f"killed at {unit} {point}"


@pytest.mark.slow
def test_datagen_killed_resumes_exactly_and_refuses_a_changed_seed(tmp_path: Path) -> None:
    args = ["datagen", "--skills", "world_count,world_spatial", "--backend", "world", "--n", "12"]
    args += ["--out", "{out}/p.jsonl"]
    _resume_matches(args, "datagen.prompt", 24, tmp_path, Path("."))
    out = tmp_path / "refused"
    assert _cli([a.replace("{out}", str(out)) for a in args], kill_at="datagen.prompt:5", cwd=tmp_path).returncode == -9
    before = (out / "p.jsonl").read_bytes()
    changed = _cli([*[a.replace("{out}", str(out)) for a in args], "--seed", "1"], cwd=tmp_path)
    assert changed.returncode == 2 and "made with other settings (seed: 0 -> 1)" in changed.stderr
    assert (out / "p.jsonl").read_bytes() == before  # the seed-0 prompts were not mixed with seed-1 ones


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "p.txt"
    path.write_text("\n".join(["a red cat", "two dogs", "a blue house", "a tree", "three apples", "a boat"]) + "\n")
    return path


@pytest.mark.slow
def test_generate_killed_resumes_exactly_and_refuses_a_changed_seed(prompts: Path, tmp_path: Path) -> None:
    args = ["generate", "--prompts", str(prompts), "--model", "tiny-sd1", "--out", "{out}", "--batch-size", "2"]
    args += ["--images-per-prompt", "2", "--inference-steps", "2"]
    _resume_matches(args, "generate.image", 12, tmp_path, Path("."))
    out = tmp_path / "refused"
    command = [a.replace("{out}", str(out)) for a in args]
    assert _cli(command, kill_at="generate.image:4", cwd=tmp_path).returncode == -9
    images = sorted(p.name for p in (out / "images").iterdir())
    changed = _cli([*command, "--seed", "1"], cwd=tmp_path)
    assert changed.returncode == 2 and "made with other settings (seed: 0 -> 1)" in changed.stderr
    assert sorted(p.name for p in (out / "images").iterdir()) == images and not (out / "metadata.jsonl").exists()
    forced = _cli([*command, "--seed", "1", "--force"], cwd=tmp_path)
    assert forced.returncode == 0 and json.loads((out / "metadata.jsonl").read_text().splitlines()[0])["seed"] != 0


def _training_images(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    rows = []
    for k in range(6):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / "images" / f"{k}.png")
        rows.append(json.dumps({"file_name": f"images/{k}.png", "text": f"picture number {k}"}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.slow
def test_train_killed_resumes_exactly_with_every_loss_and_refuses_a_changed_rate(tmp_path: Path) -> None:
    data = _training_images(tmp_path / "data")
    args = ["train", "--model", "tiny-sd1", "--data", str(data), "--out", "{out}", "--max-train-steps", "6"]
    args += ["--rank", "4"]
    args += ["--alpha", "4", "--batch-size", "2", "--gradient-accumulation-steps", "1", "--checkpointing-steps", "2"]
    args += ["--checkpoints-total-limit", "5", "--device", "cpu", "--resume", "latest"]
    _resume_matches(args, "train.step", 6, tmp_path, Path("."))
    whole = json.loads((tmp_path / "whole" / "training.json").read_text())
    for point in _kill_points("train.step", 6):  # the resumed runs' records hold every step's loss
        resumed = json.loads((tmp_path / f"cut{point}" / "training.json").read_text())
        assert resumed["losses"] == whole["losses"] and len(whole["losses"]) == 6
    out = tmp_path / "refused"
    command = [a.replace("{out}", str(out)) for a in args]
    assert _cli(command, kill_at="train.step:3", cwd=tmp_path).returncode == -9
    changed = _cli([*command, "--learning-rate", "1e-3"], cwd=tmp_path)
    assert changed.returncode == 2 and "learning_rate: 0.0003 -> 0.001" in changed.stderr
    # a checkpoint file changed after it was saved is refused, not unpickled
    rng_state = out / "checkpoint-2" / "random_states_0.pkl"
    rng_state.write_bytes(rng_state.read_bytes() + b"tampered")
    tampered = _cli(command, cwd=tmp_path)
    assert tampered.returncode == 2 and "random_states_0.pkl: changed, added or removed" in tampered.stderr


@pytest.mark.slow
def test_lora_bytes_do_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    data = _training_images(tmp_path / "data")
    args = ["train", "--model", "tiny-sd1", "--data", str(data), "--max-train-steps", "1", "--rank", "4"]
    args += ["--alpha", "4"]
    args += ["--batch-size", "2", "--gradient-accumulation-steps", "1", "--device", "cpu"]
    files = []
    for seed in ("1", "2"):
        env = _env(PYTHONHASHSEED=seed)
        out = tmp_path / f"lora{seed}"
        done = subprocess.run([EXE, *args, "--out", str(out)], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        files.append((out / "pytorch_lora_weights.safetensors").read_bytes())
    assert files[0] == files[1]


@pytest.mark.slow
def test_study_killed_at_seeded_points_restarts_to_the_same_results(
    tiny_models: dict[str, Path], tiny_clip: Path, tmp_path: Path
) -> None:
    import yaml

    study = {
        "name": "faults",
        "base_model": str(tiny_models["tiny-sd1"]),
        "skills": ["world_count", "world_binding"],
        "prompts_per_skill": 3,
        "datagen": {"backend": "world"},
        "train": {"rank": 4, "alpha": 4, "train_batch_size": 2, "gradient_accumulation_steps": 1},
        "variants": ["base", "expert:world_count", "merged:paper"],
        "suites": ["drawbench"],
        "metrics": ["pickscore"],
        "checkpoints": {"pickscore": {"model": str(tiny_clip), "processor": str(tiny_clip)}},
        "limit": 2,
    }
    study["train"].update({"max_train_steps": 4, "checkpointing_steps": 2})
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(study))
    args = ["study", str(config), "--out", "{out}"]
    whole = [a.replace("{out}", str(tmp_path / "whole")) for a in args]
    assert _cli(whole, cwd=tmp_path).returncode == 0
    expected = (tmp_path / "whole" / "comparison.csv").read_text()
    loras = {p.relative_to(tmp_path / "whole"): p.read_bytes() for p in (tmp_path / "whole").rglob("*.safetensors")}
    for unit, point in [("generate.image", 5), ("train.step", 3)]:
        out = tmp_path / f"cut-{unit}"
        cut = [a.replace("{out}", str(out)) for a in args]
        assert _cli(cut, kill_at=f"{unit}:{point}", cwd=tmp_path).returncode == -9
        assert _cli(cut, cwd=tmp_path).returncode == 0
        assert _drop_runs((out / "comparison.csv").read_text()) == _drop_runs(expected)
        assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.safetensors")} == loras


def _drop_runs(csv_text: str) -> list[list[str]]:
    import csv
    import io

    rows = list(csv.reader(io.StringIO(csv_text)))
    keep = [i for i, name in enumerate(rows[0]) if name not in ("run", "score_run")]
    return [[row[i] for i in keep] for row in rows]


# --- caches follow content, not paths ---


def test_the_answer_cache_never_mixes_two_local_checkpoints(tiny_blip: Path, tmp_path: Path) -> None:
    import torch
    from transformers import BlipForQuestionAnswering

    from selma.harness.metrics.vqa import AnswerCache, VQAModel, vqa_models

    other = tmp_path / "other-blip"
    shutil.copytree(tiny_blip, other)
    model = BlipForQuestionAnswering.from_pretrained(other)
    torch.manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    model.save_pretrained(other)
    images = [Image.fromarray(np.full((32, 32, 3), 90, dtype=np.uint8))] * 2
    questions, shas = ["is there a cat ?", "two dogs ?"], ["img-a", "img-b"]
    spec = vqa_models.get("blip")
    cache = AnswerCache(tmp_path / "answers.sqlite")
    first = VQAModel(spec, str(tiny_blip), cache=cache)
    first.answer(images, questions, shas)
    second = VQAModel(spec, str(other), cache=cache)
    second.answer(images, questions, shas)
    assert first.calls == 1 and second.calls == 1  # another checkpoint is asked, not served the first's answers
    again = VQAModel(spec, str(other), cache=cache)
    again.answer(images, questions, shas)
    assert again.calls == 0


def test_replaced_weights_at_the_same_path_are_never_reused(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    from selma.harness.suites import DataLocator
    from selma.orchestration.pipeline import RunRequest, plan_run

    local = tmp_path / "model"
    shutil.copytree(tiny_models["tiny-sd1"], local)
    locator = DataLocator.from_env(DATA, offline=True)
    request = RunRequest(suite="drawbench", model=str(local), metrics=("pickscore",), limit=2)
    first = plan_run(request, locator, workdir=tmp_path / "work", out_root=tmp_path / "runs")
    weights = local / "unet" / "diffusion_pytorch_model.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(weights)
    save_file({k: v + 0.01 for k, v in state.items()}, weights)
    second = plan_run(request, locator, workdir=tmp_path / "work", out_root=tmp_path / "runs")
    assert first.images_dir != second.images_dir


def test_the_package_never_unpickles() -> None:
    """No pickle module, and every torch.load restricted to weights (the package's own files use safetensors/JSON)."""
    for path in (REPO / "selma").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert "pickle" not in names, path
            call = isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load"
            if call and getattr(node.func.value, "id", None) == "torch":
                keywords = {k.arg: k.value for k in node.keywords}
                assert isinstance(keywords.get("weights_only"), ast.Constant), path
                assert keywords["weights_only"].value is True, path


def test_lora_metadata_is_sorted() -> None:
    from peft import LoraConfig

    from selma.recipe.lora_io import lora_metadata

    config = LoraConfig(r=4, lora_alpha=4, target_modules=["to_v", "to_q", "to_out.0", "to_k"])
    assert isinstance(config.to_dict()["target_modules"], set)  # what made the bytes depend on the hash seed
    assert lora_metadata(config)["target_modules"] == ["to_k", "to_out.0", "to_q", "to_v"]
