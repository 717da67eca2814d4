"""One LoRA training step with and without the latent/text-embedding cache, against the UNet-only limit.

    python benchmarks/train_cache.py [--resolution 256] [--steps 3] [--images 8] [--model PATH]

At real size by default: SD 1.5's architecture with random weights (``benchmarks/architectures.py``),
SELMA's LoRA (rank 128 on to_q/k/v/out), batch 1, fp32 on this CPU; ``--model`` takes any local
pipeline instead (e.g. a tiny one for a quick check). The training images are random PNGs with
captions. Each mode trains twice through ``train_lora``, for S and for 2S steps; the marginal rate
S / (t(2S) - t(S)) is the step time without model loading and the one-time cache build (after a
warm-up training that pays the process's one-time costs). The limit is
the UNet's own step on random latents and text embeddings of the same shapes: forward, backward,
gradient clipping and the AdamW update of the same LoRA. Prints the cached and uncached step times,
their ratio and the cached step against the limit, all measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from architectures import save_sd15_pipeline, timed
from PIL import Image

from selma.models import resolve_model
from selma.recipe.train import TARGET_MODULES, TrainConfig, train_lora


def write_images(folder: Path, n: int, resolution: int) -> Path:
    """``n`` random images with captions as an imagefolder (``metadata.jsonl``)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        name = f"{i:04d}.png"
        Image.fromarray(rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8)).save(folder / name)
        rows.append(json.dumps({"file_name": name, "text": f"a photo of {i} red cubes left of a blue sphere"}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def unet_limit(source: str, config: TrainConfig, repeats: int) -> float:
    """Seconds of the UNet-only LoRA step at the training shapes (latents from the VAE's downsampling)."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig

    unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet")
    unet.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            target_modules=list(TARGET_MODULES),
            init_lora_weights="gaussian",
        )
    )
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    side = config.resolution // 8
    batch = config.train_batch_size
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, unet.config.in_channels, side, side, generator=generator)
    hidden = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=generator)

    def step() -> None:
        timesteps = torch.randint(0, 1000, (batch,), generator=generator)
        pred = unet(latents, timesteps, hidden, return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred, latents)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()

    return timed(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a local pipeline (default: SD 1.5's architecture, random weights)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rank", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = args.model or str(save_sd15_pipeline(root / "sd15"))
        model = resolve_model(source)
        images = write_images(root / "images", args.images, args.resolution)
        config = TrainConfig(
            rank=args.rank,
            alpha=args.rank,
            train_batch_size=1,
            gradient_accumulation_steps=1,
            resolution=args.resolution,
            checkpointing_steps=10**9,
            mixed_precision="no",
        )
        # warm-up: the first training of a process pays one-time costs (imports, first calls)
        train_lora(model, [str(images)], root / "warm-up", replace(config, max_train_steps=1), progress=False)
        step_seconds, setup_seconds = {}, {}
        for cache in (False, True):
            times = []
            for steps in (args.steps, 2 * args.steps):
                start = time.perf_counter()
                train_lora(
                    model,
                    [str(images)],
                    root / f"lora-{cache}-{steps}",
                    replace(config, cache=cache, max_train_steps=steps),
                    progress=False,
                )
                times.append(time.perf_counter() - start)
            mode = "cached" if cache else "uncached"
            step_seconds[mode] = (times[1] - times[0]) / args.steps
            setup_seconds[mode] = times[0] - args.steps * step_seconds[mode]
        step_seconds["unet_limit"] = unet_limit(model.source, config, repeats=args.steps)
        report = {
            "model": args.model or "SD 1.5 architecture (random weights)",
            "resolution": args.resolution,
            "batch": 1,
            "rank": args.rank,
            "images": args.images,
            "steps": args.steps,
            "threads": torch.get_num_threads(),
            "step_seconds": {k: round(v, 3) for k, v in step_seconds.items()},
            "setup_seconds": {k: round(v, 1) for k, v in setup_seconds.items()},
            "uncached_over_cached": round(step_seconds["uncached"] / step_seconds["cached"], 3),
            "cached_over_unet_limit": round(step_seconds["cached"] / step_seconds["unet_limit"], 3),
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
