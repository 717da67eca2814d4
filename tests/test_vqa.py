from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selma.metrics.vqa import NO_TRANSFORMERS_PORT, AnswerCache, VQAModel, normalize_vqa_answer, vqa_models


def _images(n: int) -> list[Image.Image]:
    return [Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)) for i in range(n)]


def test_normalize_vqa_answer() -> None:
    assert normalize_vqa_answer(" Yes.") == "yes"
    assert normalize_vqa_answer("Two  red-dogs!") == "two red-dogs"


def test_registry_and_models_without_a_port() -> None:
    assert vqa_models.get("blip2-flant5-xl").prompt == "Question: {question} Answer:"
    assert vqa_models.get("instructblip-vicuna-7b").generate["num_beams"] == 5
    assert "no transformers port" in NO_TRANSFORMERS_PORT["mplug-large"]


def test_batched_answers_equal_one_at_a_time_and_are_cached(tiny_blip: Path, tmp_path: Path) -> None:
    images = _images(5)
    questions = ["is there a cat?", "is there a dog?", "is there a red cat?", "two dogs?", "is there a cat?"]
    shas = [f"img{i}" for i in range(5)]
    spec = vqa_models.get("blip")
    batched = VQAModel(spec, str(tiny_blip), batch_size=4)
    single = VQAModel(spec, str(tiny_blip), batch_size=1)
    answers = batched.answer(images, questions, shas)
    assert answers == single.answer(images, questions, shas)
    assert batched.calls == 2 and single.calls == 5
    assert all(a == normalize_vqa_answer(a) for a in answers)

    cache = AnswerCache(tmp_path / "answers.sqlite")
    first = VQAModel(spec, str(tiny_blip), batch_size=4, cache=cache)
    assert first.answer(images, questions, shas) == answers and first.calls == 2
    again = VQAModel(spec, str(tiny_blip), batch_size=4, cache=AnswerCache(tmp_path / "answers.sqlite"))
    assert again.answer(images, questions, shas) == answers and again.calls == 0
    changed = [*shas[:4], "another-image"]
    again.answer(images, questions, changed)
    assert again.calls == 1  # only the new (image, question) pair was asked


def test_vqascore_is_the_probability_of_yes(tiny_blip: Path) -> None:
    import torch

    from selma.metrics.vqascore import TEMPLATE, build_vqascore

    metric = build_vqascore({"vqa": "blip", "model": str(tiny_blip)})
    images, prompts = _images(3), ["a red cat", "two dogs", "a cat"]
    scores = metric.score(images, prompts)
    assert all(0 < s < 1 for s in scores)
    processor, model = metric.vqa.processor, metric.vqa.model
    yes = processor.tokenizer("yes", add_special_tokens=False).input_ids[0]
    for image, prompt, value in zip(images, prompts, scores, strict=True):
        inputs = processor(images=image, text=TEMPLATE.format(text=prompt), return_tensors="pt")
        with torch.no_grad():  # the decoder's first step, by hand: BOS, then the answer's first token
            vision = model.vision_model(pixel_values=inputs.pixel_values)[0]
            question = model.text_encoder(
                input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, encoder_hidden_states=vision
            )[0]
            bos = torch.tensor([[model.decoder_start_token_id]])
            logits = model.text_decoder(input_ids=bos, encoder_hidden_states=question).logits[0, -1]
        assert value == pytest.approx(torch.softmax(logits, -1)[yes].item(), abs=1e-5)


def test_llava_backend_chat_template_and_left_padding(tiny_llava: Path) -> None:
    import torch

    spec = vqa_models.get("llava-1.5-7b")
    batched, single = VQAModel(spec, str(tiny_llava), batch_size=3), VQAModel(spec, str(tiny_llava), batch_size=1)
    assert batched._prompt("is there a cat ?") == (
        "USER: <image> is there a cat ?\nAnswer the question using a single word or phrase. ASSISTANT:"
    )
    images = _images(3)
    questions = ["is there a cat ?", "is there a red dog ?", "two ?"]  # different lengths: padding matters
    shas = ["a", "b", "c"]
    assert batched.answer(images, questions, shas) == single.answer(images, questions, shas)
    probabilities = batched.first_token_probability(images, questions, "Yes")
    assert probabilities == pytest.approx(single.first_token_probability(images, questions, "Yes"), abs=1e-5)
    inputs = single.processor(images=images[1], text=single._prompt(questions[1]), return_tensors="pt")
    with torch.no_grad():
        logits = single.model(**inputs).logits[0, -1]
    yes = single.processor.tokenizer("Yes", add_special_tokens=False).input_ids[0]
    assert probabilities[1] == pytest.approx(torch.softmax(logits, -1)[yes].item(), abs=1e-5)


@pytest.mark.parametrize(("name", "instruct"), [("blip2-flant5-xl", False), ("instructblip-vicuna-7b", True)])
def test_blip2_and_instructblip_backends(tmp_path: Path, name: str, instruct: bool) -> None:
    from dataclasses import replace

    from selma.metrics.tiny import save_tiny_blip2

    root = save_tiny_blip2(tmp_path / name, instruct=instruct)
    spec = vqa_models.get(name)
    spec = replace(spec, generate={**spec.generate, "max_length": 40} if instruct else spec.generate)
    batched, single = VQAModel(spec, str(root), batch_size=3), VQAModel(spec, str(root), batch_size=1)
    assert batched.decoder_only  # these tiny ones decode with OPT: left padding, prompt stripped
    images, questions = _images(3), ["is there a cat ?", "is there a red dog ?", "two ?"]
    answers = batched.answer(images, questions, ["a", "b", "c"])
    assert answers == single.answer(images, questions, ["a", "b", "c"])
    prompts = [normalize_vqa_answer(batched._prompt(q)) for q in questions]
    assert not any(a.startswith(p) for a, p in zip(answers, prompts, strict=True))  # the prompt is not echoed
    assert batched.calls == 1 and single.calls == 3
