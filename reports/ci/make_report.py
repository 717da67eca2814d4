"""Regenerate the CI report: a small study on tiny random-weight models, its tables and a leaderboard.

    python reports/ci/make_report.py [--out reports/ci]

Run by `.ci/run` after the tests. It builds a tiny CLIP scorer (PickScore convention), writes a
study over tiny-sd1 (two skills; base, experts, multi, merged, gt and w2s variants; DrawBench's
first prompts), runs `selma-bench study`, and renders the leaderboard. The weights are random, so
the numbers only show that every stage runs and that the tables are produced.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from selma.harness.metrics.tiny import save_tiny_clip

TITLE = "CI: a tiny study on random-weight models (the scores test the machinery, not any model)"


def main() -> None:
    """Build the tiny study, run it twice (the second is a cache hit) and write the report files."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    cli = str(Path(sys.executable).with_name("selma-bench"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = save_tiny_clip(root / "clip")
        study = {
            "name": "ci-tiny",
            "description": "Every SELMA variant on tiny-sd1 (random weights), scored by a tiny random PickScore.",
            "base_model": "tiny-sd1",
            "skills": ["coco", "countbench"],
            "prompts_per_skill": 8,
            "train": {
                "rank": 4,
                "alpha": 4,
                "train_batch_size": 4,
                "gradient_accumulation_steps": 1,
                "max_train_steps": 10,
                "checkpointing_steps": 5,
                "checkpoints_total_limit": 1,
                "cache": True,
            },
            "gt": {"shapes": {"shapes": 16}},
            "weak_models": ["tiny-sd2"],
            "variants": [
                "base",
                "expert:coco",
                "expert:countbench",
                "multi",
                "merged:paper",
                "merged:ties",
                "gt:shapes",
                "w2s:tiny-sd2",
            ],
            "suites": ["drawbench"],
            "metrics": ["pickscore"],
            "checkpoints": {"pickscore": {"model": str(clip), "processor": str(clip)}},
            "limit": 8,
        }
        config = root / "study.yaml"
        config.write_text(yaml.safe_dump(study, sort_keys=False))
        start = time.perf_counter()
        subprocess.run([cli, "-q", "study", str(config), "--out", str(root / "study")], check=True)
        first = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(
            [cli, "-q", "study", str(config), "--out", str(root / "study")], check=True, stdout=subprocess.DEVNULL
        )
        second = time.perf_counter() - start
        args.out.mkdir(parents=True, exist_ok=True)
        for name in ("comparison.md", "comparison.csv"):
            shutil.copy(root / "study" / name, args.out / name)
        runs = sorted((root / "study" / "runs").glob("*/scores/*"))
        board = args.out / "leaderboard.csv"
        board.unlink(missing_ok=True)
        subprocess.run([cli, "leaderboard", "add", str(board), *map(str, runs)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(
            [cli, "leaderboard", "render", str(board), "--out", str(args.out), "--title", TITLE],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (args.out / "timing.md").write_text(
            f"First run {first:.1f} s; identical re-run {second:.1f} s (ratio {second / first:.3f}).\n",
            encoding="utf-8",
        )
    print((args.out / "comparison.md").read_text(encoding="utf-8"))
    print((args.out / "timing.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
