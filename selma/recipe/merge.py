"""Stage 4: merging skill experts into one model, with peft's own merging code.

``paper`` is SELMA's merge: the weighted sum of the experts' ΔW at weights 1/N (what diffusers'
``set_adapters`` computes at run time; the official script's ``1/len(model_id)`` is a bug and is
not reproduced). It is exported exactly as one LoRA through peft's ``cat`` combination. The other
methods are peft ``add_weighted_adapter`` types. Outputs: a single LoRA file that plain diffusers
``load_lora_weights`` loads, and optionally a fused full pipeline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selma import __version__
from selma.errors import SelmaError
from selma.io import atomic_write_json, file_digest
from selma.models import ResolvedModel, load_component, model_identity
from selma.recipe.lora_io import LORA_FILE, load_into, read_unet_lora, save_unet_lora
from selma.results.store import make_provenance, now
from selma.stage import Claim, run_stage

METHODS = ("paper", "linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune")
MERGE = "merge.json"


def merge_experts(
    model: ResolvedModel,
    experts: dict[str, Path],
    out: Path,
    *,
    method: str = "paper",
    weights: Sequence[float] | None = None,
    density: float | None = None,
    seed: int = 0,
    svd_rank: int | None = None,
    fused_pipeline: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Merge the expert LoRAs (name -> folder) into ``out/pytorch_lora_weights.safetensors``.

    ``out`` is claimed first: a merge of other experts or settings there is refused unless ``force``.
    """
    if method not in METHODS:
        raise SelmaError(f"unknown merge method {method!r}; choose one of: {', '.join(METHODS)}")
    if len(experts) < 2:
        raise SelmaError("merging needs at least 2 experts")
    names = list(experts)
    if len(set(names)) != len(names) or "merged" in names:
        raise SelmaError(f"expert names must be unique and not 'merged': {names}")
    weights = list(weights) if weights is not None else [1.0 / len(names)] * len(names)
    if len(weights) != len(names):
        raise SelmaError(f"{len(weights)} weights for {len(names)} experts")
    if method.startswith("dare") or method in ("ties", "magnitude_prune"):
        density = 0.5 if density is None else density
    started = now()
    missing = [n for n in names if not (experts[n] / LORA_FILE).is_file()]
    if missing:
        raise SelmaError(f"expert {missing[0]!r} has no {LORA_FILE} in {experts[missing[0]]}")
    if density is not None and not 0 < density <= 1:
        raise SelmaError(f"--density must be in (0, 1], got {density}")
    inputs = {str(experts[n] / LORA_FILE): file_digest(experts[n] / LORA_FILE) for n in names}
    config = {
        "command": "merge",
        "model": model_identity(model),
        "experts": {n: inputs.get(str(experts[n] / LORA_FILE)) for n in names},
        "method": method,
        "weights": weights,
        "density": density,
        "seed": seed,
        "svd_rank": svd_rank,
        "version": __version__,
    }

    def load_and_merge() -> tuple[dict[str, Any], Any]:
        # the libraries only now: a finished merge is answered without importing them
        import torch
        from diffusers import UNet2DConditionModel
        from peft import get_peft_model
        from peft.utils import get_peft_model_state_dict

        loaded = [(name, *read_unet_lora(experts[name], model.spec.family)) for name in names]
        unet = load_component(model, "unet", UNet2DConditionModel)
        first_name, first_config, first_state = loaded[0]
        peft_model = get_peft_model(unet, first_config, adapter_name=first_name)
        load_into(peft_model, first_state, first_name, experts[first_name])
        for name, lora_config, state in loaded[1:]:
            peft_model.add_adapter(name, lora_config)
            load_into(peft_model, state, name, experts[name])
        combination = "cat" if method == "paper" else method
        torch.manual_seed(seed)  # dare_* drop parameters at random
        kwargs: dict[str, Any] = {"density": density} if density is not None else {}
        if svd_rank is not None:
            kwargs["svd_rank"] = svd_rank
        try:
            peft_model.add_weighted_adapter(names, weights, "merged", combination_type=combination, **kwargs)
        except ValueError as exc:
            raise SelmaError(f"peft cannot merge these experts with {method!r}: {exc}") from None
        state = {
            k.removeprefix("base_model.model."): v.detach().contiguous()
            for k, v in get_peft_model_state_dict(peft_model, adapter_name="merged").items()
        }
        return state, peft_model.peft_config["merged"]

    def save(claimed: Claim, merged: tuple[dict[str, Any], Any]) -> dict[str, Any]:
        state, merged_config = merged
        provenance = make_provenance(config, inputs, seed=seed, started_at=started)
        result = {
            "config_hash": claimed.digest,
            "method": method,
            "experts": names,
            "weights": weights,
            "rank": merged_config.r,
        }
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=".merge.tmp-"))
        try:  # the LoRA appears complete or not at all
            save_unet_lora(state, merged_config, tmp, model.spec.family)
            os.replace(tmp / LORA_FILE, out / LORA_FILE)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        atomic_write_json(out / MERGE, {**result, "provenance": provenance.model_dump()})
        return result

    result = run_stage(
        out, "merge", config, load_and_merge, save, force=force, is_done=lambda _: (out / LORA_FILE).is_file()
    )
    if fused_pipeline is not None:
        export_fused(model, out, fused_pipeline)
    return result


def export_fused(model: ResolvedModel, lora_dir: Path, target: Path) -> Path:
    """Save a full pipeline with the LoRA fused into the UNet weights (``save_pretrained``)."""
    from selma.models import load_pipeline

    pipe = load_pipeline(model)
    pipe.load_lora_weights(str(lora_dir), weight_name=LORA_FILE, adapter_name="merged")
    pipe.fuse_lora(adapter_names=["merged"], lora_scale=1.0)
    pipe.unload_lora_weights()
    pipe.save_pretrained(str(target), safe_serialization=True)
    return target
