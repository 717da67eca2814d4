from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selma.errors import DataInputError, SelmaError
from selma.models import load_pipeline, resolve_model
from selma.recipe.generate import GenerationSettings, generate
from selma.recipe.lora_io import LORA_FILE
from selma.recipe.merge import METHODS, merge_experts
from selma.recipe.prompts import PromptItem
from selma.recipe.train import TrainConfig, train_lora
from selma.recipe.variants import resolve_variant, variant_dir

SMALL = TrainConfig(
    rank=4,
    alpha=8,
    train_batch_size=2,
    gradient_accumulation_steps=2,
    max_train_steps=4,
    checkpointing_steps=2,
    learning_rate=1e-2,
)
PROMPTS = [PromptItem(f"p{i}", t) for i, t in enumerate(["a red cat", "two blue dogs", "a green tree", "a boat"])]

LORA = "pytorch_lora_weights.safetensors"  # diffusers < 0.40 needs the file name offline


@pytest.fixture(scope="module")
def images(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six images of the tiny SD1 model with metadata.jsonl."""
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    out = tmp_path_factory.mktemp("images")
    settings = GenerationSettings(model="tiny-sd1", steps=2, guidance_scale=7.5, resolution=32, images_per_prompt=2)
    generate(PROMPTS[:3], settings, out, lambda: load_pipeline(model), progress=False)
    return out


@pytest.fixture(scope="module")
def experts(tiny_models: dict[str, Path], images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    root = tmp_path_factory.mktemp("experts")
    for name, seed in (("count", 1), ("color", 2)):
        train_lora(model, [str(images)], root / name, replace(SMALL, seed=seed), progress=False)
    return {"count": root / "count", "color": root / "color"}


def _render(pipe: object, seed: int = 0) -> object:
    return pipe(
        "a red cat", num_inference_steps=2, generator=torch.Generator().manual_seed(seed), output_type="np"
    ).images


def test_lora_loads_in_plain_diffusers_with_its_alpha(tiny_models: dict[str, Path], experts: dict[str, Path]) -> None:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_models["tiny-sd1"], safety_checker=None)
    base = _render(pipe)
    pipe.load_lora_weights(str(experts["count"]), weight_name=LORA, adapter_name="count")
    layer = pipe.unet.mid_block.attentions[0].transformer_blocks[0].attn2.to_k
    assert layer.r["count"] == 4 and layer.scaling["count"] == pytest.approx(8 / 4)
    assert abs(_render(pipe) - base).max() > 1e-3
    record = json.loads((experts["count"] / "training.json").read_text())
    assert record["steps"] == 4 and len(record["losses"]) == 4 and record["n_examples"] == 6
    assert record["train_config"]["target_modules"] == ["to_q", "to_k", "to_v", "to_out.0"]


def test_checkpoints_keep_the_newest_and_resume_exactly(
    tiny_models: dict[str, Path], images: Path, tmp_path: Path
) -> None:
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    config = replace(SMALL, max_train_steps=6, checkpoints_total_limit=2)
    train_lora(model, [str(images)], tmp_path / "full", config, progress=False)
    assert sorted(p.name for p in (tmp_path / "full").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    train_lora(model, [str(images)], tmp_path / "cut", replace(config, max_train_steps=4), progress=False)
    with pytest.raises(SelmaError, match="--resume latest"):
        train_lora(model, [str(images)], tmp_path / "cut", config, progress=False)
    resumed = train_lora(model, [str(images)], tmp_path / "cut", config, resume="latest", progress=False)
    assert resumed["steps"] == 6 and len(resumed["losses"]) == 6
    full, cut = load_file(tmp_path / "full" / LORA_FILE), load_file(tmp_path / "cut" / LORA_FILE)
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)
    with pytest.raises(SelmaError, match="other settings"):
        train_lora(model, [str(images)], tmp_path / "full", replace(config, rank=8), progress=False)


@pytest.mark.parametrize("name", ["tiny-sd2", "tiny-sdxl"])
def test_v_prediction_and_sdxl_train_with_caching(
    tiny_models: dict[str, Path], images: Path, tmp_path: Path, name: str
) -> None:
    model = resolve_model(str(tiny_models[name]))
    result = train_lora(
        model, [str(images)], tmp_path / name, replace(SMALL, max_train_steps=2, cache=True), progress=False
    )
    assert result["family"] == model.spec.family and len(result["losses"]) == 2
    pipe = load_pipeline(model)
    pipe.load_lora_weights(str(tmp_path / name), weight_name=LORA)
    assert _render(pipe).shape == (1, 32, 32, 3)


def test_the_latent_cache_trains_on_the_same_batches_as_encoding_each_step(
    tiny_models: dict[str, Path], images: Path, tmp_path: Path
) -> None:
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    config = replace(SMALL, max_train_steps=3, checkpointing_steps=100)
    plain = train_lora(model, [str(images)], tmp_path / "plain", config, progress=False)
    cache_dir = tmp_path / "latents"
    cache_dir.mkdir()
    cached = train_lora(
        model, [str(images)], tmp_path / "cached", replace(config, cache=True, cache_dir=str(cache_dir)), progress=False
    )
    assert plain["losses"] == pytest.approx(cached["losses"], rel=1e-4)  # same latents, noise and timesteps
    assert list(cache_dir.iterdir()) == []  # the memory-mapped cache is removed after training


def test_merge_takes_loras_saved_without_adapter_metadata(
    tiny_models: dict[str, Path], experts: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from safetensors.torch import save_file

    from selma.recipe.lora_io import read_unet_lora

    bare = {}
    for name, folder in experts.items():
        (tmp_path / name).mkdir()
        save_file(load_file(folder / LORA_FILE), tmp_path / name / LORA_FILE)  # no metadata, as other tools save
        bare[name] = tmp_path / name
    config, _ = read_unet_lora(bare["count"], "sd1")
    assert (config.r, config.lora_alpha) == (SMALL.rank, SMALL.rank)  # rank from the tensors, alpha = rank
    assert {k.rsplit(".", 1)[-1] for k in config.target_modules} == {"to_q", "to_k", "to_v", "0"}
    assert "no adapter metadata; rank 4 read from the tensors, alpha = rank" in caplog.text
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    assert merge_experts(model, bare, tmp_path / "merged")["rank"] == 2 * SMALL.rank


def test_tensorboard_logs_and_validation_images_leave_the_weights_alone(
    tiny_models: dict[str, Path], images: Path, tmp_path: Path
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = resolve_model(str(tiny_models["tiny-sd1"]))
    config = replace(SMALL, max_train_steps=3, checkpointing_steps=100)
    plain = train_lora(model, [str(images)], tmp_path / "plain", config, progress=False)
    logged_config = replace(
        config, report_to="tensorboard", validation_prompts=("a red cat", "two blue dogs"), validation_steps=2
    )
    logged = train_lora(model, [str(images)], tmp_path / "logged", logged_config, progress=False)
    assert logged["config_hash"] == plain["config_hash"]  # logging is not part of what the weights depend on
    assert load_file(tmp_path / "plain" / LORA_FILE).keys() == load_file(tmp_path / "logged" / LORA_FILE).keys()
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            load_file(tmp_path / "plain" / LORA_FILE).values(),
            load_file(tmp_path / "logged" / LORA_FILE).values(),
            strict=True,
        )
    )
    events = EventAccumulator(str(next((tmp_path / "logged" / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("loss")] == pytest.approx(logged["losses"])
    assert [e.step for e in events.Images("validation/00")] == [2, 3]
    assert [e.step for e in events.Images("validation/01")] == [2, 3]
    for step in (2, 3):  # every 2 steps, and the last
        folder = tmp_path / "logged" / "validation" / f"step-{step}"
        assert sorted(p.name for p in folder.iterdir()) == ["00.png", "01.png", "prompts.txt"]


def test_ground_truth_from_any_datasets_source(tiny_models: dict[str, Path], images: Path, tmp_path: Path) -> None:
    import datasets

    from selma.recipe.train_data import decode_image, load_image_text_dataset

    reference = datasets.load_dataset("imagefolder", data_dir=str(images), split="train")
    reference.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"validation": reference}).save_to_disk(str(tmp_path / "saved-dict"))
    (tmp_path / "parquet").mkdir()
    reference.to_parquet(str(tmp_path / "parquet" / "part-0.parquet"))
    expected = [(row["text"], decode_image(row["image"]).tobytes()) for row in load_image_text_dataset([str(images)])]
    for source, split in (
        (str(tmp_path / "saved"), "train"),
        (str(tmp_path / "saved-dict"), "validation"),
        (str(tmp_path / "parquet"), "train"),
        (str(tmp_path / "parquet" / "part-0.parquet"), "train"),
        (reference, "train"),
    ):
        loaded = load_image_text_dataset([source], split=split)
        assert [(row["text"], decode_image(row["image"]).tobytes()) for row in loaded] == expected, source
    with pytest.raises(SelmaError, match="no split 'test'"):
        load_image_text_dataset([str(tmp_path / "saved-dict")], split="test")
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    result = train_lora(model, [reference], tmp_path / "lora", replace(SMALL, max_train_steps=1), progress=False)
    assert result["data"][0].startswith("dataset:") and len(result["losses"]) == 1


def test_training_data_errors(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    (tmp_path / "bare").mkdir()
    with pytest.raises(DataInputError, match="image folder without metadata.jsonl"):
        train_lora(model, [str(tmp_path / "bare")], tmp_path / "out", SMALL, progress=False)
    assert not (tmp_path / "out" / LORA_FILE).exists()


def test_paper_merge_equals_the_runtime_mix_of_experts(
    tiny_models: dict[str, Path], experts: dict[str, Path], tmp_path: Path
) -> None:
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    result = merge_experts(model, experts, tmp_path / "merged")
    assert result["weights"] == [0.5, 0.5] and result["rank"] == 8  # cat: ranks add up
    runtime = load_pipeline(model)
    for name, folder in experts.items():
        runtime.load_lora_weights(str(folder), weight_name=LORA, adapter_name=name)
    runtime.set_adapters(list(experts), [0.5, 0.5])
    merged = load_pipeline(model)
    merged.load_lora_weights(str(tmp_path / "merged"), weight_name=LORA, adapter_name="merged")
    base = _render(load_pipeline(model))
    assert abs(_render(runtime) - _render(merged)).max() < 1e-5
    assert abs(_render(merged) - base).max() > 1e-3


@pytest.mark.parametrize("method", [m for m in METHODS if m != "paper"])
def test_every_peft_combination_type(
    tiny_models: dict[str, Path], experts: dict[str, Path], tmp_path: Path, method: str
) -> None:
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    result = merge_experts(model, experts, tmp_path / method, method=method, seed=3)
    assert result["method"] == method and (tmp_path / method / LORA_FILE).is_file()
    pipe = load_pipeline(model)
    pipe.load_lora_weights(str(tmp_path / method), weight_name=LORA)
    assert _render(pipe).shape == (1, 32, 32, 3)
    if method.startswith("dare"):  # random pruning is seeded
        again = merge_experts(model, experts, tmp_path / f"{method}-again", method=method, seed=3)
        first = load_file(tmp_path / method / LORA_FILE)
        second = load_file(tmp_path / f"{method}-again" / LORA_FILE)
        assert again["rank"] == result["rank"] and all(torch.equal(first[k], second[k]) for k in first)


def test_merge_refuses_bad_inputs(tiny_models: dict[str, Path], experts: dict[str, Path], tmp_path: Path) -> None:
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    with pytest.raises(SelmaError, match="at least 2 experts"):
        merge_experts(model, {"count": experts["count"]}, tmp_path / "m")
    with pytest.raises(SelmaError, match="not 'merged'"):
        merge_experts(model, {"merged": experts["count"], "color": experts["color"]}, tmp_path / "m")
    with pytest.raises(SelmaError, match="3 weights for 2 experts"):
        merge_experts(model, experts, tmp_path / "m", weights=[1, 1, 1])
    xl = resolve_model(str(tiny_models["tiny-sdxl"]))
    with pytest.raises(SelmaError, match="a LoRA of another architecture"):
        merge_experts(xl, experts, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merged_lora_in_plain_diffusers_reproduces_selma_images(
    tiny_models: dict[str, Path], experts: dict[str, Path], tmp_path: Path
) -> None:
    from diffusers import DiffusionPipeline

    model = resolve_model(str(tiny_models["tiny-sd1"]))
    workdir = tmp_path / "work"
    target = variant_dir(workdir, model, "merged:paper")
    merge_experts(model, experts, target)
    variant = resolve_variant(str(tiny_models["tiny-sd1"]), "merged", workdir=workdir, fuse=False)  # as plain
    settings = GenerationSettings(model="m", variant=variant.key, steps=3, guidance_scale=7.5, resolution=32, seed=5)
    generate(PROMPTS, settings, tmp_path / "ours", variant.load, batch_size=1, progress=False)
    plain = DiffusionPipeline.from_pretrained(tiny_models["tiny-sd1"], safety_checker=None)
    plain.load_lora_weights(str(target), weight_name=LORA)
    plain.set_progress_bar_config(disable=True)
    from selma.recipe.generate import image_seed

    for prompt in PROMPTS:
        generator = torch.Generator().manual_seed(image_seed(5, prompt.id, 0))
        image = plain(
            prompt.text, num_inference_steps=3, guidance_scale=7.5, height=32, width=32, generator=generator
        ).images[0]
        image.save(tmp_path / "plain.png")
        assert (tmp_path / "plain.png").read_bytes() == (
            tmp_path / "ours" / "images" / f"{prompt.id}_00.png"
        ).read_bytes()


def test_a_fused_variant_renders_as_the_live_adapter_without_adapter_layers(
    tiny_models: dict[str, Path], experts: dict[str, Path], tmp_path: Path
) -> None:
    model = resolve_model(str(tiny_models["tiny-sd1"]))
    merge_experts(model, experts, variant_dir(tmp_path, model, "merged:paper"))
    fused = resolve_variant(str(tiny_models["tiny-sd1"]), "merged", workdir=tmp_path)
    live = resolve_variant(str(tiny_models["tiny-sd1"]), "merged", workdir=tmp_path, fuse=False)
    assert fused.fuse and fused.key != live.key and live.key.endswith(":live")  # their images are cached apart
    fused_pipe, live_pipe = fused.load(), live.load()
    assert not any("lora" in name for name, _ in fused_pipe.unet.named_modules())
    assert any("lora" in name for name, _ in live_pipe.unet.named_modules())
    assert abs(_render(fused_pipe) - _render(live_pipe)).max() < 1e-4
    assert abs(_render(fused_pipe) - _render(load_pipeline(model))).max() > 1e-3  # the LoRA is in the weights


def test_variants_resolve_or_explain(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(SelmaError, match="no LoRA at .*selma-bench train --as expert:count"):
        resolve_variant(str(tiny_models["tiny-sd1"]), "expert:count", workdir=tmp_path)
    with pytest.raises(SelmaError, match="needs a name"):
        resolve_variant(str(tiny_models["tiny-sd1"]), "gt", workdir=tmp_path)
    with pytest.raises(SelmaError, match="unknown variant 'lora'"):
        resolve_variant(str(tiny_models["tiny-sd1"]), "lora", workdir=tmp_path)
    assert resolve_variant(str(tiny_models["tiny-sd1"]), "base", workdir=tmp_path).key == "base"


def test_lora_of_another_architecture_is_refused_at_load(
    tiny_models: dict[str, Path], experts: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    xl = resolve_model(str(tiny_models["tiny-sdxl"]))
    target = variant_dir(tmp_path, xl, "expert:count")
    shutil.copytree(experts["count"], target)
    variant = resolve_variant(str(tiny_models["tiny-sdxl"]), "expert:count", workdir=tmp_path)
    with pytest.raises(SelmaError, match="another architecture"):
        variant.load()


def test_fused_pipeline_export(tiny_models: dict[str, Path], experts: dict[str, Path], tmp_path: Path) -> None:
    from diffusers import DiffusionPipeline

    model = resolve_model(str(tiny_models["tiny-sd1"]))
    merge_experts(model, experts, tmp_path / "merged", fused_pipeline=tmp_path / "fused")
    with_lora = load_pipeline(model)
    with_lora.load_lora_weights(str(tmp_path / "merged"), weight_name=LORA)
    fused = DiffusionPipeline.from_pretrained(tmp_path / "fused", safety_checker=None)
    assert not any("lora" in name for name, _ in fused.unet.named_parameters())
    assert abs(_render(fused) - _render(with_lora)).max() < 1e-4


def _poison(path: Path) -> str:
    """Write NaN into the first float tensor of a safetensors file (its metadata kept); returns its name."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    name = sorted(k for k, v in tensors.items() if v.is_floating_point())[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(path), metadata=metadata)
    return name


def test_non_finite_weights_are_refused_wherever_they_are_read(
    tiny_models: dict[str, Path],
    experts: dict[str, Path],
    images: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    from selma.cli import main
    from selma.io import sha256_file
    from selma.recipe.train import MANIFEST

    source = str(tiny_models["tiny-sd1"])
    model = resolve_model(source)
    bad = tmp_path / "nan-expert"
    shutil.copytree(experts["count"], bad)
    tensor = _poison(bad / LORA_FILE)

    # merging: exit 2, one line naming the file and the tensor, nothing written
    argv = ["merge", "--model", source, "--experts", f"a={bad}", f"b={experts['color']}", "--out", str(tmp_path / "m")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"{bad / LORA_FILE}: tensor {tensor!r} holds NaN" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists()

    # generation with the LoRA as a variant
    shutil.copytree(bad, variant_dir(tmp_path / "work", model, "expert:count"))
    with pytest.raises(SelmaError, match="holds NaN or infinite values"):
        resolve_variant(source, "expert:count", workdir=tmp_path / "work").load()

    # resuming from a checkpoint a diverged run saved (its manifest matching the NaN file)
    run = tmp_path / "run"
    train_lora(model, [str(images)], run, SMALL, progress=False)
    checkpoint = run / "checkpoint-4"
    (weights,) = [p for p in checkpoint.rglob("*.safetensors") if p.parent == checkpoint]
    _poison(weights)
    manifest = json.loads((checkpoint / MANIFEST).read_text())
    manifest[weights.name] = sha256_file(weights)
    (checkpoint / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SelmaError, match=f"{weights.name}: tensor .* holds NaN"):
        train_lora(model, [str(images)], run, replace(SMALL, max_train_steps=6), resume="latest", progress=False)

    # a model whose UNet file holds an infinite value: refused when the pipeline or the component loads
    broken = tmp_path / "model"
    shutil.copytree(source, broken)
    (unet,) = (broken / "unet").glob("*.safetensors")
    _poison(unet)
    with pytest.raises(SelmaError, match=f"{broken / 'unet'}: tensor .* holds NaN"):
        load_pipeline(resolve_model(str(broken)))
