"""LLM backends: a local transformers causal LM, any OpenAI-compatible server, and an offline writer."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Protocol

from selma.errors import SelmaError
from selma.registry import Registry


class Backend(Protocol):
    """Completes requests; a seed makes sampling repeatable where the backend allows it."""

    def complete_many(self, prompts: list[str], *, seeds: list[int]) -> list[str]:
        """The completions of ``prompts`` (one batch, as SELMA sends its 5 requests), in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """Settings recorded in the output's provenance."""
        ...


# SELMA's decoding: gpt-3.5-turbo-instruct with temperature 1.0, top_p 1.0, max_tokens 3072
SELMA_DECODING = {"max_tokens": 3072, "temperature": 1.0, "top_p": 1.0}


@dataclass(frozen=True)
class BackendOptions:
    """What a user can set for any backend (the command line's and a study's ``datagen`` settings)."""

    llm: str | None = None
    """The model: a local path or hub id (transformers), a model name (openai)."""
    base_url: str | None = None
    """An OpenAI-compatible server's URL (vLLM, llama.cpp, Ollama)."""
    completions: bool = False
    """Use the legacy completions endpoint (as SELMA did), not chat."""
    max_tokens: int = SELMA_DECODING["max_tokens"]
    device: str = "cpu"

    def need_llm(self, backend: str, what: str) -> str:
        """The LLM named, or an error saying how to name one."""
        if not self.llm:
            raise SelmaError(f"the {backend} backend needs an LLM: --llm {what}")
        return self.llm


class OneAtATime:
    """Batches by completing each prompt in turn (for backends without a batch call)."""

    @classmethod
    def from_options(cls, options: BackendOptions) -> Any:
        """The backend built from the user's settings (a backend without settings ignores them)."""
        return cls()

    def complete(self, prompt: str, *, seed: int) -> str:
        """The completion of one prompt."""
        raise NotImplementedError

    def complete_many(self, prompts: list[str], *, seeds: list[int]) -> list[str]:
        """The completions of ``prompts``, one call each."""
        return [self.complete(prompt, seed=seed) for prompt, seed in zip(prompts, seeds, strict=True)]


backends: Registry[type] = Registry("LLM backend")
"""LLM backends by name: classes with ``from_options``, ``complete_many`` and ``describe``."""


@backends.register("transformers")
class TransformersBackend(OneAtATime):
    """A local causal LM (directory or hub id); the chat template is used when the tokenizer has one."""

    def __init__(
        self,
        model: str,
        *,
        max_new_tokens: int = SELMA_DECODING["max_tokens"],
        temperature: float = SELMA_DECODING["temperature"],
        top_p: float = SELMA_DECODING["top_p"],
        device: str = "cpu",
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model).to(device).eval()
        except OSError as exc:
            raise SelmaError(f"cannot load the LLM {model!r}: {exc}") from None
        self.name, self.device = model, device
        self.settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}

    @classmethod
    def from_options(cls, options: BackendOptions) -> TransformersBackend:
        """A local LM from ``--llm PATH_OR_HUB_ID``."""
        return cls(
            options.need_llm("transformers", "PATH_OR_HUB_ID"),
            max_new_tokens=options.max_tokens,
            device=options.device,
        )

    def complete(self, prompt: str, *, seed: int) -> str:
        """Sample a completion (temperature and top-p as the paper's GPT-3.5 settings)."""
        import torch

        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
        else:
            text = prompt
        inputs = self.tokenizer(text, return_tensors="pt").to(self.device)
        torch.manual_seed(seed)
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                do_sample=True,
                max_new_tokens=self.settings["max_new_tokens"],
                temperature=self.settings["temperature"],
                top_p=self.settings["top_p"],
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        return self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    def describe(self) -> dict[str, Any]:
        """The model and sampling settings."""
        return {"backend": "transformers", "model": self.name, **self.settings}


@backends.register("openai")
class OpenAIBackend(OneAtATime):
    """Any server speaking the OpenAI API (OpenAI, vLLM, llama.cpp, Ollama) via the ``openai`` client.

    ``chat=False`` uses the legacy completions endpoint as SELMA did with gpt-3.5-turbo-instruct:
    a round's requests go in one call (``prompt=[...]``, ``n=1``); a chat model gets one call each.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        chat: bool = True,
        max_tokens: int = SELMA_DECODING["max_tokens"],
        temperature: float = SELMA_DECODING["temperature"],
        top_p: float = SELMA_DECODING["top_p"],
    ) -> None:
        import os

        from openai import OpenAI

        self.client = OpenAI(base_url=base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "none")
        self.model, self.base_url, self.chat = model, base_url, chat
        self.settings = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p}

    @classmethod
    def from_options(cls, options: BackendOptions) -> OpenAIBackend:
        """A served model from ``--llm MODEL_NAME`` (and ``--base-url`` for a local server)."""
        llm = options.need_llm("openai", "MODEL_NAME (and --base-url for a local server)")
        return cls(llm, base_url=options.base_url, chat=not options.completions, max_tokens=options.max_tokens)

    def complete(self, prompt: str, *, seed: int) -> str:
        """One completion; the seed is passed on (servers that support it sample repeatably)."""
        import openai

        try:
            if self.chat:
                response = self.client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}], seed=seed, **self.settings
                )
                return response.choices[0].message.content or ""
            response = self.client.completions.create(model=self.model, prompt=prompt, seed=seed, **self.settings)
            return response.choices[0].text
        except openai.OpenAIError as exc:
            raise SelmaError(f"LLM server {self.base_url or 'api.openai.com'}: {exc}") from None

    def complete_many(self, prompts: list[str], *, seeds: list[int]) -> list[str]:
        """One completions call for all ``prompts`` (SELMA's batch); chat models one call each."""
        if self.chat:
            return super().complete_many(prompts, seeds=seeds)
        import openai

        try:
            response = self.client.completions.create(
                model=self.model, prompt=prompts, n=1, seed=seeds[0], **self.settings
            )
        except openai.OpenAIError as exc:
            raise SelmaError(f"LLM server {self.base_url or 'api.openai.com'}: {exc}") from None
        return [choice.text for choice in sorted(response.choices, key=lambda c: c.index)]

    def describe(self) -> dict[str, Any]:
        """The server, model and sampling settings."""
        return {"backend": "openai", "model": self.model, "base_url": self.base_url, "chat": self.chat, **self.settings}


_LEXICON = {
    "color": "red blue green yellow white black brown orange purple pink grey silver golden".split(),
    "count": "two three".split(),
    "object": (
        "chair table lamp bicycle umbrella guitar book clock vase bottle cup bowl kite suitcase backpack "
        "teapot candle mirror bench ladder basket pillow"
    ).split(),
    "animal": "dog cat horse cow sheep bird duck rabbit fox bear elephant giraffe owl turtle penguin".split(),
    "place": "kitchen beach park garden street forest desert library classroom harbor meadow rooftop".split(),
}
_CLASS_OF = {word: cls for cls, words in _LEXICON.items() for word in words}
_WORD = re.compile(r"[A-Za-z]+")


@backends.register("offline")
class OfflineBackend(OneAtATime):
    """A built-in, deterministic stand-in for an LLM, for offline demos and tests.

    It continues the numbered list by rewriting the in-context examples: every colour, count,
    object, animal and place word is replaced by another of its class, and a short clause is added.
    It is no language model: use it to exercise the pipeline, not to make training data.
    """

    def __init__(self, n_lines: int = 8) -> None:
        self.n_lines = n_lines

    def complete(self, prompt: str, *, seed: int) -> str:
        """Numbered rewrites of the examples found in ``prompt``."""
        rng = random.Random(seed)
        examples = re.findall(r"^\d+\.\s*(.+)$", prompt.split("examples:")[-1], flags=re.MULTILINE)
        if not examples:
            return ""
        first = len(examples) + 1
        lines = []
        for k in range(self.n_lines):
            text = _WORD.sub(lambda m: self._swap(m.group(0), rng), rng.choice(examples))
            clause = f"{rng.choice(['next to', 'behind', 'in front of', 'near'])} a {rng.choice(_LEXICON['color'])} "
            text = f"{text.rstrip('.')} {clause}{rng.choice(_LEXICON['object'])}."
            lines.append(f"{first + k}. {text}")
        return "\n".join(lines)

    @staticmethod
    def _swap(word: str, rng: random.Random) -> str:
        cls = _CLASS_OF.get(word.lower())
        if cls is None:
            return word
        new = rng.choice(_LEXICON[cls])
        return new.capitalize() if word[0].isupper() else new

    def describe(self) -> dict[str, Any]:
        """The writer and its setting."""
        return {"backend": "offline", "n_lines": self.n_lines}


def make_backend(name: str, options: BackendOptions | None = None) -> Backend:
    """The LLM backend registered as ``name`` (``selma-bench datagen --backend``), built from ``options``."""
    return backends.get(name).from_options(options or BackendOptions())
