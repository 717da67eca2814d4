from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selma.metrics.vqa import NO_TRANSFORMERS_PORT, AnswerCache, VQAModel, normalize_vqa_answer, vqa_models

WORDS = ["yes", "no", "is", "there", "a", "cat", "red", "dog", "two", "?"]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BlipForQuestionAnswering with its processor and a local BERT vocabulary."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    root = tmp_path_factory.mktemp("blip")
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizer(str(root / "vocab.txt"))
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        encoder_hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        bos_token_id=2,
        sep_token_id=3,
        pad_token_id=0,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    torch.manual_seed(0)
    BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision)).save_pretrained(root)
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    ).save_pretrained(root)
    return root


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
