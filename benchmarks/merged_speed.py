"""Denoising-step time of a merged variant at real size: base, live merged adapter, fused merged model.

    python benchmarks/merged_speed.py [--experts 5] [--rank 128] [--resolution 256] [--repeats 5]

SD 1.5's architecture with random weights (``benchmarks/architectures.py``), N random rank-128 expert
LoRAs on SELMA's target modules, merged by ``selma-bench merge``'s ``paper`` method (peft ``cat``: rank
N x 128) and applied through ``Variant.load``: live (``fuse=False``) and fused (the default). Times one
UNet call with classifier-free guidance (batch 2) at the given resolution, median of ``--repeats``
rounds (each round one step of each model) after a warm-up round, all in one process, and prints
each against the base step. Also prints the largest difference between the live and fused UNet
outputs on the same input.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from architectures import save_sd15_pipeline

from selma.models import resolve_model
from selma.recipe.lora_io import save_unet_lora
from selma.recipe.merge import merge_experts
from selma.recipe.train import TARGET_MODULES
from selma.recipe.variants import Variant


def make_experts(source: Path, root: Path, n: int, rank: int) -> dict[str, Path]:
    """N LoRAs with random A and B (B is zero at initialisation, which would make every adapter a no-op)."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet")
    experts = {}
    for i in range(n):
        name = f"expert{i}"
        unet.add_adapter(
            LoraConfig(r=rank, lora_alpha=rank, target_modules=list(TARGET_MODULES), init_lora_weights="gaussian"),
            adapter_name=name,
        )
        generator = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for module_name, param in unet.named_parameters():
                if f"lora_B.{name}." in module_name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.002)
        save_unet_lora(get_peft_model_state_dict(unet, adapter_name=name), unet.peft_config[name], root / name, "sd1")
        experts[name] = root / name
    return experts


def step(unet: Any, inputs: tuple[Any, Any, Any]) -> Any:
    with torch.no_grad():
        return unet(*inputs, return_dict=False)[0]


def interleaved(unets: dict[str, Any], inputs: tuple[Any, Any, Any], repeats: int) -> dict[str, float]:
    """Median step time of each UNet, timed in rounds (one step of each per round, after a warm-up round) so
    that any change in the machine's load falls on all of them alike.
    """
    times: dict[str, list[float]] = {mode: [] for mode in unets}
    for round_ in range(repeats + 1):
        for mode, unet in unets.items():
            start = time.perf_counter()
            step(unet, inputs)
            if round_:
                times[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(values) for mode, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experts", type=int, default=5)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = save_sd15_pipeline(root / "sd15")
        model = resolve_model(str(source))
        experts = make_experts(source, root / "experts", args.experts, args.rank)
        merged = merge_experts(model, experts, root / "merged")
        side = args.resolution // 8
        generator = torch.Generator().manual_seed(0)
        inputs = (
            torch.randn(2, 4, side, side, generator=generator),
            torch.tensor(500),
            torch.randn(2, 77, 768, generator=generator),
        )
        unets = {}
        for mode, variant in (
            ("base", Variant(model, "base", None)),
            ("live", Variant(model, "merged", root / "merged", fuse=False)),
            ("fused", Variant(model, "merged", root / "merged", fuse=True)),
        ):
            unets[mode] = variant.load().unet
            gc.collect()
        seconds = interleaved(unets, inputs, args.repeats)
        outputs = {mode: step(unet, inputs) for mode, unet in unets.items()}
        report = {
            "architecture": "SD 1.5 UNet (random weights)",
            "resolution": args.resolution,
            "cfg_batch": 2,
            "threads": args.threads,
            "experts": args.experts,
            "merged_rank": merged["rank"],
            "step_seconds": {k: round(v, 3) for k, v in seconds.items()},
            "live_over_base": round(seconds["live"] / seconds["base"], 3),
            "fused_over_base": round(seconds["fused"] / seconds["base"], 3),
            "live_over_fused": round(seconds["live"] / seconds["fused"], 3),
            "max_abs_diff_live_fused": float((outputs["live"] - outputs["fused"]).abs().max()),
            "max_abs_diff_base_fused": float((outputs["base"] - outputs["fused"]).abs().max()),
        }
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
