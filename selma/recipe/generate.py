"""Stage 2: images for a prompt file, with per-image seeds, batching, resume and sharding.

Each image's seed is derived from (run seed, prompt id, sample index) and passed as a list of
generators. Batches are fixed slices of the run's image list, and processes share out whole
batches, so an image is computed the same way whatever the number of processes and however often
the run was resumed: the results are identical byte for byte, given the same number of threads
per process (``torchrun`` sets ``OMP_NUM_THREADS=1``). A different ``batch_size`` or thread count
regroups the float arithmetic and can move a pixel by a level. Under ``accelerate launch``
(GPUs) or ``torchrun`` (CPUs) the pending batches are split with
``PartialState.split_between_processes``; every rank writes its own images, and the main process
then writes ``metadata.jsonl`` (``datasets``' imagefolder format) for all images on disk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from selma import __version__
from selma.io import atomic_write_json, atomic_write_text, file_digest, writing_to
from selma.recipe.prompts import PromptItem
from selma.results.store import make_provenance, now
from selma.shard import process_state
from selma.stage import check, claim, fault_point, stage_key

GENERATION = "generation.json"
METADATA = "metadata.jsonl"


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that determines the images besides the prompts."""

    model: str
    steps: int
    guidance_scale: float
    resolution: int
    images_per_prompt: int = 1
    seed: int = 0
    dtype: str = "float32"
    variant: str = "base"

    @classmethod
    def for_variant(
        cls,
        variant: Any,
        *,
        steps: int | None = None,
        guidance_scale: float | None = None,
        resolution: int | None = None,
        images_per_prompt: int = 1,
        seed: int = 0,
        dtype: str = "float32",
    ) -> GenerationSettings:
        """Settings for a :class:`selma.recipe.variants.Variant`: its model's defaults unless overridden.

        The model is named by its content where it is local (a directory's weights), so replacing the
        weights at the same path never reuses images of the old ones.
        """
        from selma.models import model_identity

        spec = variant.model.spec
        return cls(
            model=model_identity(variant.model),
            variant=variant.key,
            steps=steps or spec.steps,
            guidance_scale=spec.guidance_scale if guidance_scale is None else guidance_scale,
            resolution=resolution or spec.resolution,
            images_per_prompt=images_per_prompt,
            seed=seed,
            dtype=dtype,
        )


def image_seed(run_seed: int, prompt_id: str, index: int) -> int:
    """A 63-bit seed from (run seed, prompt id, sample index), independent of batching."""
    digest = hashlib.sha256(f"{run_seed}\0{prompt_id}\0{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class Job:
    """One image to render."""

    prompt: PromptItem
    index: int
    seed: int

    @property
    def file_name(self) -> str:
        """The image's file name inside the output folder."""
        return f"images/{self.prompt.id}_{self.index:02d}.png"


def plan(prompts: Sequence[PromptItem], settings: GenerationSettings) -> list[Job]:
    """Every image of the run, in prompt order."""
    return [
        Job(prompt, k, image_seed(settings.seed, prompt.id, k))
        for prompt in prompts
        for k in range(settings.images_per_prompt)
    ]


def _record(job: Job, settings: GenerationSettings) -> dict[str, Any]:
    return {
        "file_name": job.file_name,
        "text": job.prompt.text,
        "prompt_id": job.prompt.id,
        "sample_index": job.index,
        "seed": job.seed,
        "model": settings.model,
        "steps": settings.steps,
        "guidance_scale": settings.guidance_scale,
        "resolution": settings.resolution,
    }


IMAGE_SET = "image set"


def image_set_config(prompts: Sequence[PromptItem], settings: GenerationSettings) -> dict[str, Any]:
    """What an image set records in its stage marker; its key (:func:`image_set_key`) leaves the version out."""
    return {"command": "generate", **asdict(settings), "prompts": [asdict(p) for p in prompts], "version": __version__}


def image_set_key(prompts: Sequence[PromptItem], settings: GenerationSettings) -> str:
    """The stage key of the images of ``prompts`` under ``settings``: its folder name's hash and its marker's."""
    return stage_key(IMAGE_SET, image_set_config(prompts, settings))


def generate(
    prompts: Sequence[PromptItem],
    settings: GenerationSettings,
    out: Path,
    load: Callable[[], Any],
    *,
    batch_size: int = 4,
    prompt_file: Path | None = None,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Render the images of ``prompts`` that ``out`` lacks; ``load`` returns the pipeline.

    ``out`` is claimed before anything is rendered: images of other settings are never mixed in (a
    changed setting is refused, naming it, unless ``force`` clears the folder). Returns counts of
    images rendered by this process and skipped as already present.
    """
    import torch
    from tqdm.auto import tqdm

    started = now()
    state = process_state()
    config = image_set_config(prompts, settings)
    existing = check(out, IMAGE_SET, config, force=force)  # a changed setting is refused before any work
    jobs = plan(prompts, settings)
    batches = [jobs[start : start + batch_size] for start in range(0, len(jobs), batch_size)]

    def done(job: Job) -> bool:
        return existing is not None and (out / job.file_name).is_file()

    pending = [batch for batch in batches if not all(done(job) for job in batch)]
    missing = sum(1 for job in jobs if not done(job))
    if existing is not None and existing.complete and not missing:
        return {"rendered": 0, "skipped": len(jobs), "total": len(jobs)}  # nothing to do, nothing rewritten
    rendered = 0
    with state.split_between_processes(pending) as shared:
        mine = list(shared)
    pipe = load() if mine else None  # a model that fails to load leaves nothing behind
    state.wait_for_everyone()
    claimed = claim(out, IMAGE_SET, config, force=force) if state.is_main_process else None
    state.wait_for_everyone()
    (out / "images").mkdir(parents=True, exist_ok=True)
    total = sum(len(batch) for batch in mine)
    bar = tqdm(total=total, desc="generate", unit="img", disable=not (progress and state.is_main_process and mine))
    for batch in mine:
        generators = [torch.Generator(device="cpu").manual_seed(job.seed) for job in batch]
        images = pipe(
            prompt=[job.prompt.text for job in batch],
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            height=settings.resolution,
            width=settings.resolution,
            generator=generators,
        ).images
        for job, image in zip(batch, images, strict=True):
            if (out / job.file_name).is_file():
                continue  # rendered by an earlier, interrupted run
            tmp = out / f"{job.file_name}.part"
            try:  # a full disk leaves no half-written image behind
                with writing_to(out):
                    image.save(tmp, format="PNG")
                tmp.replace(out / job.file_name)
            finally:
                tmp.unlink(missing_ok=True)
            rendered += 1
            fault_point("generate.image")
        bar.update(len(batch))
    bar.close()
    state.wait_for_everyone()
    if claimed is not None:
        write_metadata(out, jobs, settings)
        provenance = make_provenance(config, _inputs(prompt_file), seed=settings.seed, started_at=started)
        atomic_write_json(
            out / GENERATION,
            {"settings": asdict(settings), "n_images": len(jobs), "provenance": provenance.model_dump()},
        )
        claimed.finish({"n_images": len(jobs)})
    state.wait_for_everyone()
    return {"rendered": rendered, "skipped": len(jobs) - missing, "total": len(jobs)}


def _inputs(prompt_file: Path | None) -> dict[str, str]:
    return {str(prompt_file): file_digest(prompt_file)} if prompt_file else {}


def write_metadata(out: Path, jobs: Sequence[Job], settings: GenerationSettings) -> None:
    """``metadata.jsonl`` for every image on disk, in prompt order (independent of the ranks)."""
    lines = [json.dumps(_record(job, settings)) for job in jobs if (out / job.file_name).is_file()]
    atomic_write_text(out / METADATA, "\n".join(lines) + "\n")
