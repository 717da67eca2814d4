from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from selma.harness.scoring.matchers import ExactMatcher, NormalizedTextMatcher, make_matcher, normalize_answer
from selma.stats import bootstrap_mean, paired_bootstrap

NUMBERS = ["1", "2", "3", "4"]
PLACES = ["beach", "park", "forest", "mountain"]


def test_exact_matcher_is_dsgs_literal_yes() -> None:
    m = ExactMatcher()
    assert m.match("yes", ["yes", "no"]) == "yes"
    assert m.match("Yes", ["yes", "no"]) is None
    assert m.match("unsuitable", ["yes", "no"]) is None


@pytest.mark.parametrize(
    ("answer", "choices", "expected"),
    [
        ("surfer", ["surfer", "swimmer", "diver", "skier"], "surfer"),
        ("The Beach.", PLACES, "beach"),
        ("two", NUMBERS, "2"),
        ("0", NUMBERS, "1"),  # TIFA's sample maps "0" to "1" too
        ("7", NUMBERS, "4"),
        ("a forested area", PLACES, "forest"),
        ("Yes", ["yes", "no"], "yes"),
    ],
)
def test_normalized_matcher(answer: str, choices: list[str], expected: str) -> None:
    assert NormalizedTextMatcher().match(answer, choices) == expected


def test_normalize_answer() -> None:
    assert normalize_answer("The TWO dogs!") == "2 dogs"


def test_unknown_matcher_lists_choices() -> None:
    with pytest.raises(Exception, match="exact, normalized, sbert"):
        make_matcher("bleu")


def test_sbert_matcher_equals_tifas_mc_sbert_on_a_tiny_random_encoder(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    import torch

    words = ["surfer", "swimmer", "diver", "skier", "a", "man", "on", "board", "scuba", "deep", "sea"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    tokenizer = transformers.BertTokenizer(str(vocab))
    config = transformers.BertConfig(
        vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    transformers.set_seed(0)
    model = transformers.BertModel(config).eval()
    model.save_pretrained(tmp_path / "sbert")
    tokenizer.save_pretrained(tmp_path / "sbert")
    matcher = make_matcher("sbert", str(tmp_path / "sbert"))

    def official(answer: str, choices: list[str]) -> str:  # tifascore/mc_sbert.py + vqa_models.py
        if answer in choices:
            return answer

        def embed(sentences: list[str]) -> torch.Tensor:
            encoded = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                output = model(**encoded)
            mask = encoded["attention_mask"].unsqueeze(-1).expand(output[0].size()).float()
            pooled = torch.sum(output[0] * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

        return choices[torch.argmax(torch.matmul(embed(choices), embed([answer]).T)).item()]

    choices = ["surfer", "swimmer", "scuba diver", "deep sea diver"]  # different lengths: padded together
    for answer in ["skier", "a man on board", "diver", "sea", "man", "surfer", "SWIMMER"]:
        assert matcher.match(answer, choices) == official(answer, choices)
    assert matcher.match("surfer", choices) == "surfer"  # a literal choice never reaches the model
    assert matcher.config() == {"name": "sbert", "model": str(tmp_path / "sbert")}


def test_bootstrap_interval_contains_the_mean_and_is_seeded() -> None:
    values = np.random.default_rng(0).uniform(0, 100, size=300)
    a = bootstrap_mean(values, seed=1)
    assert a.mean == pytest.approx(values.mean())
    assert a.low < a.mean < a.high
    # 95 % interval of a mean: about ±1.96 standard errors
    se = values.std(ddof=1) / np.sqrt(values.size)
    assert a.high - a.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_mean(values, seed=1) == a and bootstrap_mean(values, seed=2) != a


def test_bootstrap_degenerate_inputs() -> None:
    assert bootstrap_mean([50.0] * 10, seed=0).as_list() == [50.0, 50.0]
    assert bootstrap_mean([20.0], seed=0).as_list() == [20.0, 20.0]


def test_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 100, size=200)
    same = paired_bootstrap(a, a, seed=0)
    assert same.interval.mean == 0 and same.p_value == 1.0
    better = paired_bootstrap(a, a + 5 + rng.normal(0, 1, size=200), seed=0)
    assert better.interval.low > 4 and better.p_value < 0.01 and better.n == 200
    noise = paired_bootstrap(a, a + rng.normal(0, 10, size=200), seed=0)
    assert noise.interval.low < 0 < noise.interval.high and noise.p_value > 0.05
