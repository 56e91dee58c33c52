"""Build the CLIP BPE and T5 Unigram tokenizers in memory from the caption templates."""
from __future__ import annotations

import re

from transformers import CLIPTokenizer, T5Tokenizer

from .data import all_captions

CLIP_WORD = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def corpus() -> list[str]:
    """Return every train and held-out caption (the tokenizers must cover both)."""
    return [c for held in (False, True) for caps in all_captions(held) for c in caps]


def bytes_to_unicode() -> dict[int, str]:
    """Return GPT-2/CLIP's reversible byte -> printable unicode map."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def word_merges(word: str) -> list[tuple[str, str]]:
    """Return left-to-right merges that build a whole word (with CLIP's '</w>' suffix)."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    merges, left = [], symbols[0]
    for sym in symbols[1:]:
        merges.append((left, sym))
        left += sym
    return merges


def build_clip_tokenizer(texts: list[str] | None = None) -> CLIPTokenizer:
    """Build a CLIPTokenizer whose BPE merges make every caption word one token."""
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    words = sorted({w for t in (texts or corpus()) for w in CLIP_WORD.findall(t.lower())})
    merges: list[tuple[str, str]] = []
    for word in words:
        for pair in word_merges(word):
            token = pair[0] + pair[1]
            if token not in vocab:
                vocab[token] = len(vocab)
                merges.append(pair)
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def build_t5_tokenizer(texts: list[str] | None = None) -> T5Tokenizer:
    """Build a T5 Unigram tokenizer with one piece per whitespace-separated caption word."""
    words = sorted({w for t in (texts or corpus()) for w in t.split()})
    chars = sorted({c for w in words for c in w})
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -1.0) for w in words]
    pieces += [("\u2581", -5.0)] + [(c, -10.0) for c in chars]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=120)
