"""Tiny random-weight scorer models of the real architectures, built offline (tests, benchmarks, demos)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selma.models.portable_init import portable_init

TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 30, "layers": 2, "width": 32, "head_width": 8, "patch_size": 6},
    "text_cfg": {"context_length": 77, "vocab_size": 514, "width": 32, "heads": 4, "layers": 2},
}
TINY_VISION = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": 32,
    "patch_size": 8,
}
VQA_WORDS = ["yes", "no", "is", "there", "a", "cat", "red", "dog", "two", "?"]


def word_level_tokenizer(tokens: list[str], **special: str) -> Any:
    """A fast tokenizer that splits on whitespace over a fixed word list (``special`` names its special tokens)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    raw = Tokenizer(models.WordLevel(vocab, unk_token=special.get("unk_token", "<unk>")))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=raw, **special)


def save_tiny_clip(root: Path, config: dict[str, Any] = TINY_OPEN_CLIP, seed: int = 0) -> Path:
    """A CLIPModel (open_clip-shaped config) with a byte-level tokenizer and image processor in ``root``."""
    import numpy as np
    import torch
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor

    from selma.harness.metrics.open_clip_convert import clip_config_from_open_clip
    from selma.models.tokenizer import byte_level_clip_tokenizer

    torch.manual_seed(seed)
    model = portable_init(CLIPModel(clip_config_from_open_clip(config)), f"clip:{seed}")
    with torch.no_grad():
        model.logit_scale.fill_(np.log(100.0) - 0.3)
    model.save_pretrained(root)
    size = config["vision_cfg"]["image_size"]
    image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    CLIPProcessor(image_processor=image_processor, tokenizer=byte_level_clip_tokenizer(root / "vocab")).save_pretrained(
        root
    )
    return root


TINY_BLIP_TEXT = {
    "hidden_size": 32,
    "encoder_hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
}


def save_tiny_blip_vqa(
    root: Path,
    seed: int = 0,
    *,
    text_config: dict[str, Any] | None = None,
    vision_config: dict[str, Any] | None = None,
) -> Path:
    """A BlipForQuestionAnswering with a small BERT vocabulary and its processor in ``root``.

    The configs default to a tiny model; ``{}`` for both gives BLIP VQA base's real size (transformers'
    defaults), as the benchmarks use.
    """
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *VQA_WORDS]) + "\n")
    tokenizer = BertTokenizer(str(root / "vocab.txt"))
    text = {
        **(TINY_BLIP_TEXT if text_config is None else text_config),
        "bos_token_id": 2,
        "sep_token_id": 3,
        "pad_token_id": 0,
    }
    if text_config is None:
        text["vocab_size"] = len(tokenizer)
    torch.manual_seed(seed)
    config = BlipConfig(text_config=text, vision_config=TINY_VISION if vision_config is None else vision_config)
    portable_init(BlipForQuestionAnswering(config), f"blip-vqa:{seed}").save_pretrained(root)
    size = config.vision_config.image_size
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": size, "width": size}), tokenizer=tokenizer
    )
    processor.save_pretrained(root)
    return root


def save_tiny_llava(root: Path, seed: int = 0) -> Path:
    """A LlavaForConditionalGeneration (CLIP vision tower, Llama decoder) with a word-level tokenizer,
    a LLaVA-1.5-style chat template and its processor in ``root``.
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    words = [
        "USER:",
        "ASSISTANT:",
        "Yes",
        "No",
        *VQA_WORDS,
        "Answer",
        "the",
        "question",
        "using",
        "single",
        "word",
        "or",
        "phrase.",
        "Does",
        "this",
        "figure",
        "show",
        "Please",
        "answer",
        "yes",
        "no.",
    ]
    tokenizer = word_level_tokenizer(
        ["<pad>", "<unk>", "<s>", "</s>", "<image>", *words],
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
    )
    vocab = tokenizer.get_vocab()
    vision = CLIPVisionConfig(**TINY_VISION)
    text = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=vocab["<image>"],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    portable_init(LlavaForConditionalGeneration(config), f"llava:{seed}").save_pretrained(root)
    template = (
        "{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
        "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %} ASSISTANT:"
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        chat_template=template,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    ).save_pretrained(root)
    return root


def save_tiny_blip2(root: Path, *, instruct: bool = False, seed: int = 0) -> Path:
    """A BLIP-2 (or InstructBLIP) with an OPT decoder, a word-level tokenizer and its processor in ``root``."""
    import torch
    import transformers
    from transformers import BertTokenizer, BlipImageProcessor, OPTConfig

    words = ["Question:", "Answer:", "Yes", *VQA_WORDS, "Does", "this", "figure", "show", "Please", "answer", "or"]
    tokenizer = word_level_tokenizer(
        ["<pad>", "<unk>", "</s>", *words], unk_token="<unk>", pad_token="<pad>", bos_token="</s>", eos_token="</s>"
    )
    image_token = len(tokenizer)  # the processor adds "<image>" after the vocabulary
    prefix = "InstructBlip" if instruct else "Blip2"
    config = getattr(transformers, f"{prefix}Config")(
        vision_config=TINY_VISION,
        qformer_config={
            "vocab_size": 30,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 37,
            "encoder_hidden_size": 32,
        },
        text_config=OPTConfig(
            vocab_size=image_token + 1,
            hidden_size=32,
            ffn_dim=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=256,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=2,
        ).to_dict(),
        num_query_tokens=4,
        image_token_index=image_token,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, f"{prefix}ForConditionalGeneration")(config)
    portable_init(model, f"{prefix}:{seed}").save_pretrained(root)
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    if instruct:
        (root / "qformer").mkdir(parents=True, exist_ok=True)
        (root / "qformer" / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *VQA_WORDS]) + "\n")
        qformer = BertTokenizer(str(root / "qformer" / "vocab.txt"))
        processor = transformers.InstructBlipProcessor(
            image_processor=image_processor, tokenizer=tokenizer, qformer_tokenizer=qformer, num_query_tokens=4
        )
    else:
        processor = transformers.Blip2Processor(
            image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=4
        )
    processor.save_pretrained(root)
    return root
