"""VQA answering on transformers, batched and cached, for TIFA and DSG.

Each registered model carries the prompt and decoding of the reference code that used it, and the
post-processing that code applied to the decoded text (none for the scorers themselves: DSG and
TIFA compare the answer as the wrapper returns it):

- ``blip``/``blip-large``: TIFA's BLIP wrapper (``generate(max_length=50)``, the bare question);
- ``blip2-flant5-xl``: TIFA's BLIP-2 wrapper ("Answer the multiple-choice question. Question: {q}
  Choices: {choices} Answer:"), LAVIS's ``generate`` defaults (beam 5, 30 new tokens);
- ``blip2-flant5-xl-selma``: SELMA's change of it ("Question: {q} Options: {choices} Answer:");
- ``instructblip-vicuna-7b``: DSG's wrapper (beam 5, max length 256, repetition penalty 1.5,
  answer stripped);
- ``llava-1.5-7b``: LLaVA-1.5's short-answer prompt, answer lower-cased and stripped of ``.,?!``
  (as DSG's GPT-4o wrapper does for a chat model).

Questions of a multiple-choice set (TIFA) are shown with their choices where the model's prompt
has a place for them. mPLUG-large, DSG's and SELMA's answerer, has no transformers port. Raw
answers are cached by (image sha256, prompt, model identity), so a re-run asks nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.harness.metrics.base import batched
from selma.io import content_identity
from selma.registry import Registry


def _lower_strip_punctuation(text: str) -> str:
    return text.lower().strip().replace(".", "").replace(",", "").replace("?", "").replace("!", "")


POSTPROCESS = {
    "none": lambda text: text,
    "strip": str.strip,
    "lower-strip-punct": _lower_strip_punctuation,
}


@dataclass(frozen=True)
class VQASpec:
    """A VQA model: default checkpoint, prompts, decoding and answer post-processing of its reference."""

    name: str
    family: str
    checkpoint: str
    prompt: str = "{question}"
    """The prompt of a question shown without choices."""
    prompt_choices: str | None = None
    """The prompt of a multiple-choice question (``{choices}`` joined by ", "); ``None``: never shown."""
    generate: dict[str, Any] = field(default_factory=dict)
    postprocess: str = "none"
    """What the reference wrapper does to the decoded text: ``none``, ``strip`` or ``lower-strip-punct``."""
    reference: str = ""
    notes: str = ""
    factory: str | None = None
    """A backend that is not a transformers model: ``module:callable`` building its answerer (it needs an
    ``answer(images, questions, image_shas, choices)`` method, a ``batch_size`` and a ``checkpoint``)."""

    def format(self, question: str, choices: Sequence[str] | None) -> str:
        """The text prompt for ``question`` (with ``choices`` when the model shows them)."""
        if choices and self.prompt_choices is not None:
            return self.prompt_choices.format(question=question, choices=", ".join(choices))
        return self.prompt.format(question=question)


# LAVIS ``blip2_t5.generate`` defaults as passed to the T5's ``generate`` (its ``max_length`` is new tokens;
# top_p and temperature are inert without sampling and left out)
LAVIS_GENERATE = {"do_sample": False, "num_beams": 5, "max_new_tokens": 30, "min_length": 1}

vqa_models: Registry[VQASpec] = Registry("VQA model")
for _spec in (
    VQASpec(
        "blip",
        "blip",
        "Salesforce/blip-vqa-base",
        generate={"max_length": 50},
        reference="Yushi-Hu/tifa @ 8e37050 tifascore/vqa_models.py (BLIP)",
    ),
    VQASpec(
        "blip-large",
        "blip",
        "Salesforce/blip-vqa-capfilt-large",
        generate={"max_length": 50},
        reference="Yushi-Hu/tifa @ 8e37050 tifascore/vqa_models.py (BLIP)",
    ),
    VQASpec(
        "blip2-flant5-xl",
        "blip2",
        "Salesforce/blip2-flan-t5-xl",
        "Answer the question. Question: {question} Answer:",
        "Answer the multiple-choice question. Question: {question} Choices: {choices} Answer:",
        LAVIS_GENERATE,
        reference="Yushi-Hu/tifa @ 8e37050 tifascore/vqa_models.py (BLIP2); LAVIS blip2_t5.generate defaults",
        notes="TIFA's BLIP-2 answerer",
    ),
    VQASpec(
        "blip2-flant5-xl-selma",
        "blip2",
        "Salesforce/blip2-flan-t5-xl",
        "Question: {question} Answer:",
        "Question: {question} Options: {choices} Answer:",
        LAVIS_GENERATE,
        reference="jialuli-luka/SELMA @ dc691fa TIFA/tifascore/vqa_models.py (BLIP2); LAVIS blip2_t5.generate defaults",
        notes="SELMA's TIFA answerer (TIFA^BLIP2)",
    ),
    VQASpec(
        "instructblip-vicuna-7b",
        "instructblip",
        "Salesforce/instructblip-vicuna-7b",
        "{question}",
        None,
        {"do_sample": False, "num_beams": 5, "max_length": 256, "min_length": 1, "repetition_penalty": 1.5},
        "strip",
        reference="j-min/DSG @ 7330119 dsg/vqa_utils.py (InstructBLIP)",
        notes="DSG's open VQA model",
    ),
    VQASpec(
        "llava-1.5-7b",
        "llava",
        "llava-hf/llava-1.5-7b-hf",
        "{question}\nAnswer the question using a single word or phrase.",
        None,
        {"max_new_tokens": 10},
        "lower-strip-punct",
        reference="LLaVA-1.5's short-answer VQA prompt; answer cleaned as DSG's GPT-4o wrapper does",
        notes="not a reference answerer of DSG or TIFA",
    ),
):
    vqa_models.add(_spec.name, _spec)

NO_TRANSFORMERS_PORT = {
    "mplug-large": "DSG's and SELMA's answerer (ModelScope damo/mplug_visual-question-answering_coco_large_en) has "
    "no transformers port; answer with it elsewhere and re-score its answers with `selma-bench rescore`",
}


def vqa_spec(name: str) -> VQASpec:
    """The registered VQA model ``name``; a model without a transformers port is an error saying what to do."""
    if name in NO_TRANSFORMERS_PORT:
        raise SelmaError(f"VQA model {name!r}: {NO_TRANSFORMERS_PORT[name]}")
    return vqa_models.get(name)


class AnswerCache:
    """A sqlite table of raw answers keyed by (image sha256, prompt, model key)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path))
        self.db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")

    @staticmethod
    def key(image_sha: str, prompt: str, model_key: str) -> str:
        """The cache key of one (image, prompt) for one model and settings."""
        return hashlib.sha256(json.dumps([image_sha, prompt, model_key]).encode()).hexdigest()

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


def expand_to_square(image: Any, background: tuple[int, ...]) -> Any:
    """Pad ``image`` to a square, centred, with ``background`` (LLaVA's and t2v_metrics' ``expand2square``)."""
    from PIL import Image

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    result = Image.new(image.mode, (side, side), background)
    result.paste(image, ((side - width) // 2, (side - height) // 2))
    return result


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
        try:
            self.processor = AutoProcessor.from_pretrained(self.checkpoint)
            self.model = self._model_class().from_pretrained(self.checkpoint).to(device).eval()
        except (OSError, ValueError, TypeError, KeyError) as exc:  # missing, or not a model of this family
            raise SelmaError(
                f"cannot load VQA model {spec.name!r} from {self.checkpoint!r} ({str(exc).splitlines()[0][:160]}); "
                "give a local directory with --vqa-model PATH (or --checkpoint model=PATH)"
            ) from None
        # LLaVA, and BLIP-2/InstructBLIP on OPT or Vicuna, decode with a decoder-only LM: pad batches on the left,
        # and the generated sequence starts with the prompt
        self.decoder_only = spec.family == "llava" or bool(
            getattr(self.model.config, "use_decoder_only_language_model", False)
        )
        if self.decoder_only:
            self.processor.tokenizer.padding_side = "left"
        # the model is named by its content, so two local checkpoints never share answers
        identity = content_identity(self.checkpoint)
        self.model_key = json.dumps({"model": identity, "spec": asdict(spec)}, sort_keys=True, default=str)
        self.calls = 0  # model batches run (the cache makes re-runs free)

    def _model_class(self) -> Any:
        import transformers

        return {
            "blip": transformers.BlipForQuestionAnswering,
            "blip2": transformers.Blip2ForConditionalGeneration,
            "instructblip": transformers.InstructBlipForConditionalGeneration,
            "llava": transformers.LlavaForConditionalGeneration,
        }[self.spec.family]

    def prompt(self, question: str, choices: Sequence[str] | None = None) -> str:
        """The model input for ``question`` (the chat template applied for chat models)."""
        text = self.spec.format(question, choices)
        if self.spec.family == "llava":
            conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
            return self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        return text

    def _generate(self, images: Sequence[Any], prompts: Sequence[str]) -> list[str]:
        import torch

        inputs = self.processor(images=list(images), text=list(prompts), return_tensors="pt", padding=True)
        if self.decoder_only:
            # BLIP-2's and InstructBLIP's processors put the image tokens before the left padding; generation
            # then decodes a padded prompt otherwise than the same prompt alone. Move every pad to the front.
            order = torch.sort(inputs["attention_mask"], dim=1, stable=True).indices
            for key in ("input_ids", "attention_mask"):
                inputs[key] = inputs[key].gather(1, order)
        inputs = inputs.to(self.device)
        with torch.no_grad():
            output = self.model.generate(**inputs, **self.spec.generate)
        if self.decoder_only:
            output = output[:, inputs["input_ids"].shape[1] :]
        self.calls += 1
        return self.processor.batch_decode(output, skip_special_tokens=True)

    def answer(
        self,
        images: Sequence[Any],
        questions: Sequence[str],
        image_shas: Sequence[str],
        choices: Sequence[Sequence[str] | None] | None = None,
    ) -> list[str]:
        """Answers to (image, question) pairs, post-processed as the model's reference wrapper does;
        ``choices`` (per question) are shown where the model's prompt has a place for them. Cached pairs
        are not asked again.
        """
        shown = choices if choices is not None else [None] * len(questions)
        prompts = [self.prompt(q, c) for q, c in zip(questions, shown, strict=True)]
        keys = [AnswerCache.key(sha, p, self.model_key) for sha, p in zip(image_shas, prompts, strict=True)]
        known = self.cache.get_many(keys) if self.cache else {}
        todo = [i for i, key in enumerate(keys) if key not in known]
        fresh: dict[str, str] = {}
        for chunk in batched(todo, self.batch_size):
            answers = self._generate([images[i] for i in chunk], [prompts[i] for i in chunk])
            fresh.update({keys[i]: a for i, a in zip(chunk, answers, strict=True)})
        if self.cache and fresh:
            self.cache.put_many(fresh)
        clean = POSTPROCESS[self.spec.postprocess]
        return [clean(known.get(key, fresh.get(key, ""))) for key in keys]


def make_answerer(
    spec: VQASpec, checkpoint: str | None = None, *, device: str = "cpu", cache: AnswerCache | None = None
) -> Any:
    """The answerer of a registered VQA model: a :class:`VQAModel`, or the backend its ``factory`` names."""
    if spec.factory is None:
        return VQAModel(spec, checkpoint or spec.checkpoint, device=device, cache=cache)
    import importlib

    module, _, name = spec.factory.partition(":")
    return getattr(importlib.import_module(module), name)()
