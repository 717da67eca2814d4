"""VQA answering on transformers, batched and cached, for TIFA and DSG.

Backends by family, each with its reference prompt and decoding: ``blip`` (BLIP VQA), ``blip2``
(BLIP-2 FlanT5, SELMA's TIFA model: "Question: {q} Answer:"), ``instructblip`` (DSG's open
alternative: beam 5, max length 256, repetition penalty 1.5), ``llava`` (LLaVA-1.5 through its
chat template). mPLUG-large, SELMA's DSG model, has no transformers port. Answers are
normalised (lower case, no trailing punctuation) and cached by (image sha256, question, model,
settings), so a re-run answers nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selma.metrics.base import batched
from selma.registry import Registry

_PUNCT = str.maketrans("", "", string.punctuation.replace("'", "").replace("-", ""))


def normalize_vqa_answer(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed."""
    return " ".join(text.lower().translate(_PUNCT).split())


@dataclass(frozen=True)
class VQASpec:
    """A VQA model family: default checkpoint, prompt template and generation settings."""

    name: str
    family: str
    checkpoint: str
    prompt: str = "{question}"
    generate: dict[str, Any] = field(default_factory=dict)
    notes: str = ""


vqa_models: Registry[VQASpec] = Registry("VQA model")
for _spec in (
    VQASpec("blip", "blip", "Salesforce/blip-vqa-base", generate={"max_new_tokens": 10}),
    VQASpec("blip-large", "blip", "Salesforce/blip-vqa-capfilt-large", generate={"max_new_tokens": 10}),
    VQASpec(
        "blip2-flant5-xl",
        "blip2",
        "Salesforce/blip2-flan-t5-xl",
        "Question: {question} Answer:",
        {"max_new_tokens": 10},
        "SELMA's TIFA answerer",
    ),
    VQASpec(
        "instructblip-vicuna-7b",
        "instructblip",
        "Salesforce/instructblip-vicuna-7b",
        "{question}",
        {"num_beams": 5, "max_length": 256, "min_length": 1, "repetition_penalty": 1.5, "length_penalty": 1.0},
        "DSG's open VQA model (DSG's generation settings)",
    ),
    VQASpec(
        "llava-1.5-7b",
        "llava",
        "llava-hf/llava-1.5-7b-hf",
        "{question}\nAnswer the question using a single word or phrase.",
        {"max_new_tokens": 10},
        "LLaVA-1.5's short-answer VQA prompt",
    ),
):
    vqa_models.add(_spec.name, _spec)
vqa_models.add("shapes-exact", VQASpec("shapes-exact", "shapes", "", notes="the shapes world's exact evaluator"))

NO_TRANSFORMERS_PORT = {
    "mplug-large": "SELMA's DSG answerer (ModelScope damo/mplug_visual-question-answering_coco_large_en) has no "
    "transformers port; answer with it elsewhere and re-score its answers with `selma-bench rescore`",
}


class AnswerCache:
    """A sqlite table of answers keyed by (image sha256, question, model key)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")

    @staticmethod
    def key(image_sha: str, question: str, model_key: str) -> str:
        """The cache key of one (image, question) for one model and settings."""
        return hashlib.sha256(json.dumps([image_sha, question, model_key]).encode()).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        """The cached answers among ``keys``."""
        found: dict[str, str] = {}
        for chunk in batched(list(keys), 500):
            marks = ",".join("?" * len(chunk))
            found.update(self.db.execute(f"SELECT key, answer FROM answers WHERE key IN ({marks})", chunk).fetchall())
        return found

    def put_many(self, items: dict[str, str]) -> None:
        """Store answers (one transaction)."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?)", list(items.items()))


class VQAModel:
    """Answers questions about images with one transformers VQA model, in batches."""

    def __init__(
        self,
        spec: VQASpec,
        checkpoint: str | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 8,
        cache: AnswerCache | None = None,
    ) -> None:
        from transformers import AutoProcessor

        self.spec, self.checkpoint = spec, checkpoint or spec.checkpoint
        self.device, self.batch_size, self.cache = device, batch_size, cache
        self.processor = AutoProcessor.from_pretrained(self.checkpoint)
        self.model = self._model_class().from_pretrained(self.checkpoint).to(device).eval()
        # LLaVA, and BLIP-2/InstructBLIP on OPT or Vicuna, decode with a decoder-only LM: pad batches on the left,
        # and the generated sequence starts with the prompt
        self.decoder_only = spec.family == "llava" or bool(
            getattr(self.model.config, "use_decoder_only_language_model", False)
        )
        if self.decoder_only:
            self.processor.tokenizer.padding_side = "left"
        self.model_key = json.dumps({"checkpoint": self.checkpoint, **asdict(spec)}, sort_keys=True, default=str)
        self.calls = 0  # model batches run (the cache makes re-runs free)

    def _model_class(self) -> Any:
        import transformers

        return {
            "blip": transformers.BlipForQuestionAnswering,
            "blip2": transformers.Blip2ForConditionalGeneration,
            "instructblip": transformers.InstructBlipForConditionalGeneration,
            "llava": transformers.LlavaForConditionalGeneration,
        }[self.spec.family]

    def _prompt(self, question: str) -> str:
        text = self.spec.prompt.format(question=question)
        if self.spec.family == "llava":
            conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        return text

    def _generate(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        import torch

        prompts = [self._prompt(q) for q in questions]
        inputs = self.processor(images=list(images), text=prompts, return_tensors="pt", padding=True).to(self.device)
        with torch.no_grad():
            output = self.model.generate(**inputs, **self.spec.generate)
        if self.decoder_only:
            output = output[:, inputs["input_ids"].shape[1] :]
        self.calls += 1
        return [normalize_vqa_answer(t) for t in self.processor.batch_decode(output, skip_special_tokens=True)]

    def first_token_probability(self, images: Sequence[Any], questions: Sequence[str], answer: str) -> list[float]:
        """P(first token of ``answer``) at the first decoding step, per (image, question), in batches."""
        import torch

        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        words = [answer.lower()] if getattr(tokenizer, "do_lower_case", False) else [answer]
        target = tokenizer(words[0], add_special_tokens=False).input_ids[0]
        probabilities: list[float] = []
        for chunk in batched(list(range(len(images))), self.batch_size):
            prompts = [self._prompt(questions[i]) for i in chunk]
            inputs = self.processor(
                images=[images[i] for i in chunk], text=prompts, return_tensors="pt", padding=True
            ).to(self.device)
            with torch.no_grad():
                output = self.model.generate(
                    **inputs,
                    max_new_tokens=1,
                    do_sample=False,
                    num_beams=1,
                    output_scores=True,
                    return_dict_in_generate=True,
                )
            self.calls += 1
            probabilities.extend(torch.softmax(output.scores[0].float(), dim=-1)[:, target].tolist())
        return probabilities

    def answer(self, images: Sequence[Any], questions: Sequence[str], image_shas: Sequence[str]) -> list[str]:
        """Answers to (image, question) pairs; cached pairs are not asked again."""
        keys = [AnswerCache.key(sha, q, self.model_key) for sha, q in zip(image_shas, questions, strict=True)]
        known = self.cache.get_many(keys) if self.cache else {}
        todo = [i for i, key in enumerate(keys) if key not in known]
        fresh: dict[str, str] = {}
        for chunk in batched(todo, self.batch_size):
            answers = self._generate([images[i] for i in chunk], [questions[i] for i in chunk])
            fresh.update({keys[i]: a for i, a in zip(chunk, answers, strict=True)})
        if self.cache and fresh:
            self.cache.put_many(fresh)
        return [known.get(key, fresh.get(key, "")) for key in keys]
