"""The tiny random-weight models are the same bytes on every machine (issue 21): their weights come from
NumPy's generator, not from torch's CPU-dependent ``normal_``, so every content hash and run folder name
built on them is the same on a laptop, in CI and on a machine of another CPU capability.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

# sha256 of each model's weight files (relative path -> first 16 hex digits), recorded once
EXPECTED = {
    "tiny-sd1": {
        "text_encoder/model.safetensors": "52260dbb362bf24d",
        "unet/diffusion_pytorch_model.safetensors": "f6946f3a0247cb09",
        "vae/diffusion_pytorch_model.safetensors": "b8aa070e7d906b3e",
    },
    "tiny-sd2": {
        "text_encoder/model.safetensors": "c60987c283b4e1c0",
        "unet/diffusion_pytorch_model.safetensors": "b2caf1657f0ceb06",
        "vae/diffusion_pytorch_model.safetensors": "096b1e9ed808fb1b",
    },
    "tiny-sdxl": {
        "text_encoder/model.safetensors": "9a34e9aefc7da349",
        "text_encoder_2/model.safetensors": "c4a6635569e394a3",
        "unet/diffusion_pytorch_model.safetensors": "4ee660135c17e5f0",
        "vae/diffusion_pytorch_model.safetensors": "56ae9e9b8987f68b",
    },
    "clip": {
        "model.safetensors": "e4d347fdfaecc194",
    },
    "blip-vqa": {
        "model.safetensors": "97727ef431ecf661",
    },
    "llava": {
        "model.safetensors": "24e7c9820463d040",
    },
}


def weight_digests(root: Path) -> dict[str, str]:
    """The first 16 hex digits of the sha256 of every ``*.safetensors`` file under ``root``."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        for path in sorted(root.rglob("*.safetensors"))
    }


@pytest.fixture(scope="module")
def models(tiny_models: dict[str, Path], tiny_clip: Path, tiny_blip: Path, tiny_llava: Path) -> dict[str, Path]:
    return {**tiny_models, "clip": tiny_clip, "blip-vqa": tiny_blip, "llava": tiny_llava}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tiny_model_weights_are_the_recorded_bytes(models: dict[str, Path], name: str) -> None:
    assert weight_digests(models[name]) == EXPECTED[name]


def test_tiny_weights_do_not_depend_on_the_cpu_capability(tmp_path: Path) -> None:
    """torch's ``normal_`` draws other numbers under ``ATEN_CPU_CAPABILITY=default``; the tiny models do not."""
    script = (
        "import sys; from pathlib import Path; from selma.models.tiny import save_tiny_pipeline; "
        "save_tiny_pipeline('sd1', 'epsilon', Path(sys.argv[1]))"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "sd1")], env=env, check=True, capture_output=True)
    assert weight_digests(tmp_path / "sd1") == EXPECTED["tiny-sd1"]


def test_portable_init_keeps_constants_and_scales_by_fan_in() -> None:
    import torch

    from selma.models.portable_init import portable_init

    layer = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.LayerNorm(8))
    torch.nn.init.zeros_(layer[0].bias)
    portable_init(layer, "t")
    assert torch.equal(layer[1].weight, torch.ones(8)) and torch.equal(layer[0].bias, torch.zeros(8))
    assert layer[0].weight.abs().max() <= 1 / 8 and layer[0].weight.std() > 0.05
    again = portable_init(torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.LayerNorm(8)), "t")
    assert torch.equal(again[0].weight, layer[0].weight)
    assert not torch.equal(portable_init(torch.nn.Linear(64, 8), "other").weight, layer[0].weight)
