"""Batched VQA answering against the one-question-at-a-time loop of the official scripts, and scorer throughput.

    python benchmarks/scorers.py [--pairs 64] [--batch-size 16]

Both VQA runs use the same tiny random BLIP VQA model and the same (image, question) pairs in
one process, without the answer cache; the script prints their ratio. Then images/s of PickScore
and HPS (the shared CLIP scorer) on a tiny CLIP. Tiny models only show the overhead structure;
on real checkpoints the batched path's advantage is larger on GPUs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from selma.metrics.clip_scores import build_pickscore
from selma.metrics.tiny import save_tiny_blip_vqa, save_tiny_clip
from selma.metrics.vqa import VQAModel, vqa_models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(args.pairs)]
    questions = [f"is there a {w}?" for w in np.random.default_rng(1).choice(["cat", "dog", "red cat"], args.pairs)]
    shas = [str(i) for i in range(args.pairs)]
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        blip = save_tiny_blip_vqa(Path(tmp) / "blip")
        timings = {}
        for batch in (1, args.batch_size):
            model = VQAModel(vqa_models.get("blip"), str(blip), batch_size=batch)
            model.answer(images[:2], questions[:2], ["warm", "up"])
            start = time.perf_counter()
            answers = model.answer(images, questions, shas)
            timings[batch] = time.perf_counter() - start
            assert len(answers) == args.pairs
        print(
            f"VQA, {args.pairs} pairs: one at a time {timings[1]:.2f} s, batch {args.batch_size} "
            f"{timings[args.batch_size]:.2f} s, speed-up {timings[1] / timings[args.batch_size]:.2f}x"
        )
        clip = save_tiny_clip(Path(tmp) / "clip")
        scorer = build_pickscore({"model": str(clip), "processor": str(clip)})
        prompts = ["a red cat on a table"] * args.pairs
        scorer.score(images[:2], prompts[:2])
        start = time.perf_counter()
        scorer.score(images, prompts)
        elapsed = time.perf_counter() - start
        print(f"CLIP scorer (PickScore/HPS mechanism), tiny CLIP: {args.pairs / elapsed:.1f} images/s")


if __name__ == "__main__":
    main()
