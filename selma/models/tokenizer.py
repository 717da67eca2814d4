"""A CLIP tokenizer vocabulary built offline: every byte as a symbol, no merges.

Real CLIP vocabularies (49,408 tokens) come with real checkpoints; tiny test models need a valid
vocabulary of the same format that ``CLIPTokenizer`` reads, without any download.
"""

from __future__ import annotations

import itertools
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


def write_slow_clip_files(directory: Path) -> None:
    """Write ``vocab.json`` and ``merges.txt`` beside a CLIP BPE ``tokenizer.json`` (what transformers 5's
    ``save_pretrained`` writes alone), so transformers 4's ``CLIPTokenizer`` loads the same vocabulary.
    """
    spec = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in spec["merges"]]
    (directory / "vocab.json").write_text(json.dumps(spec["vocab"], ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one word: merge the lowest-ranked adjacent pair until none applies."""
    pieces = [*word[:-1], word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = [(ranks.get(pair, len(ranks)), i) for i, pair in enumerate(itertools.pairwise(pieces))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def write_word_level_clip_vocab(words: list[str], directory: Path) -> tuple[Path, Path]:
    """A CLIP ``vocab.json``/``merges.txt`` where each of ``words`` is one token; other text falls back to bytes.

    Merges are only ever appended: BPE applies the lowest rank first, so a merge added last cannot change
    a word that already ends as one token, and each word needs at most ``len(word) - 1`` of them.
    """
    table = bytes_to_unicode()
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted({"".join(table[b] for b in w.lower().encode()) for w in words}):
        while len(pieces := _bpe(word, ranks)) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
    symbols = list(table.values())
    merged = ["".join(pair) for pair in ranks]
    tokens = list(dict.fromkeys(symbols + [s + "</w>" for s in symbols] + merged)) + list(SPECIAL_TOKENS)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8")
    merges.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in ranks), encoding="utf-8")
    return vocab, merges


def word_level_clip_tokenizer(words: list[str], directory: Path, max_length: int) -> object:
    """A ``CLIPTokenizer`` in which each of ``words`` is a single token (see ``write_word_level_clip_vocab``)."""
    from transformers import CLIPTokenizer

    vocab, merges = write_word_level_clip_vocab(words, directory)
    return CLIPTokenizer(str(vocab), str(merges), model_max_length=max_length, pad_token="<|endoftext|>")
