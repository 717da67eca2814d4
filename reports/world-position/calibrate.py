"""A world model's caption-level accuracy per skill at several guidance scales, and on the prompts that hold a
colour-shape pair it never saw in training (issue 20's checks of a calibrated base; see findings.md).

    .venv/bin/python reports/world-position/calibrate.py selma/world/models/shapes-base --per-skill 64
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    """Print one JSON line per guidance scale."""
    from selma.models import load_pipeline, resolve_model
    from selma.world.train_model import SamplingSettings, evaluate_world_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--per-skill", type=int, default=64)
    parser.add_argument("--guidance", default="1,2,4,6,8")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(resolve_model(args.model))
    pipe.set_progress_bar_config(disable=True)
    for guidance in [float(g) for g in args.guidance.split(",")]:
        scores = evaluate_world_pipeline(
            pipe, per_skill=args.per_skill, seed=0, sampling=SamplingSettings(guidance_scale=guidance)
        )
        print(json.dumps({"model": args.model, "guidance": guidance, **scores}), flush=True)


if __name__ == "__main__":
    main()
