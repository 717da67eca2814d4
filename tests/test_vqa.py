from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selma.errors import SelmaError
from selma.harness.metrics.vqa import (
    NO_TRANSFORMERS_PORT,
    POSTPROCESS,
    AnswerCache,
    VQAModel,
    expand_to_square,
    vqa_models,
    vqa_spec,
)


def _images(n: int) -> list[Image.Image]:
    return [Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)) for i in range(n)]


def test_registry_carries_each_reference_prompt_and_decoding() -> None:
    tifa, selmas = vqa_models.get("blip2-flant5-xl"), vqa_models.get("blip2-flant5-xl-selma")
    q, choices = "what color is the board?", ["white", "black", "red", "blue"]
    # TIFA's tifascore/vqa_models.py (BLIP2.vqa) and SELMA's change of it, as f-strings
    assert tifa.format(q, choices) == (
        f"Answer the multiple-choice question. Question: {q} Choices: {', '.join(choices)} Answer:"
    )
    assert tifa.format(q, None) == f"Answer the question. Question: {q} Answer:"
    assert selmas.format(q, choices) == f"Question: {q} Options: {', '.join(choices)} Answer:"
    assert selmas.format("is this a surfer?", ["yes", "no"]) == "Question: is this a surfer? Options: yes, no Answer:"
    assert selmas.format(q, None) == f"Question: {q} Answer:"
    lavis = {"do_sample": False, "num_beams": 5, "max_new_tokens": 30, "min_length": 1}
    assert tifa.generate == selmas.generate == lavis and tifa.postprocess == "none"
    dsg = vqa_models.get("instructblip-vicuna-7b")  # DSG's dsg/vqa_utils.py InstructBLIP.vqa
    assert dsg.format(q, choices) == q and dsg.postprocess == "strip"
    assert dsg.generate == {
        "do_sample": False,
        "num_beams": 5,
        "max_length": 256,
        "min_length": 1,
        "repetition_penalty": 1.5,
    }
    assert vqa_models.get("blip").generate == {"max_length": 50}  # TIFA's BLIP wrapper
    assert "no transformers port" in NO_TRANSFORMERS_PORT["mplug-large"]
    with pytest.raises(SelmaError, match="mplug-large.*no transformers port"):
        vqa_spec("mplug-large")


def test_answers_are_post_processed_only_as_the_reference_wrapper_does() -> None:
    assert POSTPROCESS["none"](" Yes.") == " Yes."
    assert POSTPROCESS["strip"](" yes \n") == "yes"
    assert POSTPROCESS["lower-strip-punct"](" Yes.") == "yes"  # DSG's GPT-4o wrapper


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

    cache = AnswerCache(tmp_path / "answers.sqlite")
    first = VQAModel(spec, str(tiny_blip), batch_size=4, cache=cache)
    assert first.answer(images, questions, shas) == answers and first.calls == 2
    again = VQAModel(spec, str(tiny_blip), batch_size=4, cache=AnswerCache(tmp_path / "answers.sqlite"))
    assert again.answer(images, questions, shas) == answers and again.calls == 0
    changed = [*shas[:4], "another-image"]
    again.answer(images, questions, changed)
    assert again.calls == 1  # only the new (image, question) pair was asked


def test_vqascore_is_t2v_metrics_likelihood_of_yes_and_eos(tiny_llava: Path) -> None:
    import torch

    from selma.harness.metrics.vqascore import QUESTION, SYSTEM_MSG, build_vqascore

    metric = build_vqascore({"vqa": "llava-1.5-7b", "model": str(tiny_llava)})
    images = [_images(1)[0], _images(2)[1].resize((32, 20)), _images(3)[2].resize((18, 32))]
    prompts = ["a red cat", "two dogs", "a cat"]  # different lengths: right padding in one batch
    scores = metric.score(images, prompts)
    assert all(0 < s < 1 for s in scores)
    processor, model = metric.vqa.processor, metric.vqa.model
    tokenizer = processor.tokenizer
    yes, eos = tokenizer("Yes", add_special_tokens=False).input_ids[0], tokenizer.eos_token_id
    background = tuple(int(x * 255) for x in processor.image_processor.image_mean)
    for image, prompt, value in zip(images, prompts, scores, strict=True):
        # t2v_metrics' formula by hand: exp(-mean CE) over [Yes, </s>] = sqrt(P(Yes | q) * P(</s> | q, Yes))
        question = f"{SYSTEM_MSG} USER: <image>\n{QUESTION.format(text=prompt)} ASSISTANT:"
        square = expand_to_square(image, background)
        with torch.no_grad():
            first = model(**processor(images=square, text=question, return_tensors="pt")).logits[0, -1]
            second = model(**processor(images=square, text=question + " Yes", return_tensors="pt")).logits[0, -1]
        p_yes, p_eos = torch.softmax(first, -1)[yes].item(), torch.softmax(second, -1)[eos].item()
        assert value == pytest.approx((p_yes * p_eos) ** 0.5, rel=1e-4)
    one_by_one = [metric.score([im], [p])[0] for im, p in zip(images, prompts, strict=True)]
    assert scores == pytest.approx(one_by_one, rel=1e-5)


def test_expand_to_square_pads_with_the_mean_colour() -> None:
    image = Image.new("RGB", (4, 2), (255, 0, 0))
    square = expand_to_square(image, (122, 116, 104))
    assert square.size == (4, 4)
    assert square.getpixel((0, 0)) == (122, 116, 104) and square.getpixel((0, 1)) == (255, 0, 0)
    assert square.getpixel((0, 3)) == (122, 116, 104) and expand_to_square(square, (0, 0, 0)) is square


def test_vqascore_needs_a_llava_model(tiny_blip: Path) -> None:
    from selma.harness.metrics.vqascore import build_vqascore

    with pytest.raises(SelmaError, match="ported for LLaVA-1.5 models only"):
        build_vqascore({"vqa": "blip", "model": str(tiny_blip)})


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("name", "instruct"), [("blip2-flant5-xl", False), ("instructblip-vicuna-7b", True)])
def test_blip2_and_instructblip_backends(tmp_path: Path, name: str, instruct: bool, seed: int) -> None:
    """A batch decodes as its prompts alone: its pads go before the image tokens (the processors put them
    after), which changed InstructBLIP's answers for every seed tried."""
    from dataclasses import replace

    from selma.harness.metrics.tiny import save_tiny_blip2

    root = save_tiny_blip2(tmp_path / name, instruct=instruct, seed=seed)
    spec = vqa_models.get(name)
    spec = replace(spec, generate={**spec.generate, "max_length": 40} if instruct else spec.generate)
    batched, single = VQAModel(spec, str(root), batch_size=3), VQAModel(spec, str(root), batch_size=1)
    assert batched.decoder_only  # these tiny ones decode with OPT: left padding, prompt stripped
    images, questions = _images(3), ["is there a cat ?", "is there a red dog ?", "two ?"]
    answers = batched.answer(images, questions, ["a", "b", "c"])
    assert answers == single.answer(images, questions, ["a", "b", "c"])
    prompts = [batched.prompt(q) for q in questions]
    assert not any(a.startswith(p) for a, p in zip(answers, prompts, strict=True))  # the prompt is not echoed
    assert batched.calls == 1 and single.calls == 3
