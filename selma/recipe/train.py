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

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from selma import __version__
from selma.errors import SelmaError
from selma.finite import check_finite_file
from selma.io import atomic_write_json, sha256_file, writing_to
from selma.models import ResolvedModel
from selma.recipe.lora_io import LORA_FILE, pipeline_class, save_unet_lora
from selma.recipe.train_data import data_identity, decode_image, load_image_text_dataset, prepare_image
from selma.results.store import make_provenance, now
from selma.stage import check, claim, fault_point

TRAINING = "training.json"
TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one LoRA run (the defaults are the paper's SD v1.4/v2 recipe)."""

    rank: int = 128
    alpha: int = 128
    target_modules: tuple[str, ...] = TARGET_MODULES
    learning_rate: float = 3e-4
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    train_batch_size: int = 16
    gradient_accumulation_steps: int = 4
    max_train_steps: int = 5000
    resolution: int | None = None  # default: SELMA's script's (512 for SD, 1024 for SDXL), else native
    vae: str | None = None  # default: SELMA's script's (SDXL: madebyollin/sdxl-vae-fp16-fix), else the pipeline's
    random_flip: bool = True
    mixed_precision: str = "auto"  # fp16 on a GPU, none on a CPU
    seed: int = 42
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = None
    cache: bool = False  # cache VAE latents (both flips) and text embeddings, on disk
    cache_dir: str | None = None  # where the cache's files go (default: the system's temporary folder)
    report_to: str | None = None  # an accelerate tracker: "tensorboard", "wandb" (WANDB_MODE=offline works), ...
    logging_dir: str | None = None  # the tracker's folder (default: <out>/logs)
    validation_prompts: tuple[str, ...] = ()  # rendered every validation_steps into <out>/validation/step-N/
    validation_steps: int = 500
    image_column: str = "image"
    caption_column: str = "text"
    dataset_config: str | None = None  # of a `datasets.load_dataset` source
    split: str = "train"
    limit: int | None = None

    @classmethod
    def for_model(cls, model: ResolvedModel, **overrides: Any) -> TrainConfig:
        """SELMA's settings for ``model``'s family (SD: 16 x 4, 5,000 steps, checkpoints every 500; SDXL:
        4 x 8, 10,000 steps, every 2,000, from ``ft_sd_lora_sdxl.sh``), with ``overrides`` (``None`` values
        keep the default).
        """
        family = SDXL_DEFAULTS if model.spec.family == "sdxl" else {}
        return cls(**{**family, **{k: v for k, v in overrides.items() if v is not None}})


SDXL_DEFAULTS = {
    "train_batch_size": 4,
    "gradient_accumulation_steps": 8,
    "max_train_steps": 10000,
    "checkpointing_steps": 2000,
}
# Settings that may change between an interrupted run and its resumption.
_RESUMABLE = ("max_train_steps", "checkpointing_steps", "checkpoints_total_limit")
MANIFEST = "manifest.json"  # each checkpoint's files and their sha256, checked before a resume loads them
LOSSES = "losses.json"


def effective_config(model: ResolvedModel, config: TrainConfig) -> TrainConfig:
    """``config`` with the model's training defaults filled in (resolution, autoencoder)."""
    from dataclasses import replace

    return replace(
        config,
        resolution=config.resolution or model.spec.train_resolution or model.spec.resolution,
        vae=config.vae or model.spec.train_vae,
    )


_NOT_WEIGHTS = ("cache_dir", "report_to", "logging_dir", "validation_prompts", "validation_steps")
"""Settings that change what a run writes beside the weights, never the weights."""


def _identity(model: ResolvedModel, data: list[Any], config: TrainConfig) -> dict[str, Any]:
    """What determines the weights: the model's and the data's content, and the settings (those that may
    change on resumption apart, under ``schedule``).
    """
    from selma.io import content_identity
    from selma.models import model_identity

    settings = {k: v for k, v in asdict(config).items() if k not in _RESUMABLE and k not in _NOT_WEIGHTS}
    if config.vae:
        settings["vae"] = content_identity(config.vae)
    return {
        "model": model_identity(model),
        "data": [data_identity(source) for source in data],
        "config": settings,
        "schedule": {k: getattr(config, k) for k in _RESUMABLE},
        "version": __version__,
    }


def latest_checkpoint(out: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder in ``out``."""
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


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
    parts = _load_components(model, accelerator.device, config.vae)
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
    encoder = _TextEncoder(parts, accelerator.device)
    cache_folder = tempfile.TemporaryDirectory(prefix="selma-latents-", dir=config.cache_dir) if config.cache else None
    cache = (
        _Cache(dataset, vae, encoder, resolution, weight_dtype, Path(cache_folder.name), progress)
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
    _register_hooks(accelerator, unet, lora_config, sdxl)
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
    validation = _Validation(model, parts, config, out, precision)
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
                    _step_seed(config.seed, global_step, micro, accelerator.process_index)
                )
                micro += 1
                n = len(indices)
                flips = (torch.rand(n, generator=rng) < 0.5).tolist() if config.random_flip else [False] * n
                if cache is not None:
                    latents, hidden, pooled, time_ids = cache.batch(indices, flips, rng)
                else:
                    latents, hidden, pooled, time_ids = _encode_batch(
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
                    _prune_checkpoints(out, config.checkpoints_total_limit)
                    _save_checkpoint(accelerator, out, global_step, losses)
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
            _save_lora(accelerator.unwrap_model(unet), out, sdxl)
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


def _save_checkpoint(accelerator: Any, out: Path, step: int, losses: list[float]) -> None:
    """Save ``checkpoint-<step>`` atomically (a run killed while saving leaves no half-written checkpoint),
    with the losses so far and a manifest of its files' sha256.
    """
    from accelerate.utils import set_seed

    tmp = out / f".checkpoint-{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    # training draws nothing from the global generators; seeding them by step makes the saved RNG states
    # (and so the checkpoint's bytes) the same in a resumed run as in an uninterrupted one
    set_seed(int(hashlib.sha256(f"checkpoint\0{step}".encode()).hexdigest()[:8], 16))
    try:  # a full disk leaves no half-written checkpoint behind
        with writing_to(out):
            accelerator.save_state(str(tmp))
        (tmp / LOSSES).write_text(json.dumps(losses), encoding="utf-8")
        manifest = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(out / f"checkpoint-{step}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def verify_checkpoint(checkpoint: Path) -> None:
    """Refuse a checkpoint whose files changed since they were saved (accelerate unpickles some of them)."""
    if not checkpoint.is_dir():
        raise SelmaError(f"{checkpoint}: no such checkpoint folder")
    manifest_path = checkpoint / MANIFEST
    if not manifest_path.is_file():
        raise SelmaError(f"{checkpoint}: no {MANIFEST}; it was not saved by selma-bench and is not loaded")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    present = {p.name for p in checkpoint.iterdir() if p.is_file() and p.name != MANIFEST}
    for name in sorted(present | set(manifest)):
        if name not in manifest or name not in present or sha256_file(checkpoint / name) != manifest[name]:
            raise SelmaError(
                f"{checkpoint / name}: changed, added or removed since the checkpoint was saved; "
                "refusing to load it (train again without --resume, or restore the file)"
            )
    for name in sorted(present):
        if name.endswith(".safetensors"):
            check_finite_file(checkpoint / name)


def _prune_checkpoints(out: Path, limit: int | None) -> None:
    """Keep at most ``limit - 1`` checkpoints before a new one is saved (diffusers' convention)."""
    if limit is None:
        return
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for old in checkpoints[: max(0, len(checkpoints) - limit + 1)]:
        shutil.rmtree(old)


def _load_components(model: ResolvedModel, device: Any, vae: str | None = None) -> dict[str, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    from selma.models import load_component, load_vae

    source, pinned = model.source, model.load_kwargs
    if vae is not None:
        try:
            autoencoder = AutoencoderKL.from_pretrained(vae)
        except OSError as exc:
            raise SelmaError(
                f"cannot load the training autoencoder {vae!r} ({str(exc).splitlines()[0][:160]}); "
                "give a local copy with --vae PATH"
            ) from None
    else:
        autoencoder = load_vae(model)
    parts: dict[str, Any] = {
        "tokenizer": AutoTokenizer.from_pretrained(source, subfolder="tokenizer", use_fast=False, **pinned),
        "text_encoder": load_component(model, "text_encoder", CLIPTextModel),
        "vae": autoencoder,
        "unet": load_component(model, "unet", UNet2DConditionModel),
        "sdxl": model.spec.family == "sdxl",
    }
    if parts["sdxl"]:
        parts["tokenizer_2"] = AutoTokenizer.from_pretrained(source, subfolder="tokenizer_2", use_fast=False, **pinned)
        parts["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(
            source, subfolder="text_encoder_2", **pinned
        )
    for name in ("vae", "text_encoder", "text_encoder_2", "unet"):
        if name in parts:
            parts[name].requires_grad_(False)
    return parts


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


class _Validation:
    """Validation prompts rendered with the LoRA being trained (diffusers' ``log_validation``): PNGs in
    ``<out>/validation/step-<N>/`` and, with a tracker, the same images in its log.
    """

    def __init__(self, model: ResolvedModel, parts: dict[str, Any], config: TrainConfig, out: Path, precision: str):
        self.model, self.parts, self.out, self.precision = model, parts, out, precision
        self.prompts, self.every, self.seed = list(config.validation_prompts), config.validation_steps, config.seed
        self.resolution = config.resolution

    def due(self, step: int) -> bool:
        """Whether ``step`` renders the validation prompts."""
        return bool(self.prompts) and step % self.every == 0

    def done(self, step: int) -> bool:
        """Whether ``step``'s images exist (``prompts.txt`` is written after the last one)."""
        return (self.out / "validation" / f"step-{step}" / "prompts.txt").is_file()

    def render(self, accelerator: Any, unet: Any, step: int) -> Path:
        """Render every prompt at ``step`` (fixed seeds, the model's steps and guidance) and log the images."""
        import contextlib

        import numpy as np
        import torch

        family = self.model.spec.family
        components = {
            k: self.parts[k]
            for k in ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
            if self.parts.get(k) is not None
        }
        extra = {} if family == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
        pipe = pipeline_class(family).from_pretrained(
            self.model.source, unet=unet, **components, **extra, **self.model.load_kwargs
        )
        pipe.set_progress_bar_config(disable=True)
        folder = self.out / "validation" / f"step-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        autocast = torch.autocast(accelerator.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        unet.eval()
        images = []
        with torch.no_grad(), autocast:
            for i, prompt in enumerate(self.prompts):
                image = pipe(
                    prompt,
                    num_inference_steps=self.model.spec.steps,
                    guidance_scale=self.model.spec.guidance_scale,
                    height=self.resolution,
                    width=self.resolution,
                    generator=torch.Generator().manual_seed(self.seed + i),
                ).images[0]
                image.save(folder / f"{i:02d}.png")
                images.append(image)
        unet.train()
        (folder / "prompts.txt").write_text("".join(f"{p}\n" for p in self.prompts), encoding="utf-8")
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                for i, image in enumerate(images):
                    tracker.writer.add_image(f"validation/{i:02d}", np.asarray(image), step, dataformats="HWC")
            elif tracker.name == "wandb":
                import wandb

                logged = [wandb.Image(im, caption=p) for im, p in zip(images, self.prompts, strict=True)]
                tracker.log({"validation": logged}, step=step)
        return folder


class _TextEncoder:
    """Frozen text encoding: SD's last hidden state, or SDXL's two penultimate states and pooled output."""

    def __init__(self, parts: dict[str, Any], device: Any) -> None:
        self.parts = parts
        self.device = device

    def __call__(self, captions: list[str]) -> tuple[Any, Any]:
        import torch

        def ids(tokenizer: Any) -> Any:
            return tokenizer(
                captions,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)

        with torch.no_grad():
            if not self.parts["sdxl"]:
                return self.parts["text_encoder"](ids(self.parts["tokenizer"]), return_dict=False)[0], None
            first = self.parts["text_encoder"](ids(self.parts["tokenizer"]), output_hidden_states=True)
            second = self.parts["text_encoder_2"](ids(self.parts["tokenizer_2"]), output_hidden_states=True)
            hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
            return hidden, second.text_embeds


def _time_ids(prepared: Any, resolution: int) -> list[int]:
    return [*prepared.original_size, *prepared.crop_top_left, resolution, resolution]


def _step_seed(seed: int, step: int, micro: int, process: int) -> int:
    digest = hashlib.sha256(f"{seed}\0{step}\0{micro}\0{process}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _encode_batch(
    dataset: Any,
    indices: list[int],
    flips: list[bool],
    vae: Any,
    encoder: _TextEncoder,
    resolution: int,
    dtype: Any,
    rng: Any,
) -> tuple[Any, Any, Any, Any]:
    import torch

    rows = [dataset[i] for i in indices]
    prepared = [prepare_image(decode_image(row["image"]), resolution) for row in rows]
    pixels = torch.stack([p.pixels.flip(-1) if f else p.pixels for p, f in zip(prepared, flips, strict=True)])
    with torch.no_grad():
        dist = vae.encode(pixels.to(vae.device, dtype=vae.dtype)).latent_dist
        sample = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=rng, dtype=dist.mean.dtype).to(
            dist.mean.device
        )
        latents = sample * vae.config.scaling_factor
        latents = latents.to(dtype)
    hidden, pooled = encoder([row["text"] for row in rows])
    time_ids = torch.tensor([_time_ids(p, resolution) for p in prepared], device=latents.device, dtype=hidden.dtype)
    return latents, hidden, pooled, time_ids


class _Cache:
    """VAE latent distributions of each image (unflipped and flipped) and its text embeddings, computed once
    and kept on disk as memory-mapped float32 arrays: a batch is read and moved to the device when drawn, so
    the cache scales to SDXL at 1024 px x 10,000 images (about 10 GB of latents) without holding it in
    accelerator or CPU memory. The draw from each distribution is the uncached path's, from the same
    generator, so cached and uncached training see the same latents.
    """

    def __init__(
        self, dataset: Any, vae: Any, encoder: _TextEncoder, resolution: int, dtype: Any, folder: Path, progress: bool
    ) -> None:
        import numpy as np
        import torch
        from tqdm.auto import tqdm

        self.vae, self.dtype, self.device = vae, dtype, vae.device
        self.arrays: dict[str, Any] = {}
        with torch.no_grad():
            for i in tqdm(range(len(dataset)), desc="cache latents", disable=not progress):
                row = dataset[i]
                prepared = prepare_image(decode_image(row["image"]), resolution)
                pixels = torch.stack([prepared.pixels, prepared.pixels.flip(-1)]).to(vae.device, dtype=vae.dtype)
                dist = vae.encode(pixels).latent_dist
                hidden, pooled = encoder([row["text"]])
                values = {
                    "mean": dist.mean,
                    "std": dist.std,
                    "hidden": hidden[0],
                    "pooled": None if pooled is None else pooled[0],
                    "time_ids": torch.tensor(_time_ids(prepared, resolution)),
                }
                for name, value in values.items():
                    if value is None:
                        continue
                    if name not in self.arrays:
                        self.arrays[name] = np.lib.format.open_memmap(
                            folder / f"{name}.npy", mode="w+", dtype=np.float32, shape=(len(dataset), *value.shape)
                        )
                    self.arrays[name][i] = value.detach().float().cpu().numpy()
        for array in self.arrays.values():
            array.flush()

    def close(self) -> None:
        """Release the memory maps (their files can then be removed)."""
        self.arrays.clear()

    def _rows(self, name: str, indices: list[int], dtype: Any) -> Any:
        import numpy as np
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.arrays[name][indices])).to(self.device, dtype=dtype)

    def batch(self, indices: list[int], flips: list[bool], rng: Any) -> tuple[Any, Any, Any, Any]:
        """Latents (a fresh draw), text embeddings, pooled embeddings and SDXL time ids of a batch."""
        import torch

        which = torch.tensor([int(f) for f in flips])
        pick = torch.arange(len(indices))
        means = self._rows("mean", indices, self.vae.dtype)[pick, which]
        stds = self._rows("std", indices, self.vae.dtype)[pick, which]
        draw = torch.randn(means.shape, generator=rng, dtype=means.dtype).to(means.device)
        latents = ((means + stds * draw) * self.vae.config.scaling_factor).to(self.dtype)
        hidden = self._rows("hidden", indices, self.dtype)
        pooled = self._rows("pooled", indices, self.dtype) if "pooled" in self.arrays else None
        time_ids = self._rows("time_ids", indices, hidden.dtype)
        return latents, hidden, pooled, time_ids


def _save_lora(unet: Any, directory: Path, sdxl: bool) -> None:
    from peft.utils import get_peft_model_state_dict

    save_unet_lora(get_peft_model_state_dict(unet), unet.peft_config["default"], directory, "sdxl" if sdxl else "sd1")


def _register_hooks(accelerator: Any, unet: Any, lora_config: Any, sdxl: bool) -> None:
    """Checkpoints hold the LoRA (not the whole UNet) beside accelerate's optimizer and RNG states."""
    from diffusers.utils import convert_unet_state_dict_to_peft
    from peft.utils import set_peft_model_state_dict

    unet_type = type(accelerator.unwrap_model(unet))

    def save_hook(models: list[Any], weights: list[Any], output_dir: str) -> None:
        for model in models:
            if isinstance(accelerator.unwrap_model(model), unet_type):
                _save_lora(accelerator.unwrap_model(model), Path(output_dir), sdxl)
            if weights:
                weights.pop()

    def load_hook(models: list[Any], input_dir: str) -> None:
        while models:
            model = accelerator.unwrap_model(models.pop())
            state, _ = pipeline_class("sdxl" if sdxl else "sd1").lora_state_dict(input_dir, weight_name=LORA_FILE)
            state = {k.replace("unet.", "", 1): v for k, v in state.items() if k.startswith("unet.")}
            incompatible = set_peft_model_state_dict(
                model, convert_unet_state_dict_to_peft(state), adapter_name="default"
            )
            if incompatible is not None and getattr(incompatible, "unexpected_keys", None):
                raise SelmaError(f"{input_dir}: unexpected LoRA keys {incompatible.unexpected_keys[:3]}")

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)
