"""Cost against the amount of work: generation and scoring time for 8, 32 and 128 prompts, in one run.

    python benchmarks/scaling.py [--sizes 8,32,128]

Renders DrawBench's first N prompts with the tiny SD1 model (2 denoising steps, 32 px) through
``generate`` and scores them with PickScore on a tiny CLIP through ``score_folder``, each into a
fresh folder, and fits time = fixed + per-item x N by least squares. Prints the fit and the fixed
overhead's share of the largest run: linear cost with a small fixed share is what "scales with the
work" means. Tiny models make the per-item cost small, so the fixed share printed is an upper bound
for real models. Needs the suite data (``--data-dir`` or ``$SELMA_BENCH_DATA``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from selma.harness.metrics.tiny import save_tiny_clip
from selma.harness.score import score_folder
from selma.harness.suites import DataLocator, load_suite
from selma.models import load_pipeline, resolve_model
from selma.recipe.generate import GenerationSettings, generate
from selma.recipe.prompts import PromptItem


def fit(sizes: list[int], seconds: list[float]) -> dict[str, float]:
    """Least-squares time = fixed + per_item x N, and the fixed share of the largest run."""
    per_item, fixed = np.polyfit(np.array(sizes, dtype=float), np.array(seconds), 1)
    return {
        "fixed_s": round(float(fixed), 3),
        "per_item_s": round(float(per_item), 4),
        "fixed_share_of_largest": round(float(fixed) / seconds[-1], 3),
        "seconds": {str(n): round(s, 3) for n, s in zip(sizes, seconds, strict=True)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="8,32,128")
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    locator = DataLocator.from_env(args.data_dir)
    suite = load_suite("drawbench", locator)
    model = resolve_model("tiny-sd1")
    settings = GenerationSettings(model="tiny-sd1", steps=2, guidance_scale=7.5, resolution=32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = save_tiny_clip(root / "clip")
        checkpoints = {"model": str(clip), "processor": str(clip)}
        generation, scoring = [], []
        for n in sizes:
            prompts = [PromptItem(p.id, p.text) for p in suite.prompts[:n]]
            start = time.perf_counter()
            generate(prompts, settings, root / f"images-{n}", lambda: load_pipeline(model), progress=False)
            generation.append(time.perf_counter() - start)
            start = time.perf_counter()
            score_folder(
                "drawbench", root / f"images-{n}", "pickscore", locator, checkpoints=checkpoints, out=root / f"s{n}"
            )
            scoring.append(time.perf_counter() - start)
    print(
        json.dumps(
            {"generation (tiny-sd1)": fit(sizes, generation), "scoring (PickScore, tiny CLIP)": fit(sizes, scoring)},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
