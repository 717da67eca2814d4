"""A CLIP tokenizer vocabulary built offline: every byte as a symbol, no merges.

Real CLIP vocabularies (49,408 tokens) come with real checkpoints; tiny test models need a valid
vocabulary of the same format that ``CLIPTokenizer`` reads, without any download.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


@cache
def bytes_to_unicode() -> dict[int, str]:
    """The byte-to-printable-character table of GPT-2 and CLIP byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def write_byte_level_clip_vocab(directory: Path) -> tuple[Path, Path]:
    """Write ``vocab.json`` (256 byte symbols, their ``</w>`` forms, 2 specials) and ``merges.txt``."""
    directory.mkdir(parents=True, exist_ok=True)
    symbols = [bytes_to_unicode()[b] for b in range(256)]
    tokens = symbols + [s + "</w>" for s in symbols] + list(SPECIAL_TOKENS)
    vocab = directory / "vocab.json"
    merges = directory / "merges.txt"
    vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8")
    merges.write_text("#version: 0.2\n", encoding="utf-8")
    return vocab, merges


def byte_level_clip_tokenizer(directory: Path, max_length: int = 77) -> object:
    """A ``CLIPTokenizer`` over the byte-level vocabulary written into ``directory``."""
    from transformers import CLIPTokenizer

    vocab, merges = write_byte_level_clip_vocab(directory)
    return CLIPTokenizer(str(vocab), str(merges), model_max_length=max_length, pad_token="<|endoftext|>")


def write_clip_vocab_from_bpe(bpe_gz: Path, directory: Path) -> tuple[Path, Path]:
    """Rebuild the 49,408-token OpenAI CLIP ``vocab.json``/``merges.txt`` from the BPE merge list
    ``bpe_simple_vocab_16e6.txt.gz`` that open_clip, CLIP and HPS ship, with open_clip's token ids.
    """
    import gzip

    with gzip.open(bpe_gz) as handle:
        merges = handle.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(merge.split()) for merge in merges]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(pair) for pair in pairs] + list(SPECIAL_TOKENS)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges_file = directory / "vocab.json", directory / "merges.txt"
    vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n", encoding="utf-8")
    return vocab, merges_file
