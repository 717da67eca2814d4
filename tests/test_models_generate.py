from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selma.errors import DataInputError, SelmaError
from selma.models import load_pipeline, model_registry, resolve_model, spec_from_directory
from selma.recipe.generate import GenerationSettings, generate, image_seed
from selma.recipe.prompts import PromptItem, read_prompt_file

PROMPTS = [PromptItem(f"p{i}", t) for i, t in enumerate(["a red cat", "two blue dogs", "a green tree on a hill"])]


def _settings(model: str = "tiny-sd1", **kw: object) -> GenerationSettings:
    base = dict(model=model, steps=3, guidance_scale=7.5, resolution=32, images_per_prompt=2, seed=1)
    return GenerationSettings(**{**base, **kw})


def _digests(folder: Path) -> dict[str, str]:
    files = [*sorted((folder / "images").glob("*.png")), folder / "metadata.jsonl"]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_registry_has_the_papers_models_and_defaults() -> None:
    registry = model_registry()
    v2, xl = registry.get("sd-v2"), registry.get("sdxl-base")
    assert (v2.hub_id, v2.resolution, v2.prediction_type) == ("stabilityai/stable-diffusion-2", 768, "v_prediction")
    assert (xl.family, xl.resolution, xl.guidance_scale, xl.steps) == ("sdxl", 1024, 5.0, 50)
    assert registry.get("sd-v1-4").hub_id == "CompVis/stable-diffusion-v1-4"
    assert {"sd-v1-5", "sd-v2-base", "tiny-sd1", "tiny-sd2", "tiny-sdxl"} <= set(registry.names())
    with pytest.raises(SelmaError, match="unknown model 'sd-v9'.*sd-v1-4"):
        resolve_model("sd-v9")


def test_tiny_model_is_built_once_and_loaded_through_from_pretrained(tmp_path: Path) -> None:
    model = resolve_model("tiny-sd1")
    index = Path(model.source) / "model_index.json"
    assert Path(model.source).is_relative_to(tmp_path / "cache") and index.is_file()
    assert any(Path(model.source, "unet").glob("*.safetensors"))
    before = index.stat().st_mtime_ns
    assert resolve_model("tiny-sd1").source == model.source and index.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("name", "pipeline", "prediction"),
    [
        ("tiny-sd1", "StableDiffusionPipeline", "epsilon"),
        ("tiny-sd2", "StableDiffusionPipeline", "v_prediction"),
        ("tiny-sdxl", "StableDiffusionXLPipeline", "epsilon"),
    ],
)
def test_tiny_families_have_the_real_architectures(
    tiny_models: dict[str, Path], name: str, pipeline: str, prediction: str
) -> None:
    model = resolve_model(str(tiny_models[name]))
    assert model.spec.family == name.removeprefix("tiny-") and model.spec.prediction_type == prediction
    assert model.spec.resolution == 32
    pipe = load_pipeline(model)
    assert type(pipe).__name__ == pipeline and pipe.scheduler.config.prediction_type == prediction
    if name == "tiny-sdxl":
        assert pipe.text_encoder_2 is not None and pipe.unet.config.addition_embed_type == "text_time"
    assert name != "tiny-sd2" or pipe.unet.config.use_linear_projection
    import torch

    image = pipe("a red cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (32, 32)


def test_spec_from_a_directory_that_is_not_a_pipeline(tmp_path: Path) -> None:
    with pytest.raises(SelmaError, match="no model_index.json"):
        spec_from_directory(tmp_path)


def test_image_seed_depends_only_on_run_seed_prompt_and_index() -> None:
    assert image_seed(1, "p0", 0) == image_seed(1, "p0", 0)
    assert len({image_seed(1, "p0", 0), image_seed(1, "p0", 1), image_seed(2, "p0", 0), image_seed(1, "p1", 0)}) == 4


def test_generate_writes_an_imagefolder_and_resumes(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import datasets

    model = resolve_model(str(tiny_models["tiny-sd1"]))
    out = tmp_path / "gen"
    first = generate(PROMPTS, _settings(), out, lambda: load_pipeline(model), batch_size=4, progress=False)
    assert first == {"rendered": 6, "skipped": 0, "total": 6}
    data = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(data) == 6 and data[0]["text"] == "a red cat" and data[0]["image"].size == (32, 32)
    assert data[1]["seed"] == image_seed(1, "p0", 1)
    reference = _digests(out)
    (out / "images" / "p1_01.png").unlink()
    again = generate(PROMPTS, _settings(), out, lambda: load_pipeline(model), batch_size=4, progress=False)
    assert again == {"rendered": 1, "skipped": 5, "total": 6}
    assert _digests(out) == reference
    provenance = json.loads((out / "generation.json").read_text())["provenance"]
    assert provenance["config"]["seed"] == 1 and len(provenance["config_hash"]) == 64
    with pytest.raises(SelmaError, match="made with other settings"):
        generate(PROMPTS, _settings(seed=2), out, lambda: load_pipeline(model), progress=False)


def test_seeds_make_images_independent_of_other_prompts(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    generate(PROMPTS, _settings(), tmp_path / "all", lambda: load_pipeline(model), batch_size=1, progress=False)
    generate(PROMPTS[1:2], _settings(), tmp_path / "one", lambda: load_pipeline(model), batch_size=1, progress=False)
    a = (tmp_path / "all" / "images" / "p1_00.png").read_bytes()
    assert a == (tmp_path / "one" / "images" / "p1_00.png").read_bytes()
    assert a != (tmp_path / "all" / "images" / "p1_01.png").read_bytes()


@pytest.mark.slow
def test_two_processes_equal_one_byte_for_byte(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": p.id, "text": p.text}) + "\n" for p in PROMPTS))
    args = ["generate", "--prompts", str(prompts), "--model", str(tiny_models["tiny-sd1"]), "--inference-steps", "3"]
    args += ["--images-per-prompt", "2", "--batch-size", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [bin_dir / "selma-bench", *args, "--out", str(tmp_path / "one")], env=env, check=True, capture_output=True
    )
    two = subprocess.run(
        [bin_dir / "torchrun", "--nproc_per_node", "2", "-m", "selma.cli", *args, "--out", str(tmp_path / "two")],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    # both ranks worked (their lines may interleave on the shared stdout)
    assert sorted(int(n) for n in re.findall(r"(\d+) rendered", two.stdout)) == [2, 4]
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")


@pytest.mark.slow
def test_hub_ids_resolve_at_a_revision_pinned_into_the_cache_key(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    # a Hugging Face cache holding two commits of a hub pipeline outside the registry, its main branch at the first
    repo = tmp_path / "hub" / "models--someone--tiny-sd1"
    first, second = "a" * 40, "b" * 40
    for commit in (first, second):
        shutil.copytree(tiny_models["tiny-sd1"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(first)
    (tmp_path / "p.txt").write_text("a red cat\n")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}

    def generate_cli(out: str, *extra: str) -> subprocess.CompletedProcess[str]:
        args = ["generate", "--prompts", "p.txt", "--model", "someone/tiny-sd1", "--out", out, "--inference-steps", "2"]
        command = [Path(sys.executable).parent / "selma-bench", *args, *extra]
        return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)

    models = {}
    for out, extra in (("main", ()), ("second", ("--revision", second))):
        assert generate_cli(out, *extra).returncode == 0
        models[out] = json.loads((tmp_path / out / ".selma-stage.json").read_text())["config"]["model"]
    assert models == {"main": f"someone/tiny-sd1@{first}", "second": f"someone/tiny-sd1@{second}"}
    missing = generate_cli("tag", "--revision", "v9")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "model 'someone/tiny-sd1' at revision 'v9': no diffusers pipeline configuration" in missing.stderr
    assert str(tmp_path / "hub") in missing.stderr


def test_model_references_with_revisions_are_checked() -> None:
    from selma.models import with_revision

    assert with_revision("org/name", "v1") == "org/name@v1" and with_revision("org/name", None) == "org/name"
    with pytest.raises(SelmaError, match="already names a revision"):
        with_revision("org/name@v1", "v2")
    with pytest.raises(SelmaError, match="ships with selma-bench: it has no hub revision"):
        resolve_model("tiny-sd1@v1")
    with pytest.raises(SelmaError, match="not a local diffusers directory, a hub id"):
        resolve_model("not a model")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "text": "x"}\n{"id": "b"\n', "line 2: not valid JSON"),
        ('{"id": "a", "text": ""}\n', "line 1: field 'text': missing or empty prompt text"),
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "line 2: field 'id': duplicate prompt id 'a'"),
        ("", "the file is empty"),
    ],
)
def test_malformed_prompt_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(DataInputError, match=message):
        read_prompt_file(path)


def test_cli_generate_and_models(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from selma.cli import main

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cat\n\na blue cube\n")
    shutil.copytree(tiny_models["tiny-sd2"], tmp_path / "my-model")
    assert main(["generate", "--prompts", str(prompts), "--model", str(tmp_path / "my-model"), "--out", "g"]) == 0
    assert "2 rendered, 0 already present, 2 in g" in capsys.readouterr().out
    rows = [json.loads(x) for x in Path("g/metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in rows] == ["images/line00001_00.png", "images/line00003_00.png"]
    assert rows[0]["steps"] == 50 and rows[0]["guidance_scale"] == 7.5  # a local model gets SD defaults
    assert main(["models"]) == 0
    assert "stabilityai/stable-diffusion-2" in capsys.readouterr().out
