"""Mapping a free-form VQA answer onto a question's choices.

TIFA keeps an answer that is one of the choices and maps any other answer to the nearest choice
with SBERT ``all-mpnet-base-v2`` (``sbert``, TIFA's convention). DSG compares the raw answer with
its gold answer exactly (``exact``). ``normalized`` is an offline approximation of ``sbert``.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

from selma.errors import SelmaError
from selma.registry import Registry


class Matcher(Protocol):
    """Maps an answer to one of ``choices``, or ``None`` when it maps to none."""

    name: str

    def match(self, answer: str, choices: Sequence[str]) -> str | None:
        """The chosen choice for ``answer``."""
        ...

    def config(self) -> dict[str, Any]:
        """Settings recorded in a run's provenance."""
        ...


matchers: Registry[type] = Registry("answer matcher")


@matchers.register("exact")
class ExactMatcher:
    """The answer counts only if it is literally one of the choices (DSG's rule)."""

    name = "exact"

    def match(self, answer: str, choices: Sequence[str]) -> str | None:
        """``answer`` if it is a choice, else ``None``."""
        return answer if answer in choices else None

    def config(self) -> dict[str, Any]:
        """No settings."""
        return {"name": self.name}


_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
_ARTICLES = {"a", "an", "the"}
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and articles, spell numbers as digits (VQA-style normalisation)."""
    words = _PUNCT.sub(" ", text.lower()).split()
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words if w not in _ARTICLES)


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@matchers.register("normalized")
class NormalizedTextMatcher:
    """An offline approximation of TIFA's SBERT matcher (not TIFA's convention: results say so).

    A literal choice is taken; otherwise the normalised answer is compared with the normalised
    choices; a number is mapped to the numerically nearest numeric choice; anything else to the
    choice with the highest character similarity (difflib ratio). Ties go to the earlier choice.
    """

    name = "normalized"

    def match(self, answer: str, choices: Sequence[str]) -> str | None:
        """The nearest choice for ``answer``."""
        if answer in choices:
            return answer
        norm = normalize_answer(answer)
        norm_choices = [normalize_answer(c) for c in choices]
        if norm in norm_choices:
            return choices[norm_choices.index(norm)]
        value = _as_number(norm)
        numbers = [_as_number(c) for c in norm_choices]
        if value is not None and all(n is not None for n in numbers):
            distances = [abs(value - n) for n in numbers]  # type: ignore[operator]
            return choices[distances.index(min(distances))]
        ratios = [difflib.SequenceMatcher(None, norm, c).ratio() for c in norm_choices]
        return choices[ratios.index(max(ratios))]

    def config(self) -> dict[str, Any]:
        """No settings."""
        return {"name": self.name}


@matchers.register("sbert")
class SbertMatcher:
    """TIFA's official matcher (``tifascore/mc_sbert.py``): an answer that is literally a choice is
    kept; any other is mapped to the choice whose mean-pooled, L2-normalised embedding has the
    highest dot product with the answer's (the first on ties). The answer is embedded alone and
    the choices together as one padded batch, as the reference does.

    ``model`` is a local directory (or hub id) of ``sentence-transformers/all-mpnet-base-v2``;
    needs the ``models`` extra.
    """

    name = "sbert"
    DEFAULT_MODEL = "sentence-transformers/all-mpnet-base-v2"

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModel.from_pretrained(model).to(device).eval()
        except OSError:
            raise SelmaError(
                f"TIFA's answer matcher needs the SBERT model {model!r}, which could not be loaded: give a local "
                "copy of sentence-transformers/all-mpnet-base-v2 with --matcher-model PATH (or --matcher normalized, "
                "an offline approximation that is not TIFA's convention)"
            ) from None
        self.model_name, self.device = model, device
        self._answers = lru_cache(maxsize=65536)(self._embed_one)
        self._choices = lru_cache(maxsize=65536)(self._embed_many)

    def _embed(self, texts: Sequence[str]) -> Any:
        import torch

        batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.no_grad():
            hidden = self.model(**batch)[0]
        mask = batch["attention_mask"].unsqueeze(-1).expand(hidden.size()).float()
        pooled = torch.sum(hidden * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1).cpu()

    def _embed_one(self, text: str) -> Any:
        return self._embed([text])

    def _embed_many(self, texts: tuple[str, ...]) -> Any:
        return self._embed(texts)

    def match(self, answer: str, choices: Sequence[str]) -> str | None:
        """``answer`` if it is a choice, else the choice nearest to it."""
        if answer in choices:
            return answer
        import torch

        scores = torch.matmul(self._choices(tuple(choices)), self._answers(answer).T)
        return choices[int(torch.argmax(scores).item())]

    def config(self) -> dict[str, Any]:
        """The encoder used."""
        return {"name": self.name, "model": self.model_name}


def make_matcher(name: str, model: str | None = None) -> Matcher:
    """Instantiate the matcher registered as ``name`` (``model`` only for model-based matchers)."""
    cls = matchers.get(name)
    return cls(model) if model else cls()
