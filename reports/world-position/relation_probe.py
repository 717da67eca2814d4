"""Whether a world model uses the relation word: two measurements on spatial scenes (see findings.md).

1. the denoising loss of the same noisy images under the right caption and under the caption with the
   relation flipped, at a few timesteps (a model that uses the relation has a lower loss for the right one);
2. where the model puts the two objects of its own images: (dx, dy) of the second object from the first,
   per relation (for "left of", dx > 0 is right).

    .venv/bin/python reports/world-position/relation_probe.py shapes-base
"""

from __future__ import annotations

import argparse
import collections
import json

import torch


def main() -> None:
    """Print both measurements for one world model as JSON."""
    from diffusers import DDPMScheduler

    from selma.models import load_pipeline, resolve_model
    from selma.recipe.generate import image_seed
    from selma.world.evaluator import detect
    from selma.world.scenes import OPPOSITE, Scene
    from selma.world.suite import world_scenes
    from selma.world.train_model import _pixels, training_batch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(resolve_model(args.model))
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    batch = [item for step in range(2) for item in training_batch(step, 5, 64, None, (0, 0, 0, 1, 0))]
    scenes = [scene for scene, _, _ in batch]
    latents = pipe.vae.encode(_pixels([image for _, image, _ in batch])).latent_dist.mode()

    def loss(captions: list[str], timestep: int) -> float:
        generator = torch.Generator().manual_seed(0)
        noise = torch.randn(latents.shape, generator=generator)
        t = torch.full((len(latents),), timestep)
        ids = pipe.tokenizer(captions, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
        with torch.no_grad():
            pred = pipe.unet(scheduler.add_noise(latents, noise, t), t, pipe.text_encoder(ids.input_ids)[0]).sample
        return round(((pred - scheduler.get_velocity(latents, noise, t)) ** 2).mean().item(), 5)

    right = [s.caption() for s in scenes]
    flipped = [Scene(s.skill, s.items, OPPOSITE[s.relation], s.style).caption() for s in scenes]
    losses = {
        t: {"right": loss(right, t), "flipped": loss(flipped, t), "empty": loss([""] * len(scenes), t)}
        for t in (999, 950, 900, 800)
    }

    spatial = [(pid, s) for pid, s in world_scenes(48, 7919) if s.skill == "spatial"]
    generators = [torch.Generator().manual_seed(image_seed(0, pid, 0)) for pid, _ in spatial]
    with torch.no_grad():
        images = pipe(
            [s.caption() for _, s in spatial], num_inference_steps=20, guidance_scale=4.0, generator=generators
        ).images
    offsets: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for (_, scene), image in zip(spatial, images, strict=True):
        objects = detect(image)
        (a, _), (b, _) = scene.items
        first = [o for o in objects if (o.color, o.shape) == (a.color, a.shape)]
        second = [o for o in objects if (o.color, o.shape) == (b.color, b.shape)]
        if first and second:
            offsets[str(scene.relation)].append((round(second[0].x - first[0].x), round(second[0].y - first[0].y)))
    print(json.dumps({"model": args.model, "loss": losses, "second_minus_first": offsets}, indent=1))


if __name__ == "__main__":
    main()
