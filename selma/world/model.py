"""The shapes world's text-to-image models: real diffusers ``StableDiffusionPipeline`` objects.

Pixel space instead of a VAE: the "autoencoder" is a fixed 2x2 pixel unshuffle (32x32x3 <-> 16x16x12)
with per-channel normalisation, so the UNet works on 16x16 inputs. The text encoder is a small
``CLIPTextModel`` over a word-level CLIP vocabulary of the world's words. v-prediction on a cosine
schedule rescaled to zero terminal SNR, sampled with DDIM "trailing" timesteps: the probe in
``shared/reference/shapes-world-probe.md`` found epsilon prediction with "leading" spacing gives noise.

Saved pipelines record the autoencoder as ``["selma.world.model", "PixelUnshuffleAE"]``; diffusers
loads it once this module is imported (``selma.models.load_pipeline`` does that).
"""

from __future__ import annotations

import inspect
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import (  # ModelMixin also tells diffusers how to load this module's class
    ConfigMixin,
    ModelMixin,
    UNet2DConditionModel,
)
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedModel  # noqa: F401  (as ModelMixin, for diffusers)
from transformers.modeling_outputs import BaseModelOutputWithPooling

from selma.world.scenes import NUMBERS, PALETTE, RELATIONS, SHAPES

MAX_TOKENS = 16  # the longest world caption is 11 words, plus start and end
WORDS = sorted(
    {
        *"a an the of on and with next to together picture exactly black is there are one".split(),
        *" ".join(RELATIONS).split(),
        *NUMBERS.values(),
        *PALETTE,
        *SHAPES,
        *(f"{shape}s" for shape in SHAPES),
    }
)


class PixelUnshuffleAE(ModelMixin, ConfigMixin):
    """A fixed, exactly invertible "autoencoder": 2x2 pixel unshuffle with per-channel normalisation.

    It has the interface the Stable Diffusion pipelines and training code use of ``AutoencoderKL``
    (``encode(x).latent_dist``, ``decode(z).sample``, ``config.scaling_factor``); ``block_out_channels``
    has two entries so that pipelines compute a downscale factor of 2.
    """

    @register_to_config
    def __init__(
        self,
        factor: int = 2,
        in_channels: int = 3,
        latent_channels: int = 12,
        block_out_channels: tuple[int, ...] = (12, 12),
        scaling_factor: float = 1.0,
        channel_mean: tuple[float, ...] = (0.0, 0.0, 0.0),
        channel_std: tuple[float, ...] = (1.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(channel_mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(channel_std).view(1, -1, 1, 1))

    def encode(self, x: torch.Tensor, return_dict: bool = True) -> Any:
        """Pixels in [-1, 1] -> a point-mass latent distribution (its ``sample()`` is the latent)."""
        latents = F.pixel_unshuffle((x - self.mean) / self.std, self.config.factor)
        moments = torch.cat([latents, torch.full_like(latents, -30.0)], dim=1)
        dist = DiagonalGaussianDistribution(moments, deterministic=True)
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True, generator: Any = None) -> Any:
        """Latents -> pixels in [-1, 1] (not clamped: the image processor clamps)."""
        pixels = F.pixel_shuffle(z, self.config.factor) * self.std + self.mean
        return DecoderOutput(sample=pixels) if return_dict else (pixels,)


class CoordConv2d(torch.nn.Conv2d):
    """A convolution that sees two more input channels than it is given: the pixel's x and y in [-1, 1]
    (CoordConv, Liu et al. 2018). The world's UNet has no other position signal than its padding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        n, _, h, w = x.shape
        ys = torch.linspace(-1.0, 1.0, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1.0, 1.0, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(n, 1, h, w)
        return super().forward(torch.cat([x, xs, ys], dim=1))


class CoordUNet2DConditionModel(UNet2DConditionModel):
    """``UNet2DConditionModel`` whose input convolution also sees x/y coordinate channels
    (:class:`CoordConv2d`); the latents keep ``in_channels``, so pipelines and LoRA training treat it as a UNet.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        old = self.conv_in
        self.conv_in = CoordConv2d(
            old.in_channels + 2, old.out_channels, old.kernel_size, padding=old.padding, stride=old.stride
        )

    # diffusers reads a model's config keys from its __init__ signature
    __init__.__signature__ = inspect.signature(UNet2DConditionModel.__init__)  # type: ignore[attr-defined]


class BidirectionalCLIPTextModel(CLIPTextModel):
    """``CLIPTextModel`` without the causal mask: every token attends to the whole caption, so the first
    object's words know the relation and the object that follow them.
    """

    def forward(self, input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        text = getattr(self, "text_model", self)  # transformers 4 nests the layers in text_model
        hidden = text.embeddings(input_ids=input_ids)
        hidden = text.final_layer_norm(text.encoder(inputs_embeds=hidden)[0])
        eos = (input_ids == text.eos_token_id).int().argmax(dim=-1)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eos]
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooled)


class TwoPassCLIPTextModel(CLIPTextModel):
    """``CLIPTextModel`` read both ways, as ELMo reads: the causal pass over the caption, plus the same
    encoder's causal pass over the caption's words in reverse order, added through a projection that starts
    at zero (so a warm start computes exactly the causal model). In the forward pass only the *second*
    object of "A left of B" has seen the relation; in the reversed pass only the first has, so which object
    goes to which side becomes a linear read-out of the two.
    """

    new_at_warm_start = ("backward_projection.weight",)
    """Weights a warm start from a causal text encoder leaves at their initial zeros."""

    def __init__(self, config: CLIPTextConfig) -> None:
        super().__init__(config)
        self.backward_projection = torch.nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        torch.nn.init.zeros_(self.backward_projection.weight)

    def forward(self, input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        forward = super().forward(input_ids=input_ids)
        order = _reversed_words(input_ids, self.config.eos_token_id)
        backward = super().forward(input_ids=input_ids.gather(1, order)).last_hidden_state
        index = order.unsqueeze(-1).expand_as(backward)
        hidden = forward.last_hidden_state + self.backward_projection(backward.gather(1, index))
        eos = (input_ids == self.config.eos_token_id).int().argmax(dim=-1)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eos]
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=pooled)


def _reversed_words(input_ids: torch.Tensor, eos: int) -> torch.Tensor:
    """Per row, the positions that reverse the words between the start token and the first end token (an
    involution: applied twice it is the identity).
    """
    n, length = input_ids.shape
    positions = torch.arange(length, device=input_ids.device).expand(n, length)
    end = (input_ids == eos).int().argmax(dim=-1, keepdim=True)
    inside = (positions >= 1) & (positions < end)
    return torch.where(inside, end - positions, positions)


@dataclass(frozen=True)
class WorldArchitecture:
    """Sizes of a world model: UNet widths and depth, text encoder width and depth, and its position
    signals: x/y coordinate input channels (``coords``) and a text encoder without the causal mask
    (``bidirectional_text``).
    """

    blocks: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    text_dim: int = 64
    text_layers: int = 2
    heads: int = 8
    coords: bool = False
    bidirectional_text: bool = False
    two_pass_text: bool = False


_BASE = WorldArchitecture()
ARCHITECTURES = {
    "base": _BASE,
    "weak": WorldArchitecture(blocks=(16, 32, 32), layers_per_block=1, text_dim=32, text_layers=1, heads=4),
    # the base's sizes with a position signal: the candidates for learning spatial relations
    "base-coord": replace(_BASE, coords=True),
    "base-bidir": replace(_BASE, bidirectional_text=True),
    "base-coord-bidir": replace(_BASE, coords=True, bidirectional_text=True),
    "base-twopass": replace(_BASE, two_pass_text=True),
    "base-coord-twopass": replace(_BASE, coords=True, two_pass_text=True),
}
# mean and std of rendered world images per RGB channel in [-1, 1] (mostly black background)
CHANNEL_MEAN = (-0.80, -0.82, -0.86)
CHANNEL_STD = (0.45, 0.42, 0.38)


def scheduler_config() -> dict[str, Any]:
    """The noise schedule shared by training (``DDPMScheduler``) and sampling (``DDIMScheduler``)."""
    return dict(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
    )


def build_world_pipeline(architecture: WorldArchitecture, seed: int) -> Any:
    """A randomly initialised world pipeline (deterministic in ``seed``)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from selma.models.tokenizer import word_level_clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = word_level_clip_tokenizer(WORDS, Path(tmp), MAX_TOKENS)
    torch.manual_seed(seed)
    a = architecture
    vocab = len(tokenizer)
    text_class = (
        BidirectionalCLIPTextModel
        if a.bidirectional_text
        else TwoPassCLIPTextModel
        if a.two_pass_text
        else CLIPTextModel
    )
    text_encoder = text_class(
        CLIPTextConfig(
            vocab_size=vocab,
            hidden_size=a.text_dim,
            intermediate_size=2 * a.text_dim,
            num_hidden_layers=a.text_layers,
            num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS,
            projection_dim=a.text_dim,
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
            pad_token_id=vocab - 1,
        )
    )
    n = len(a.blocks)
    unet = (CoordUNet2DConditionModel if a.coords else UNet2DConditionModel)(
        sample_size=16,
        in_channels=12,
        out_channels=12,
        block_out_channels=a.blocks,
        layers_per_block=a.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=a.text_dim,
        attention_head_dim=a.heads,
        norm_num_groups=8,
        resnet_time_scale_shift="scale_shift",
        addition_embed_type="text",  # attention-pooled text also modulates every ResNet block (FiLM)
        addition_embed_type_num_heads=4,
    )
    return StableDiffusionPipeline(
        vae=PixelUnshuffleAE(channel_mean=CHANNEL_MEAN, channel_std=CHANNEL_STD),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(**scheduler_config(), set_alpha_to_one=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
