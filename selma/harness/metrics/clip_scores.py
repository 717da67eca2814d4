"""CLIP-based preference scores: PickScore and HPS v2/v2.1 share one mechanism.

Both L2-normalise CLIP image and text embeddings and scale their cosine: PickScore by the model's
``logit_scale.exp()`` (PickScore's README: transformers' processor, fp32), HPS by 100 (the HPS v2
benchmark convention, ``evaluation.py``; the ``hpsv2.score`` API returns the raw cosine). HPS
follows its own code otherwise too: open_clip's text cleaning, its ``ResizeMaxSize`` image
transform and, on a GPU, fp16 autocast. Several images of one prompt can also be compared with
a softmax over PickScores (preference probabilities).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from selma.harness.metrics.base import MetricInfo, batched, check_pairs, register_metric, truncation_note

log = logging.getLogger(__name__)

LAION_VIT_H = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class ClipScorer:
    """Scaled cosine similarity of a CLIP model's projected image and text embeddings."""

    def __init__(
        self,
        info: MetricInfo,
        model: Any,
        tokenizer: Any,
        pixels: Callable[[Sequence[Any]], Any],
        scale: str,
        *,
        device: str = "cpu",
        batch_size: int = 16,
        clean_text: Callable[[str], str] | None = None,
        cuda_autocast: bool = False,
    ) -> None:
        self.info, self.model, self.tokenizer, self.pixels = info, model.to(device).eval(), tokenizer, pixels
        self.scale, self.device, self.batch_size = scale, device, batch_size
        self.clean_text = clean_text or (lambda text: text)
        self.cuda_autocast = cuda_autocast and str(device).startswith("cuda")
        self.notes: list[str] = []

    def _autocast(self) -> Any:
        import contextlib

        import torch

        return torch.autocast("cuda", dtype=torch.float16) if self.cuda_autocast else contextlib.nullcontext()

    def embeddings(self, images: Sequence[Any], prompts: Sequence[str]) -> tuple[Any, Any]:
        """Normalised image and text embeddings (rows aligned with the inputs)."""
        import torch

        tokenizer = self.tokenizer
        prompts = [self.clean_text(p) for p in prompts]
        note = truncation_note(self.info.name, tokenizer, prompts, tokenizer.model_max_length)
        if note:
            log.warning(note)
            self.notes.append(note)
        image_parts, text_parts = [], []
        with torch.no_grad(), self._autocast():
            for chunk in batched(list(range(len(images))), self.batch_size):
                pixels = self.pixels([images[i] for i in chunk])
                vision = self.model.vision_model(pixel_values=pixels.to(self.device))
                image_parts.append(self.model.visual_projection(vision.pooler_output))
                limit = tokenizer.model_max_length
                text = tokenizer(
                    [prompts[i] for i in chunk], padding=True, truncation=True, max_length=limit, return_tensors="pt"
                ).to(self.device)
                encoded = self.model.text_model(input_ids=text.input_ids, attention_mask=text.attention_mask)
                text_parts.append(self.model.text_projection(encoded.pooler_output))
            image, text = torch.cat(image_parts), torch.cat(text_parts)
            return image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)

    def factor(self) -> float:
        """The multiplier of the cosine: ``logit_scale.exp()`` or 100."""
        return float(self.model.logit_scale.detach().exp()) if self.scale == "logit_scale" else 100.0

    def score(self, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
        """One scaled cosine per (image, prompt) pair."""
        import torch

        check_pairs(images, prompts)
        image, text = self.embeddings(images, prompts)
        with torch.no_grad(), self._autocast():  # HPS multiplies the features in fp16 under autocast on a GPU
            return (self.factor() * (image * text).sum(-1)).float().tolist()

    def preference(self, images: Sequence[Any], prompt: str) -> list[float]:
        """Softmax over the scores of several images for one prompt (PickScore's probabilities)."""
        import torch

        scores = torch.tensor(self.score(images, [prompt] * len(images)))
        return torch.softmax(scores, dim=0).tolist()


def _tokenizer(path: str) -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(path)


def _hf_pixels(path: str) -> Callable[[Sequence[Any]], Any]:
    """The transformers CLIP image processor (what PickScore's reference code uses)."""
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor.from_pretrained(path)
    return lambda images: processor(list(images), return_tensors="pt").pixel_values


PICKSCORE = MetricInfo(
    name="pickscore",
    display_name="PickScore",
    convention="logit_scale.exp() x cosine of L2-normalised CLIP-H/14 embeddings; softmax across images of a prompt",
    checkpoints={"model": "yuvalkirstain/PickScore_v1", "processor": LAION_VIT_H},
    reference="yuvalkirstain/PickScore @ f79607f: README (inference snippet)",
)


@register_metric(PICKSCORE)
def build_pickscore(checkpoints: dict[str, str] | None = None, device: str = "cpu") -> ClipScorer:
    """PickScore from a local directory or hub id of the model and of the processor."""
    from transformers import CLIPModel

    paths = {**PICKSCORE.checkpoints, **(checkpoints or {})}
    processor = paths["processor"]
    model = CLIPModel.from_pretrained(paths["model"])
    return ClipScorer(PICKSCORE, model, _tokenizer(processor), _hf_pixels(processor), "logit_scale", device=device)


def _hps_info(version: str, file: str) -> MetricInfo:
    return MetricInfo(
        name=f"hpsv{version}",
        display_name=f"HPS v{version}",
        convention="100 x cosine of L2-normalised open_clip ViT-H-14 embeddings (HPS weights, converted); open_clip "
        "text cleaning; ResizeMaxSize 224 (pad to square); fp16 autocast on a GPU",
        checkpoints={"checkpoint": f"xswu/HPSv2/{file}", "processor": LAION_VIT_H},
        reference="tgxs002/HPSv2 @ 866735e: hpsv2/img_score.py, evaluation.py, src/open_clip/{tokenizer,transform}.py",
        notes="v2 and v2.1 scores are not comparable; the version is recorded with every score",
    )


HPS_V2 = _hps_info("2", "HPS_v2_compressed.pt")
HPS_V21 = _hps_info("2.1", "HPS_v2.1_compressed.pt")


def build_hps(
    info: MetricInfo, checkpoints: dict[str, str] | None, device: str, config: dict[str, Any] | None = None
) -> ClipScorer:
    """HPS from a local checkpoint file (open_clip state dict) and a CLIP tokenizer directory.

    Texts are cleaned as open_clip does; images go through HPS's ``ResizeMaxSize`` transform.
    """
    from selma.harness.metrics.open_clip_convert import load_open_clip_checkpoint
    from selma.harness.metrics.preprocess import open_clip_clean, resize_max_size_pixels

    paths = {**info.checkpoints, **(checkpoints or {})}
    model = load_open_clip_checkpoint(paths["checkpoint"], config)
    size = model.config.vision_config.image_size

    def pixels(images: Sequence[Any]) -> Any:
        return resize_max_size_pixels(images, size)

    return ClipScorer(
        info,
        model,
        _tokenizer(paths["processor"]),
        pixels,
        "x100",
        device=device,
        clean_text=open_clip_clean,
        cuda_autocast=True,
    )


@register_metric(HPS_V2)
def build_hps_v2(
    checkpoints: dict[str, str] | None = None, device: str = "cpu", config: dict[str, Any] | None = None
) -> ClipScorer:
    """HPS v2.0."""
    return build_hps(HPS_V2, checkpoints, device, config)


@register_metric(HPS_V21)
def build_hps_v21(
    checkpoints: dict[str, str] | None = None, device: str = "cpu", config: dict[str, Any] | None = None
) -> ClipScorer:
    """HPS v2.1."""
    return build_hps(HPS_V21, checkpoints, device, config)
