"""Stage 3: one LoRA on an image-text dataset, following diffusers' ``train_text_to_image_lora``.

The paper's defaults (``TrainConfig``, from SELMA's ``fine-tune/ft_sd_lora.sh`` and
``ft_sd_lora_sdxl.sh``): rank 128, alpha 128, UNet attention ``to_q/to_k/to_v/to_out.0``, AdamW at
3e-4 constant, gradient clipping 1.0, effective batch 64 (16 x 4 accumulation), 5,000 steps at 512
px for every SD model (SD v2 included; SDXL: 4 x 8, 10,000 steps at 1024 px with the
``madebyollin/sdxl-vae-fp16-fix`` autoencoder), fp16 mixed precision on a GPU, seed 42. Epsilon or v-prediction
comes from the model's scheduler config; SDXL gets its time ids and both text encoders.
Checkpoints (``checkpoint-N``: the LoRA, optimizer, scheduler and RNG states) every N steps, the
newest K kept; ``resume="latest"`` continues from the newest one. The output
``pytorch_lora_weights.safetensors`` loads with plain diffusers ``load_lora_weights``, its alpha
stored as adapter metadata.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from selma import __version__
from selma.errors import SelmaError
from selma.io import atomic_write_json, writing_to
from selma.models import ResolvedModel
from selma.recipe.lora_io import LORA_FILE
from selma.recipe.train_checkpoints import (
    LOSSES,
    MANIFEST,
    latest_checkpoint,
    prune_checkpoints,
    register_hooks,
    save_checkpoint,
    save_lora,
    verify_checkpoint,
)
from selma.recipe.train_config import RESUMABLE, TARGET_MODULES, TrainConfig, effective_config
from selma.recipe.train_data import data_identity, load_image_text_dataset
from selma.recipe.train_inputs import LatentCache, TextEncoder, encode_batch, load_components, step_seed
from selma.recipe.train_validation import ValidationImages
from selma.results.store import make_provenance, now
from selma.stage import check, claim, fault_point

__all__ = [
    "MANIFEST",
    "TARGET_MODULES",
    "TRAINING",
    "TrainConfig",
    "effective_config",
    "latest_checkpoint",
    "train_lora",
    "verify_checkpoint",
]

TRAINING = "training.json"

_NOT_WEIGHTS = ("cache_dir", "report_to", "logging_dir", "validation_prompts", "validation_steps")
"""Settings that change what a run writes beside the weights, never the weights."""


def _identity(model: ResolvedModel, data: list[Any], config: TrainConfig) -> dict[str, Any]:
    """What determines the weights: the model's and the data's content, and the settings (those that may
    change on resumption apart, under ``schedule``).
    """
    from selma.io import content_identity
    from selma.models import model_identity

    settings = {k: v for k, v in asdict(config).items() if k not in RESUMABLE and k not in _NOT_WEIGHTS}
    if config.vae:
        settings["vae"] = content_identity(config.vae)
    return {
        "model": model_identity(model),
        "data": [data_identity(source) for source in data],
        "config": settings,
        "schedule": {k: getattr(config, k) for k in RESUMABLE},
        "version": __version__,
    }


def train_lora(
    model: ResolvedModel,
    data: list[Any],
    out: Path,
    config: TrainConfig,
    *,
    resume: str | None = None,
    device: str | None = None,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Train a LoRA on ``data`` into ``out``: image folders, ``datasets`` sources (hub ids, ``save_to_disk``
    folders, parquet) or ``datasets.Dataset`` objects (see ``load_image_text_dataset``).

    ``out`` is claimed before any work: a finished run with the same settings is not repeated, and
    one with other settings (or a resume with changed settings) is refused unless ``force``.
    """
    started = now()
    if resume not in (None, "latest") and not Path(resume).is_dir():
        raise SelmaError(f"--resume {resume}: no such checkpoint folder (give 'latest' or a checkpoint-N folder)")
    config = effective_config(model, config)
    identity = _identity(model, data, config)
    existing = check(out, "LoRA", identity, force=force, resumable=["schedule"])  # refused before any work
    finished = existing is not None and existing.complete and (out / LORA_FILE).is_file()
    if finished and existing.record.get("steps", 0) >= config.max_train_steps:
        return existing.record
    # the libraries only now: a finished run is answered without importing them (seconds per call)
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig
    from tqdm.auto import tqdm

    if existing is not None and resume is None and latest_checkpoint(out) is not None:
        raise SelmaError(f"{out} has checkpoints of an unfinished run: pass --resume latest, or choose another --out")

    _check_tracker(config.report_to)
    cuda = torch.cuda.is_available() and device != "cpu"
    precision = config.mixed_precision if config.mixed_precision != "auto" else ("fp16" if cuda else "no")
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=precision,
        cpu=not cuda,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=config.logging_dir or str(out / "logs")),
        log_with=config.report_to,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
    )
    set_seed(config.seed)
    parts = load_components(model, accelerator.device, config.vae)
    unet, vae = parts["unet"], parts["vae"]
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    sdxl = model.spec.family == "sdxl"
    for name in ("vae", "text_encoder", "text_encoder_2", "unet"):
        # SDXL's own VAE overflows in fp16: diffusers' SDXL script keeps it in fp32 unless another
        # autoencoder is given (SELMA gives the fp16-fix one, which then runs in fp16)
        keep_fp32 = precision == "no" or (sdxl and name == "vae" and config.vae is None)
        if parts.get(name) is not None:
            parts[name].to(accelerator.device, **({} if keep_fp32 else {"dtype": weight_dtype}))
    lora_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        init_lora_weights="gaussian",
        target_modules=list(config.target_modules),
    )
    unet.add_adapter(lora_config)
    if precision != "no":
        cast_training_params(unet, dtype=torch.float32)
    noise_scheduler = DDPMScheduler.from_pretrained(model.source, subfolder="scheduler", **model.load_kwargs)
    assert config.resolution is not None
    resolution = config.resolution

    dataset = load_image_text_dataset(
        data,
        image_column=config.image_column,
        caption_column=config.caption_column,
        limit=config.limit,
        config=config.dataset_config,
        split=config.split,
    )
    encoder = TextEncoder(parts, accelerator.device)
    cache_folder = tempfile.TemporaryDirectory(prefix="selma-latents-", dir=config.cache_dir) if config.cache else None
    cache = (
        LatentCache(dataset, vae, encoder, resolution, weight_dtype, Path(cache_folder.name), progress)
        if cache_folder is not None
        else None
    )

    def collate(indices: list[int]) -> list[int]:
        return indices

    loader = torch.utils.data.DataLoader(
        list(range(len(dataset))), batch_size=config.train_batch_size, shuffle=True, collate_fn=collate
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
        eps=config.adam_epsilon,
    )
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_train_steps * accelerator.num_processes,
    )
    register_hooks(accelerator, unet, lora_config, sdxl)
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    # claimed once the model and the data have loaded: a failure up to here leaves nothing behind
    claimed = claim(out, "LoRA", identity, force=force, resumable=["schedule"])

    updates_per_epoch = math.ceil(len(loader) / config.gradient_accumulation_steps)
    global_step, first_epoch, skip = 0, 0, 0
    losses: list[float] = []
    if resume is not None:
        checkpoint = latest_checkpoint(out) if resume == "latest" else Path(resume)
        if checkpoint is not None:
            verify_checkpoint(checkpoint)
            accelerator.load_state(str(checkpoint))
            global_step = int(checkpoint.name.split("-")[1])
            first_epoch = global_step // updates_per_epoch
            skip = (global_step % updates_per_epoch) * config.gradient_accumulation_steps
            losses = json.loads((checkpoint / LOSSES).read_text(encoding="utf-8"))[:global_step]

    if config.report_to and accelerator.is_main_process:
        accelerator.init_trackers(
            "selma-lora", config={k: str(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
        )
    validation = ValidationImages(model, parts, config, out, precision)
    bar = tqdm(
        total=config.max_train_steps,
        initial=global_step,
        desc=f"train {out.name}",
        disable=not (progress and accelerator.is_main_process),
    )
    epochs = math.ceil(config.max_train_steps / updates_per_epoch)
    for epoch in range(first_epoch, epochs):
        unet.train()
        if hasattr(loader, "set_epoch"):  # before skipping: the skipped loader shuffles with this epoch's order
            loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if epoch == first_epoch and skip else loader
        accumulated, micro = 0.0, 0
        for indices in batches:
            with accelerator.accumulate(unet):
                # every random draw of a micro-batch comes from (seed, step, micro-batch, process): a resumed
                # run draws exactly what an uninterrupted one would, wherever it was interrupted
                rng = torch.Generator().manual_seed(
                    step_seed(config.seed, global_step, micro, accelerator.process_index)
                )
                micro += 1
                n = len(indices)
                flips = (torch.rand(n, generator=rng) < 0.5).tolist() if config.random_flip else [False] * n
                if cache is not None:
                    latents, hidden, pooled, time_ids = cache.batch(indices, flips, rng)
                else:
                    latents, hidden, pooled, time_ids = encode_batch(
                        dataset, indices, flips, vae, encoder, resolution, weight_dtype, rng
                    )
                noise = torch.randn(latents.shape, generator=rng, dtype=latents.dtype).to(latents.device)
                timesteps = torch.randint(
                    0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=rng
                ).to(latents.device)
                noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                if noise_scheduler.config.prediction_type == "v_prediction":
                    target = noise_scheduler.get_velocity(latents, noise, timesteps)
                else:
                    target = noise
                kwargs = {}
                if sdxl:
                    kwargs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
                pred = unet(noisy, timesteps, hidden, return_dict=False, **kwargs)[0]
                loss = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="mean")
                accumulated += accelerator.gather(loss.detach()).mean().item() / config.gradient_accumulation_steps
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                global_step += 1
                losses.append(accumulated)
                accumulated, micro = 0.0, 0
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
                if config.report_to:
                    accelerator.log({"loss": losses[-1], "lr": lr_scheduler.get_last_lr()[0]}, step=global_step)
                if accelerator.is_main_process and validation.due(global_step):
                    validation.render(accelerator, accelerator.unwrap_model(unet), global_step)
                if global_step % config.checkpointing_steps == 0 and accelerator.is_main_process:
                    prune_checkpoints(out, config.checkpoints_total_limit)
                    save_checkpoint(accelerator, out, global_step, losses)
                fault_point("train.step")
                if global_step >= config.max_train_steps:
                    break
        if global_step >= config.max_train_steps:
            break
    bar.close()
    accelerator.wait_for_everyone()
    result: dict[str, Any] = {}
    if accelerator.is_main_process:
        if validation.prompts and not validation.done(global_step):
            validation.render(accelerator, accelerator.unwrap_model(unet), global_step)
        with writing_to(out):
            save_lora(accelerator.unwrap_model(unet), out, sdxl)
        provenance = make_provenance(identity, {}, seed=config.seed, started_at=started)
        result = {
            "config_hash": claimed.digest,
            "steps": global_step,
            "model": model.spec.name,
            "family": model.spec.family,
            "data": [source if isinstance(source, str) else data_identity(source) for source in data],
            "n_examples": len(dataset),
            "losses": losses,
            "train_config": asdict(config),
            "provenance": provenance.model_dump(),
        }
        atomic_write_json(out / TRAINING, result)
        claimed.finish({k: v for k, v in result.items() if k != "provenance"})
    accelerator.end_training()
    if cache is not None and cache_folder is not None:
        cache.close()
        cache_folder.cleanup()
    return result


def _check_tracker(name: str | None) -> None:
    """A tracker that is not installed is an error (accelerate would drop it silently)."""
    if name is None:
        return
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    available = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available}
    if name not in available:
        raise SelmaError(f"--report-to {name}: choose one of {', '.join(available)}")
    if not available[name]():
        extra = "pip install 'selma-bench[tracking]'" if name == "tensorboard" else "pip install wandb"
        raise SelmaError(f"--report-to {name}: {name} is not installed ({extra})")
