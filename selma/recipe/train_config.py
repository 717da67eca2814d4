"""The settings of one LoRA run, declared once: :class:`TrainConfig`'s fields carry their help text, CLI flag
and check, and ``selma-bench train``'s flags, a study's ``train:`` section and their validation are all
built from them.

The defaults are the paper's SD v1.4/v2 recipe (SELMA's ``fine-tune/ft_sd_lora.sh``); SDXL's differ
(``ft_sd_lora_sdxl.sh``, :data:`SDXL_DEFAULTS`).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal

from selma.errors import SelmaError

if TYPE_CHECKING:
    from selma.models import ResolvedModel

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
Check = Literal["positive", "non_negative"] | None


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    check: Check = None,
    choices: tuple[str, ...] | None = None,
    cli: bool = True,
) -> Any:
    """A :class:`TrainConfig` field: its default, a short help text, its CLI flag (default: the field name
    with dashes), the check of its value and its choices; ``cli=False`` keeps it off the command line.
    """
    meta = {"help": help, "flag": flag, "check": check, "choices": choices, "cli": cli}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one LoRA run (the defaults are the paper's SD v1.4/v2 recipe)."""

    rank: int = setting(128, "LoRA rank", check="positive")
    alpha: int = setting(128, "LoRA alpha (the update is scaled by alpha / rank)", check="positive")
    target_modules: tuple[str, ...] = setting(TARGET_MODULES, "the UNet attention layers given a LoRA", cli=False)
    learning_rate: float = setting(3e-4, "AdamW's learning rate", check="positive")
    lr_scheduler: str = setting(
        "constant",
        "diffusers' learning-rate schedule",
        choices=("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"),
    )
    lr_warmup_steps: int = setting(0, "warm-up steps of the schedule", check="non_negative")
    adam_beta1: float = setting(0.9, "AdamW's beta1", cli=False)
    adam_beta2: float = setting(0.999, "AdamW's beta2", cli=False)
    adam_weight_decay: float = setting(1e-2, "AdamW's weight decay", cli=False)
    adam_epsilon: float = setting(1e-8, "AdamW's epsilon", cli=False)
    max_grad_norm: float = setting(1.0, "gradient clipping norm", cli=False)
    train_batch_size: int = setting(16, "images per micro-batch", flag="--batch-size", check="positive")
    gradient_accumulation_steps: int = setting(4, "micro-batches per optimizer step", check="positive")
    max_train_steps: int = setting(5000, "optimizer steps", check="positive")
    resolution: int | None = setting(
        None,
        "training resolution (default: SELMA's, 512 for SD v1/v2 and 1024 for SDXL; else native)",
        check="positive",
    )
    vae: str | None = setting(
        None, "autoencoder to train with (default: SDXL madebyollin/sdxl-vae-fp16-fix as SELMA; else the pipeline's)"
    )
    random_flip: bool = setting(
        True, "flip training images at random (flips swap left and right: no flips for spatial skills)"
    )
    mixed_precision: str = setting(
        "auto", "mixed precision (auto: fp16 on a GPU, none on a CPU)", choices=("auto", "no", "fp16", "bf16")
    )
    seed: int = setting(42, "the seed of noise, timesteps, flips and batch order", check="non_negative")
    checkpointing_steps: int = setting(500, "save a resumable checkpoint every N steps", check="positive")
    checkpoints_total_limit: int | None = setting(None, "keep only the newest N checkpoints", check="positive")
    cache: bool = setting(False, "cache VAE latents (both flips) and text embeddings on disk")
    cache_dir: str | None = setting(None, "where the cache's files go (default: the system's temporary folder)")
    report_to: str | None = setting(
        None,
        "log loss, learning rate and validation images (wandb: set WANDB_MODE=offline to stay offline)",
        choices=("tensorboard", "wandb"),
    )
    logging_dir: str | None = setting(None, "the tracker's folder (default: OUT/logs)")
    validation_prompts: tuple[str, ...] = setting(
        (),
        "a prompt rendered every --validation-steps into OUT/validation/step-N/ (repeat for several)",
        flag="--validation-prompt",
    )
    validation_steps: int = setting(500, "render the validation prompts every N steps", check="positive")
    image_column: str = setting("image", "the image column of the data")
    caption_column: str = setting("text", "the caption column of the data")
    dataset_config: str | None = setting(None, "the configuration of a `datasets.load_dataset` source")
    split: str = setting("train", "the split of a datasets source")
    limit: int | None = setting(None, "use the first N examples", check="positive")

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
RESUMABLE = ("max_train_steps", "checkpointing_steps", "checkpoints_total_limit")
"""Settings that may change between an interrupted run and its resumption."""


@dataclass(frozen=True)
class Setting:
    """One field of :class:`TrainConfig` as the CLI and the study see it."""

    name: str
    type: Any
    default: Any
    help: str
    flag: str
    check: Check
    choices: tuple[str, ...] | None
    cli: bool

    @property
    def family_help(self) -> str:
        """The help text with the default (and SDXL's, where it differs)."""
        if self.default is None or self.default == () or isinstance(self.default, bool):
            return self.help
        sdxl = f"; SDXL {SDXL_DEFAULTS[self.name]:,}" if self.name in SDXL_DEFAULTS else ""
        shown = f"{self.default:,}" if isinstance(self.default, int) else str(self.default)
        return f"{self.help} (default {shown}{sdxl})"


def train_settings() -> list[Setting]:
    """Every field of :class:`TrainConfig`, in declaration order, with its type and metadata."""
    hints = typing.get_type_hints(TrainConfig)
    return [
        Setting(
            f.name,
            hints[f.name],
            f.default,
            f.metadata["help"],
            f.metadata["flag"] or "--" + f.name.replace("_", "-"),
            f.metadata["check"],
            f.metadata["choices"],
            f.metadata["cli"],
        )
        for f in fields(TrainConfig)
    ]


def check_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a study's ``train:`` section (or any overrides): known fields, their types, checks and
    choices; the first problem is a :class:`SelmaError` naming the field.
    """
    from pydantic import TypeAdapter, ValidationError

    by_name = {s.name: s for s in train_settings()}
    checked: dict[str, Any] = {}
    for name, raw in values.items():
        if name not in by_name:
            raise SelmaError(f"unknown training setting {name!r}")
        setting = by_name[name]
        try:  # YAML's 3e-4 is a string and "false" a word: both become what the field holds
            value = TypeAdapter(setting.type).validate_python(raw, strict=isinstance(raw, bool))
        except ValidationError as exc:
            error = exc.errors()[0]
            raise SelmaError(f"{name}: {error['msg']}, got {raw!r}") from None
        checked[name] = value
        if value is None:
            if setting.check == "positive" and setting.default is not None:
                raise SelmaError(f"{name}: expected a positive number, got None")
            continue
        if setting.check == "positive" and value <= 0:
            raise SelmaError(f"{name}: expected a positive number, got {value!r}")
        if setting.check == "non_negative" and value < 0:
            raise SelmaError(f"{name}: expected zero or more, got {value!r}")
        if setting.choices and value not in setting.choices:
            raise SelmaError(f"{name}: expected one of {', '.join(setting.choices)}, got {value!r}")
    return checked


def effective_config(model: ResolvedModel, config: TrainConfig) -> TrainConfig:
    """``config`` with the model's training defaults filled in (resolution, autoencoder)."""
    return replace(
        config,
        resolution=config.resolution or model.spec.train_resolution or model.spec.resolution,
        vae=config.vae or model.spec.train_vae,
    )
