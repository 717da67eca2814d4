"""Scorers batched against one item at a time (the official loops), at real size, and how each scales with batch.

    python benchmarks/scorers.py [--items 16] [--batch-sizes 1,4,16] [--tiny]

- CLIP ViT-H/14 (PickScore's and HPS v2/v2.1's architecture, random weights): images/s of the shared
  CLIP scorer at each batch size; batch 1 is what HPS's ``img_score.py`` and PickScore's snippet do
  per image.
- BLIP VQA base (random weights): (image, question) pairs/s of the VQA answerer at each batch size,
  without the answer cache; batch 1 is TIFA's and DSG's one-question-at-a-time loop. Every answer is
  decoded to exactly 4 tokens (the length of a short real answer with its start and end tokens), whatever the
  random weights emit, so the work is the same at every batch size.

All timings in one process after a warm-up; the ratios are against batch 1 measured in the same run.
``--tiny`` uses the tiny test models (a quick check of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from architectures import save_blip_vqa_base, save_clip_vit_h
from PIL import Image

from selma.harness.metrics.clip_scores import build_pickscore
from selma.harness.metrics.tiny import save_tiny_blip_vqa, save_tiny_clip
from selma.harness.metrics.vqa import VQAModel, vqa_models

ANSWER_TOKENS = 4


def rates(run: Callable[[int], Any], items: int, batch_sizes: list[int]) -> dict[str, Any]:
    """Items/s at each batch size, and each against batch 1."""
    run(batch_sizes[0])  # warm-up
    per_second = {}
    for batch in batch_sizes:
        start = time.perf_counter()
        run(batch)
        per_second[batch] = items / (time.perf_counter() - start)
    return {
        "items_per_s": {str(b): round(r, 3) for b, r in per_second.items()},
        "speedup_over_batch_1": {str(b): round(r / per_second[1], 2) for b, r in per_second.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--batch-sizes", default="1,4,16")
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if batch_sizes[0] != 1:
        parser.error("--batch-sizes must start with 1 (the official loops' baseline)")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)) for _ in range(args.items)]
    prompts = [f"a photo of {i} red cubes to the left of a blue sphere" for i in range(args.items)]
    questions = [f"is there a {w}?" for w in rng.choice(["cat", "dog", "red cat"], args.items)]
    report: dict[str, Any] = {"items": args.items, "threads": torch.get_num_threads(), "tiny": args.tiny}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = save_tiny_clip(root / "clip") if args.tiny else save_clip_vit_h(root / "clip")
        scorer = build_pickscore({"model": str(clip), "processor": str(clip)})

        def score(batch: int) -> None:
            scorer.batch_size = batch
            scorer.score(images, prompts)

        report["clip_vit_h_14" if not args.tiny else "clip_tiny"] = rates(score, args.items, batch_sizes)
        blip = save_tiny_blip_vqa(root / "blip") if args.tiny else save_blip_vqa_base(root / "blip")
        shas = [str(i) for i in range(args.items)]
        # real answers are a word or two ("yes"): every answer is made exactly ANSWER_TOKENS long, whatever the
        # random weights would emit, so each batch size does the same work
        spec = replace(vqa_models.get("blip"), generate={"min_length": ANSWER_TOKENS, "max_length": ANSWER_TOKENS})
        answerer = VQAModel(spec, str(blip))  # no answer cache: every call runs the model

        def answer(batch: int) -> None:
            answerer.batch_size = batch
            answerer.answer(images, questions, shas)

        report["blip_vqa_base" if not args.tiny else "blip_tiny"] = rates(answer, args.items, batch_sizes)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
