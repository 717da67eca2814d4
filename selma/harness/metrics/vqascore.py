"""VQAScore (t2v_metrics): how likely a VQA model answers "Yes" to whether the image shows the text.

A port of t2v_metrics v3.0 (``t2v_metrics/models/vqascore_models/llava_model.py`` and ``mm_utils.py``
at 7c06208) on transformers' LLaVA-1.5: the image is padded to a square with the image processor's
mean colour (``expand2square``); the text is the Vicuna v1 system message, " USER: <image>", a
newline, 'Does this figure show "{text}"? Please answer yes or no.', " ASSISTANT: " and "Yes</s>"; the score is
``exp(-mean cross-entropy)`` over the answer's tokens, "Yes" and the end of sequence; on a GPU the
forward pass runs under bf16 autocast. t2v_metrics' default model, CLIP-FlanT5-XXL, has no
transformers port and t2v_metrics does not install beside this package, so the default here is
LLaVA-1.5 (t2v_metrics' ``llava-v1.5-7b``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from selma.errors import SelmaError
from selma.harness.metrics.base import MetricInfo, batched, check_pairs, register_metric
from selma.harness.metrics.vqa import VQAModel, expand_to_square, vqa_spec

QUESTION = 'Does this figure show "{text}"? Please answer yes or no.'
ANSWER = "Yes"
SYSTEM_MSG = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

INFO = MetricInfo(
    name="vqascore",
    display_name="VQAScore",
    convention=f"exp(-mean CE) of {ANSWER!r} + end of sequence after {QUESTION!r} in t2v_metrics' chat prompt; "
    "image padded to square with the mean colour",
    checkpoints={"vqa": "llava-1.5-7b", "model": vqa_spec("llava-1.5-7b").checkpoint},
    reference="linzhiqiu/t2v_metrics v3.0 @ 7c06208 (llava_model.py, mm_utils.py)",
    notes="t2v_metrics' default model, clip-flant5-xxl, has no transformers port: the default here is "
    "LLaVA-1.5-7B, t2v_metrics' llava-v1.5-7b",
)


class VQAScorer:
    """VQAScore on a LLaVA-1.5 model."""

    def __init__(self, vqa: VQAModel) -> None:
        if vqa.spec.family != "llava":
            raise SelmaError(f"VQAScore is ported for LLaVA-1.5 models only, not {vqa.spec.name!r} ({vqa.spec.family})")
        self.info, self.vqa = INFO, vqa
        self.batch_size = vqa.batch_size
        self.notes: list[str] = []

    def chat(self, text: str) -> tuple[str, str]:
        """(question prompt, question prompt + answer) for ``text``, as t2v_metrics formats them."""
        processor = self.vqa.processor
        image_token = getattr(processor, "image_token", "<image>")
        question = f"{SYSTEM_MSG} USER: {image_token}\n{QUESTION.format(text=text)} ASSISTANT: "
        return question, question + ANSWER + processor.tokenizer.eos_token

    def score(self, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
        """exp(-mean CE of the answer tokens) per (image, prompt)."""
        import torch

        check_pairs(images, prompts)
        processor, model = self.vqa.processor, self.vqa.model
        tokenizer = processor.tokenizer
        background = tuple(int(x * 255) for x in processor.image_processor.image_mean)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if str(self.vqa.device).startswith("cuda")
            else contextlib.nullcontext()
        )
        scores: list[float] = []
        side = tokenizer.padding_side
        tokenizer.padding_side = "right"
        try:
            for chunk in batched(list(range(len(images))), self.batch_size):
                texts = [self.chat(prompts[i]) for i in chunk]
                # the answer's tokens: what the full text has beyond the question (its trailing space merges into "Yes")
                n_answer = [
                    len(tokenizer(full).input_ids) - len(tokenizer(question.rstrip(" ")).input_ids)
                    for question, full in texts
                ]
                squared = [expand_to_square(images[i].convert("RGB"), background) for i in chunk]
                inputs = processor(
                    images=squared, text=[full for _, full in texts], return_tensors="pt", padding=True
                ).to(self.vqa.device)
                with torch.no_grad(), autocast:
                    logits = model(**inputs).logits.float()
                lengths = inputs["attention_mask"].sum(dim=1).tolist()
                for k, (length, n) in enumerate(zip(lengths, n_answer, strict=True)):
                    targets = inputs["input_ids"][k, length - n : length]
                    predicted = logits[k, length - n - 1 : length - 1]
                    loss = torch.nn.functional.cross_entropy(predicted, targets, reduction="mean")
                    scores.append(float(torch.exp(-loss)))
                self.vqa.calls += 1
        finally:
            tokenizer.padding_side = side
        return scores


@register_metric(INFO)
def build_vqascore(checkpoints: dict[str, str] | None = None, device: str = "cpu") -> VQAScorer:
    """VQAScore with the VQA model named by ``checkpoints['vqa']`` at ``checkpoints['model']``."""
    from selma.harness.metrics.answerer_choice import answerer_choice

    choice = answerer_choice({**INFO.checkpoints, **(checkpoints or {})})
    return VQAScorer(VQAModel(choice.spec, choice.model or choice.spec.checkpoint, device=device))
