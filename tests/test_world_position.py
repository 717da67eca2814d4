"""The world's position signals (coordinate UNet, bidirectional text encoder), warm starts, wrong-label caption
noise and diffusers' timestep bias."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from selma.errors import SelmaError
from selma.models import ResolvedModel, load_component, load_pipeline, spec_from_directory
from selma.world.model import (
    ARCHITECTURES,
    BidirectionalCLIPTextModel,
    CoordUNet2DConditionModel,
    build_world_pipeline,
)
from selma.world.scenes import HELD_OUT, OPPOSITE, CaptionNoise, mislabeled, noisy_caption, parse_caption, sample_scene
from selma.world.train_model import timestep_weights, warm_start

PROMPT = "a green circle left of a yellow square"


def _image(pipe: object) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    out = pipe(PROMPT, num_inference_steps=3, generator=generator, output_type="pt")  # type: ignore[operator]
    return out.images


def test_coordinate_unet_warm_started_with_zeros_computes_the_source_exactly(tmp_path: Path) -> None:
    pipe = build_world_pipeline(ARCHITECTURES["weak"], 0)
    pipe.save_pretrained(tmp_path / "source")
    coord = build_world_pipeline(
        ARCHITECTURES["weak"].__class__(**{**ARCHITECTURES["weak"].__dict__, "coords": True}), 1
    )
    assert isinstance(coord.unet, CoordUNet2DConditionModel) and coord.unet.conv_in.in_channels == 14
    source = warm_start(coord, str(tmp_path / "source"))
    assert set(source["sha256"]) >= {"unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors"}
    assert torch.equal(_image(coord), _image(pipe))
    # random coordinate weights: the same image weights, another function
    warm_start(coord, str(tmp_path / "source"), coord_std=1.0, seed=3)
    assert coord.unet.conv_in.weight[:, 12:].abs().sum() > 0
    assert torch.equal(coord.unet.conv_in.weight[:, :12], pipe.unet.conv_in.weight)
    # saved and loaded back as the same classes, through the pipeline and component by component
    coord.save_pretrained(tmp_path / "coord")
    model = ResolvedModel(spec_from_directory(tmp_path / "coord"), str(tmp_path / "coord"))
    again = load_pipeline(model)
    assert type(again.unet) is CoordUNet2DConditionModel
    assert torch.equal(_image(again), _image(coord))
    from diffusers import UNet2DConditionModel

    unet = load_component(model, "unet", UNet2DConditionModel)
    assert type(unet) is CoordUNet2DConditionModel
    assert torch.equal(unet.conv_in.weight, coord.unet.conv_in.weight)


def test_warm_start_refuses_a_source_of_other_sizes(tmp_path: Path) -> None:
    build_world_pipeline(ARCHITECTURES["weak"], 0).save_pretrained(tmp_path / "weak")
    with pytest.raises(SelmaError, match="cannot warm-start from"):
        warm_start(build_world_pipeline(ARCHITECTURES["base"], 0), str(tmp_path / "weak"))


def test_bidirectional_text_encoder_sees_the_whole_caption_and_reloads(tmp_path: Path) -> None:
    arch = ARCHITECTURES["weak"].__class__(**{**ARCHITECTURES["weak"].__dict__, "bidirectional_text": True})
    pipe = build_world_pipeline(arch, 0)
    assert isinstance(pipe.text_encoder, BidirectionalCLIPTextModel)
    ids = pipe.tokenizer(
        [PROMPT, PROMPT.replace("left of", "right of")], padding="max_length", max_length=16, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        hidden = pipe.text_encoder(ids)[0]
    # "green" (token 2) comes before the relation: a causal encoder could not tell the captions apart there
    assert not torch.allclose(hidden[0, 2], hidden[1, 2])
    pipe.save_pretrained(tmp_path / "p")
    model = ResolvedModel(spec_from_directory(tmp_path / "p"), str(tmp_path / "p"))
    again = load_pipeline(model)
    assert type(again.text_encoder) is BidirectionalCLIPTextModel
    with torch.no_grad():
        assert torch.equal(again.text_encoder(ids)[0], hidden)
    from transformers import CLIPTextModel

    assert type(load_component(model, "text_encoder", CLIPTextModel)) is BidirectionalCLIPTextModel


def test_wrong_label_noise_swaps_colours_shifts_counts_and_flips_relations() -> None:
    rng = random.Random(0)
    always = CaptionNoise(color_swapped=1.0, count_off_by_one=1.0, relation_flipped=1.0)
    for skill in ("binding", "spatial", "count", "count_binding"):
        for _ in range(200):
            scene = sample_scene(skill, rng)
            wrong = parse_caption(noisy_caption(scene, always, rng))
            truth = parse_caption(scene.caption())
            assert all((t.color, t.shape) not in HELD_OUT for t, _ in wrong.items)  # never a held-out pair
            if scene.relation:
                assert wrong.relation == OPPOSITE[scene.relation]
            counts = [n for _, n in wrong.items]
            assert all(1 <= n <= 4 for n in counts)
            if skill == "count":
                ((_, n),) = scene.items
                ((_, m),) = wrong.items
                assert abs(n - m) == 1 and 2 <= m <= 4
            blocked = False
            if len(scene.items) == 2:
                (a, _), (b, _) = scene.items
                swapped = {(b.color, a.shape), (a.color, b.shape)}
                blocked = bool(swapped & HELD_OUT)
                if not blocked:
                    assert {(t.color, t.shape) for t, _ in wrong.items} == swapped
            if skill != "binding" or not blocked:  # a binding scene has nothing else to get wrong
                assert wrong != truth


def test_wrong_label_rates_are_rates_and_leave_other_noise_draws_alone() -> None:
    rng = random.Random(1)
    scenes = [sample_scene("spatial", rng) for _ in range(2000)]
    half = CaptionNoise(relation_flipped=0.3)
    flipped = sum(mislabeled(s, half, rng).relation != s.relation for s in scenes) / len(scenes)
    assert 0.26 < flipped < 0.34
    # rates that are not set draw nothing: omission noise alone gives the captions it gave before
    omit = CaptionNoise(color_dropped=0.5)
    a = [noisy_caption(s, omit, random.Random(i)) for i, s in enumerate(scenes[:50])]
    b = [
        noisy_caption(s, CaptionNoise(color_dropped=0.5, color_swapped=0.0), random.Random(i))
        for i, s in enumerate(scenes[:50])
    ]
    assert a == b


def test_timestep_bias_weights_the_noisiest_portion_as_diffusers_later_strategy() -> None:
    weights = timestep_weights(1000, 3.0, 0.25)
    assert weights.shape == (1000,) and torch.isclose(weights.sum(), torch.tensor(1.0))
    assert torch.isclose(weights[999] / weights[0], torch.tensor(3.0)) and weights[749] == weights[0]
    assert torch.equal(timestep_weights(1000, 1.0, 0.25), torch.full((1000,), 1e-3))
    with pytest.raises(SelmaError, match="timestep bias"):
        timestep_weights(1000, 0.0, 0.25)


def test_two_pass_text_encoder_starts_as_the_causal_one_and_reads_the_words_backwards(tmp_path: Path) -> None:
    from selma.world.model import TwoPassCLIPTextModel, _reversed_words

    causal = build_world_pipeline(ARCHITECTURES["base"], 0)
    causal.save_pretrained(tmp_path / "source")
    pipe = build_world_pipeline(ARCHITECTURES["base-twopass"], 1)
    assert isinstance(pipe.text_encoder, TwoPassCLIPTextModel)
    warm_start(pipe, str(tmp_path / "source"))
    ids = pipe.tokenizer([PROMPT, "a red square"], padding="max_length", max_length=16, return_tensors="pt").input_ids
    order = _reversed_words(ids, pipe.text_encoder.config.eos_token_id)
    words = pipe.tokenizer.convert_ids_to_tokens(ids.gather(1, order)[0])
    assert words[:4] == ["<|startoftext|>", "square</w>", "yellow</w>", "a</w>"] and words[9] == "<|endoftext|>"
    assert torch.equal(order.gather(1, order), torch.arange(16).expand(2, 16))  # an involution
    with torch.no_grad():
        assert torch.equal(pipe.text_encoder(ids)[0], causal.text_encoder(ids)[0])  # zero projection: causal
        pipe.text_encoder.backward_projection.weight.fill_(0.01)
        hidden = pipe.text_encoder(ids)[0]
    assert not torch.equal(hidden, causal.text_encoder(ids)[0])
    pipe.save_pretrained(tmp_path / "p")
    again = load_pipeline(ResolvedModel(spec_from_directory(tmp_path / "p"), str(tmp_path / "p")))
    assert type(again.text_encoder) is TwoPassCLIPTextModel
    with torch.no_grad():
        assert torch.equal(again.text_encoder(ids)[0], hidden)


def test_canonical_spatial_layouts_satisfy_their_relation_on_the_relations_axis() -> None:
    from selma.world.evaluator import answer, detect
    from selma.world.scenes import render
    from selma.world.suite import scene_questions

    rng = random.Random(2)
    for _ in range(100):
        scene = sample_scene("spatial", rng)
        objects = detect(render(scene, rng, spatial_jitter=3))
        assert all(answer(objects, q.text) == "yes" for q in scene_questions("p", scene))
        (a, _), (b, _) = scene.items
        (first,) = [o for o in objects if (o.color, o.shape) == (a.color, a.shape)]
        (second,) = [o for o in objects if (o.color, o.shape) == (b.color, b.shape)]
        along = "x" if scene.relation in ("left of", "right of") else "y"
        across = "y" if along == "x" else "x"
        assert abs(getattr(first, along) - getattr(second, along)) >= 10
        assert abs(getattr(first, across) - 16) <= 4.5 and abs(getattr(second, across) - 16) <= 4.5
    with pytest.raises(ValueError, match="spatial_jitter"):
        render(sample_scene("spatial", rng), rng, spatial_jitter=4)


def test_noise_reaches_only_the_noise_skills() -> None:
    from selma.world.train_model import training_batch

    noise = CaptionNoise(color_swapped=1.0, count_off_by_one=1.0)
    batch = training_batch(0, 0, 64, noise, (0.0, 0.25, 0.25, 0.25, 0.25), ("binding",))
    for scene, _, caption in batch:
        if scene.skill == "binding":
            (a, _), (b, _) = scene.items
            blocked = {(b.color, a.shape), (a.color, b.shape)} & HELD_OUT
            assert caption != scene.caption() or blocked
        else:
            assert caption == scene.caption()
