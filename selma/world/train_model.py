"""Train a shapes-world text-to-image model from scratch, and measure it exactly.

Every batch is drawn afresh from the world's grammar (a quarter single objects, the rest the four
skills; held-out colour-shape pairs never appear) and rendered, from a random state keyed by
``(seed, step)``: a run is deterministic under its seed and resumes exactly from a checkpoint.
UNet and text encoder train together (v-prediction MSE, AdamW, 10 % empty captions for
classifier-free guidance); an exponential moving average of the weights is what gets evaluated and
exported. Every ``eval_every`` steps the EMA pipeline is saved with ``save_pretrained`` and scored
per skill by the exact evaluator; the log is ``<out>/log.jsonl``.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from selma.errors import SelmaError
from selma.io import load_state, save_state
from selma.world.scenes import HELD_OUT, SKILLS, CaptionNoise, Scene, noisy_caption, render, sample_scene

TRAIN_SKILLS = ("object", *SKILLS)
TRAIN_WEIGHTS = (0.25, *(0.75 / len(SKILLS),) * len(SKILLS))
STATE_DIR = "state"  # safetensors + JSON (never a pickle: a planted file cannot run code)


@dataclass(frozen=True)
class WorldTrainConfig:
    """Hyper-parameters of a world model's training run."""

    architecture: str = "base"
    steps: int = 12000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 500
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    caption_dropout: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 0
    eval_every: int = 1000
    eval_per_skill: int = 32
    checkpoint_every: int = 500
    caption_noise: CaptionNoise = field(default_factory=CaptionNoise)
    """How incompletely training captions describe their images (none: every caption complete)."""
    skill_weights: tuple[float, ...] = TRAIN_WEIGHTS
    """Share of each of ``TRAIN_SKILLS`` (object, count, binding, spatial, count_binding) in a batch."""
    noise_skills: tuple[str, ...] | None = None
    """The skills whose captions ``caption_noise`` applies to (``None``: all of them)."""
    spatial_jitter: int | None = None
    """Spatial scenes in canonical layouts: the two objects a quarter and three quarters along the relation's
    axis, moved by at most this many pixels (``None``: anywhere the relation holds). A curriculum for relations:
    the layout a caption asks for becomes a sharp target instead of a broad average."""
    timestep_bias_multiplier: float = 1.0
    timestep_bias_portion: float = 0.25
    """diffusers' SDXL training-script timestep bias, strategy "later": the noisiest ``portion`` of the
    timesteps drawn ``multiplier`` times as often (1.0: uniform). Layouts, and so spatial relations, are
    decided there: at lower noise the image already shows where each object is."""
    init_from: str | None = None
    """A world pipeline (directory or registry name) whose weights start the run (a warm start); ``None``:
    random initial weights from ``seed``. See :func:`warm_start`."""
    freeze_text_encoder: bool = False
    """Train the UNet alone (a warm start's text encoder kept as it is): a deficit taught then lives where
    SELMA's UNet LoRAs act."""
    coord_init_std: float = 0.0
    """At a warm start into a coordinate UNet: the standard deviation of the new coordinate weights of its
    input convolution, relative to the source's weights (0: zeros, the source's function exactly)."""


@dataclass(frozen=True)
class SamplingSettings:
    """How world images are sampled for evaluation."""

    steps: int = 20
    guidance_scale: float = 4.0
    batch_size: int = 64


def training_batch(
    step: int,
    seed: int,
    size: int,
    noise: CaptionNoise | None = None,
    weights: tuple[float, ...] = TRAIN_WEIGHTS,
    noise_skills: tuple[str, ...] | None = None,
    spatial_jitter: int | None = None,
) -> list[tuple[Scene, Any, str]]:
    """The (scene, rendered image, caption) triples of one training step: a function of (seed, step) only.
    ``noise`` applies to the scenes of ``noise_skills`` (``None``: every skill); the others keep exact captions.
    ``spatial_jitter``: spatial scenes in canonical layouts (:func:`~selma.world.scenes.render`).
    """
    rng = random.Random(f"world-train:{seed}:{step}")
    captions = random.Random(f"world-captions:{seed}:{step}")
    batch = []
    for _ in range(size):
        scene = sample_scene(rng.choices(TRAIN_SKILLS, weights)[0], rng, held_out=True)
        image = render(scene, rng, spatial_jitter=spatial_jitter)
        noisy = noise is not None and (noise_skills is None or scene.skill in noise_skills)
        batch.append((scene, image, noisy_caption(scene, noise if noisy else CaptionNoise(), captions)))
    return batch


def _pixels(images: list[Any]) -> Any:
    import numpy as np
    import torch

    array = np.stack([np.asarray(image, dtype=np.float32) for image in images]) / 127.5 - 1.0
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def train_world_model(
    config: WorldTrainConfig,
    out: Path,
    *,
    threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    command: str | None = None,
) -> dict[str, Any]:
    """Train (or resume) a world model into ``out``; returns the last evaluation record.

    ``command`` (the command line that started this invocation) is appended to ``<out>/commands.txt``.
    """
    import torch
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    from selma.world.model import ARCHITECTURES, build_world_pipeline

    if config.architecture not in ARCHITECTURES:
        raise SelmaError(f"unknown world architecture {config.architecture!r}: one of {', '.join(ARCHITECTURES)}")
    unknown = [skill for skill in config.noise_skills or () if skill not in TRAIN_SKILLS]
    if unknown:
        raise SelmaError(f"unknown world skill {unknown[0]!r} in noise skills: one of {', '.join(TRAIN_SKILLS)}")
    if threads:
        torch.set_num_threads(threads)
    # the model first: a warm start that cannot load leaves no half-made run behind
    pipe = build_world_pipeline(ARCHITECTURES[config.architecture], config.seed)
    pipe.set_progress_bar_config(disable=True)
    state_path = out / STATE_DIR
    source = None
    if config.init_from and not state_path.is_dir():
        source = warm_start(pipe, config.init_from, coord_std=config.coord_init_std, seed=config.seed)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "config.json"
    wanted = json.loads(json.dumps(asdict(config)))
    if settings.is_file():  # more steps may be asked of a finished run (the learning rate is constant)
        stored = json.loads(settings.read_text(encoding="utf-8"))
        # settings added since a run was started read as their defaults, which are what it ran with
        defaults = json.loads(json.dumps(asdict(WorldTrainConfig())))
        old = {**defaults, **stored, "caption_noise": {**defaults["caption_noise"], **stored.get("caption_noise", {})}}
        old.pop("steps")
        if old != {k: v for k, v in wanted.items() if k != "steps"}:
            raise SelmaError(f"{out} holds a world model trained with other settings; choose another --out")
    settings.write_text(json.dumps(wanted, indent=2), encoding="utf-8")
    if command:
        with (out / "commands.txt").open("a", encoding="utf-8") as handle:
            handle.write(command + "\n")

    if source is not None:
        (out / "init_from.json").write_text(json.dumps(source, indent=2), encoding="utf-8")
    unet, text_encoder, tokenizer, vae = pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.vae
    if config.freeze_text_encoder:
        text_encoder.requires_grad_(False)
    params = list(unet.parameters()) + ([] if config.freeze_text_encoder else list(text_encoder.parameters()))
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer=optimizer, num_warmup_steps=config.warmup_steps)
    ema = EMAModel(params, decay=config.ema_decay)
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    weights = timestep_weights(
        noise_scheduler.config.num_train_timesteps, config.timestep_bias_multiplier, config.timestep_bias_portion
    )
    step = 0
    if state_path.is_dir():
        state = load_state(state_path)
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        optimizer.load_state_dict(state["optimizer"])
        lr_scheduler.load_state_dict(state["lr_scheduler"])
        ema.load_state_dict(state["ema"])
        step = state["step"]
        log(f"resumed {out} at step {step}")

    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt")
    bar = tqdm(total=config.steps, initial=step, desc=f"world {config.architecture}", disable=not progress)
    record: dict[str, Any] = {}
    started = time.monotonic()
    unet.train()
    text_encoder.train()
    while step < config.steps:
        batch = training_batch(
            step,
            config.seed,
            config.batch_size,
            config.caption_noise,
            config.skill_weights,
            config.noise_skills,
            config.spatial_jitter,
        )
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        captions = [caption for _, _, caption in batch]
        ids = tokenizer(
            captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids
        drop = torch.rand(len(batch), generator=generator) < config.caption_dropout
        ids[drop] = empty.input_ids[0]
        with torch.no_grad():
            latents = vae.encode(_pixels([image for _, image, _ in batch])).latent_dist.mode()
        noise = torch.randn(latents.shape, generator=generator)
        if config.timestep_bias_multiplier == 1.0:  # uniform, drawn as the runs before the bias existed
            timesteps = torch.randint(0, len(weights), (len(batch),), generator=generator)
        else:
            timesteps = torch.multinomial(weights, len(batch), replacement=True, generator=generator)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
        pred = unet(noisy, timesteps, text_encoder(ids)[0]).sample
        loss = torch.nn.functional.mse_loss(pred, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(params)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_state(
                state_path,
                {
                    "unet": unet.state_dict(),
                    "text_encoder": text_encoder.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "lr_scheduler": lr_scheduler.state_dict(),
                    "ema": ema.state_dict(),
                    "step": step,
                },
            )
        if step % config.eval_every == 0 or step == config.steps:
            record = _evaluate_and_export(pipe, ema, params, out, step, config, loss.item(), started)
            log(json.dumps(record))
            unet.train()
            text_encoder.train()
    bar.close()
    return record


def timestep_weights(timesteps: int, multiplier: float, portion: float) -> Any:
    """Sampling weights of the training timesteps, as diffusers' ``generate_timestep_weights`` with strategy
    "later": the last ``portion`` of them weighted ``multiplier`` times (uniform at 1.0).
    """
    import torch

    if multiplier <= 0 or not 0 < portion <= 1:
        raise SelmaError(
            f"timestep bias: multiplier must be positive and portion in (0, 1] (got {multiplier}, {portion})"
        )
    weights = torch.ones(timesteps)
    weights[timesteps - int(portion * timesteps) :] *= multiplier
    return weights / weights.sum()


def warm_start(pipe: Any, source: str, *, coord_std: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Load the UNet and text-encoder weights of world pipeline ``source`` into ``pipe`` (built with the same
    sizes). A coordinate input convolution (:class:`~selma.world.model.CoordConv2d`) gets the source's
    weights for the image channels; its coordinate weights are zeros (``coord_std`` 0: the warm-started
    model computes exactly what the source does) or normal with ``coord_std`` times the standard deviation
    of the source's weights, from ``seed`` (positional features from the first step). Returns the source's
    identity: its path and the sha256 of each weight file.
    """
    import hashlib

    import torch

    from selma.models import load_pipeline, resolve_model

    resolved = resolve_model(source)
    loaded = load_pipeline(resolved)
    for name in ("unet", "text_encoder"):
        target, given = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        new = set(getattr(getattr(pipe, name), "new_at_warm_start", ()))
        missing, unknown = sorted(set(target) - set(given) - new), sorted(set(given) - set(target))
        if missing or unknown:
            raise SelmaError(
                f"cannot warm-start from {source}: its {name} has other layers "
                f"(missing {missing[:3]}, unknown {unknown[:3]})"
            )
        for key, value in given.items():
            wanted = target[key].shape
            if value.shape == wanted:
                target[key] = value
            elif key == "conv_in.weight" and wanted[1] == value.shape[1] + 2 and wanted[0] == value.shape[0]:
                generator = torch.Generator().manual_seed(seed)
                coords = torch.randn(wanted[0], 2, *wanted[2:], generator=generator) * coord_std * value.std()
                target[key] = torch.cat([value, coords.to(value.dtype)], dim=1)
            else:
                raise SelmaError(
                    f"cannot warm-start from {source}: {name}.{key} is {tuple(value.shape)}, not {tuple(wanted)}"
                )
        getattr(pipe, name).load_state_dict(target)
    files = sorted(Path(resolved.source).glob("*/*.safetensors"))
    return {
        "source": source,
        "coord_init_std": coord_std,
        "path": str(resolved.source),
        "sha256": {str(f.relative_to(resolved.source)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files},
    }


def _evaluate_and_export(
    pipe: Any, ema: Any, params: list[Any], out: Path, step: int, config: WorldTrainConfig, loss: float, started: float
) -> dict[str, Any]:
    ema.store(params)
    ema.copy_to(params)
    try:
        pipe.unet.eval()
        pipe.text_encoder.eval()
        target = out / f"pipeline-{step:06d}"
        tmp = out / f".pipeline-{step:06d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        pipe.save_pretrained(tmp, safe_serialization=True)
        if (tmp / "tokenizer" / "tokenizer.json").is_file():
            from selma.models.tokenizer import write_slow_clip_files

            write_slow_clip_files(tmp / "tokenizer")  # loadable by transformers 4 as well
        shutil.rmtree(target, ignore_errors=True)
        tmp.replace(target)
        scores = evaluate_world_pipeline(pipe, per_skill=config.eval_per_skill, seed=config.seed)
    finally:
        ema.restore(params)
    record = {"step": step, "loss": round(loss, 5), "seconds": round(time.monotonic() - started, 1), **scores}
    with (out / "log.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def training_phases(run: Path, step: int) -> list[dict[str, Any]]:
    """The chain of training runs behind ``run``'s pipeline at ``step``, earliest first: for each run its
    directory, settings (architecture, steps, caption noise, seed, ...), the commands that ran it, the
    warm start it began from (source, path, sha256 of each weight file) and its evaluations up to the
    step used. A warm start from a pipeline saved by another run (``<run>/pipeline-<step>``) adds that run.
    """
    phases: list[dict[str, Any]] = []
    current: Path | None = run
    while current is not None and (current / "config.json").is_file():
        config = json.loads((current / "config.json").read_text(encoding="utf-8"))
        log_file, commands_file = current / "log.jsonl", current / "commands.txt"
        log = (
            [json.loads(x) for x in log_file.read_text(encoding="utf-8").splitlines() if x.strip()]
            if log_file.is_file()
            else []
        )
        init_file = current / "init_from.json"
        init = json.loads(init_file.read_text(encoding="utf-8")) if init_file.is_file() else None
        phases.insert(
            0,
            {
                "run": str(current),
                "config": {**config, "steps": step},
                "commands": commands_file.read_text(encoding="utf-8").splitlines() if commands_file.is_file() else [],
                "init_from": init,
                "log": [entry for entry in log if entry["step"] <= step],
            },
        )
        current, step = None, 0
        if init is not None:
            source = Path(init["path"])
            if source.name.startswith("pipeline-") and (source.parent / "config.json").is_file():
                current, step = source.parent, int(source.name.removeprefix("pipeline-"))
    return phases


def evaluate_world_pipeline(
    pipe: Any, *, per_skill: int, seed: int, sampling: SamplingSettings = SamplingSettings()
) -> dict[str, Any]:
    """Per-skill scores of ``pipe`` on ``per_skill`` fresh suite-style prompts of each skill.

    ``caption``: the share of images whose every question is answered yes (caption-level accuracy);
    ``dsg``: the mean DSG score (a question whose parent fails scores 0). Prompts include the held-out
    pairs, as the ``shapes`` suite does; the first ``n`` prompts of each skill are the same for any
    ``per_skill >= n``, and each image's seed depends on its prompt only (``selma.recipe.generate.image_seed``).
    """
    import torch

    from selma.harness.scoring.conventions import default_convention
    from selma.harness.scoring.matchers import make_matcher
    from selma.harness.scoring.qa import score_questions
    from selma.recipe.generate import image_seed
    from selma.world.evaluator import answer, detect
    from selma.world.suite import world_prompts

    prompts, questions = world_prompts(per_skill, seed + 7919)
    images = {}
    for start in range(0, len(prompts), sampling.batch_size):
        chunk = prompts[start : start + sampling.batch_size]
        generators = [torch.Generator().manual_seed(image_seed(seed, prompt.id, 0)) for prompt in chunk]
        with torch.no_grad():
            rendered = pipe(
                [prompt.text for prompt in chunk],
                num_inference_steps=sampling.steps,
                guidance_scale=sampling.guidance_scale,
                generator=generators,
            ).images
        images.update({prompt.id: detect(image) for prompt, image in zip(chunk, rendered, strict=True)})
    answers = {(q.prompt_id, q.id): answer(images[q.prompt_id], q.text) for q in questions}
    convention = default_convention("dsg")
    scored = score_questions(prompts, questions, answers, make_matcher(convention.matcher), convention)
    scores: dict[str, Any] = {}
    for skill in SKILLS:
        values = [r["score"] for r in scored.prompts if r["category"] == skill]
        scores[f"{skill}_caption"] = round(100 * sum(v >= 100.0 - 1e-9 for v in values) / len(values), 2)
        scores[f"{skill}_dsg"] = round(sum(values) / len(values), 2)
    scores["mean_caption"] = round(sum(scores[f"{s}_caption"] for s in SKILLS) / len(SKILLS), 2)
    scores.update(_relation_given_objects(prompts, questions, answers))
    texts = {prompt.id: prompt.text for prompt in prompts}
    for part, wanted in (("held_out", True), ("seen", False)):  # prompts with a never-trained colour-shape pair
        values = [r["score"] for r in scored.prompts if _has_held_out_pair(texts[r["prompt_id"]]) == wanted]
        scores[f"{part}_prompts"] = len(values)
        scores[f"{part}_caption"] = round(100 * sum(v >= 100.0 - 1e-9 for v in values) / max(1, len(values)), 2)
    return scores


def _has_held_out_pair(text: str) -> bool:
    return any(re.search(rf"\b{color} {shape}", text) for color, shape in HELD_OUT)


def _relation_given_objects(prompts: Any, questions: Any, answers: dict[tuple[str, str], str]) -> dict[str, Any]:
    """``spatial_objects``: the share of spatial prompts whose objects are both right (every question but the
    relation passes); ``spatial_relation_given_objects``: the share of those whose relation is right too
    (chance: about 25 % for random placements of two objects).
    """
    spatial = {p.id for p in prompts if p.category == "spatial"}
    objects_right, relation_right = 0, 0
    for prompt_id in sorted(spatial):
        own = [q for q in questions if q.prompt_id == prompt_id]
        if all(answers[(prompt_id, q.id)] == "yes" for q in own if q.element_type != "relation"):
            objects_right += 1
            relation_right += all(answers[(prompt_id, q.id)] == "yes" for q in own if q.element_type == "relation")
    return {
        "spatial_objects": round(100 * objects_right / max(1, len(spatial)), 2),
        "spatial_relation_given_objects": round(100 * relation_right / max(1, objects_right), 2),
    }


def export_world_model(
    run: Path, step: int, target: Path, *, eval_per_skill: int = 100, check_per_skill: int = 16
) -> dict[str, Any]:
    """Copy the EMA pipeline saved at ``step`` of a training run to ``target`` with ``training.json``:
    the commands that trained it, its settings and seed, the step, every evaluation logged up to it,
    and two fresh evaluations of the copy as loaded from disk: ``evaluation`` (``eval_per_skill``
    prompts per skill, the recorded scores) and ``check`` (``check_per_skill``, what the tests re-measure).
    """
    from selma.models import ResolvedModel, load_pipeline, spec_from_directory
    from selma.results.store import make_provenance, now

    source = run / f"pipeline-{step:06d}"
    if not (source / "model_index.json").is_file():
        saved = sorted(p.name for p in run.glob("pipeline-*"))
        raise SelmaError(f"{run}: no pipeline saved at step {step} (saved: {', '.join(saved) or 'none'})")
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    commands_file = run / "commands.txt"
    commands = commands_file.read_text(encoding="utf-8").splitlines() if commands_file.is_file() else []
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    pipe = load_pipeline(ResolvedModel(spec_from_directory(tmp), str(tmp)))
    seed = config["seed"]

    def evaluate(per_skill: int) -> dict[str, Any]:
        return evaluate_world_pipeline(pipe, per_skill=per_skill, seed=seed)

    record = {
        "model": target.name,
        "phases": training_phases(run, step),
        "trained_by": commands,
        "config": {**config, "steps": step},
        "seed": seed,
        "steps": step,
        "samples_seen": step * config["batch_size"],
        "evaluation_settings": {**asdict(SamplingSettings()), "seed": seed},
        "evaluation": {"per_skill": eval_per_skill, **evaluate(eval_per_skill)},
        "check": {"per_skill": check_per_skill, **evaluate(check_per_skill)},
        "log": [entry for entry in log if entry["step"] <= step],
        "provenance": make_provenance(config, {}, seed=seed, started_at=now()).model_dump(),
    }
    (tmp / "training.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    return record
