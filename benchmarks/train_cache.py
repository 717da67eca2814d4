"""Training steps per second with and without VAE-latent/text-embedding caching, in one run.

    python benchmarks/train_cache.py [--model tiny-sd1] [--images 16] [--steps 20]

Each mode trains twice, for S and for 2S steps; the marginal rate S / (t(2S) - t(S)) is the
training speed without model loading and the one-time cache build, which is reported as the
setup time. Prints both rates and their ratio (cached / uncached), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from selma.generate import GenerationSettings, generate
from selma.models import resolve_model
from selma.prompts import PromptItem
from selma.train import TrainConfig, train_lora
from selma.variants import resolve_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="tiny-sd1")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    model = resolve_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        variant = resolve_variant(args.model)
        prompts = [PromptItem(f"p{i}", f"a photo of object number {i}") for i in range(args.images)]
        settings = GenerationSettings.for_variant(variant, steps=2)
        generate(prompts, settings, root / "images", variant.load, progress=False)
        config = TrainConfig(
            rank=4,
            alpha=4,
            train_batch_size=4,
            gradient_accumulation_steps=1,
            max_train_steps=args.steps,
            checkpointing_steps=10**9,
        )
        report = {}
        for cache in (False, True):
            times = []
            for steps in (args.steps, 2 * args.steps):
                start = time.perf_counter()
                train_lora(
                    model,
                    [str(root / "images")],
                    root / f"lora-{cache}-{steps}",
                    replace(config, cache=cache, max_train_steps=steps),
                    progress=False,
                )
                times.append(time.perf_counter() - start)
            rate = args.steps / (times[1] - times[0])
            report["cached" if cache else "uncached"] = {
                "steps_per_s": round(rate, 2),
                "setup_s": round(times[0] - args.steps / rate, 2),
            }
        print(json.dumps({"model": args.model, "images": args.images, "steps": args.steps, **report}, indent=2))
        ratio = report["cached"]["steps_per_s"] / report["uncached"]["steps_per_s"]
        print(f"training steps/s, cached / uncached: {ratio:.2f}")


if __name__ == "__main__":
    main()
