"""Message validation and the JSON forms of the core types."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatkeep import InvalidMessage, InvalidSessionId, Message
from chatkeep.validation import check_session_id, check_tenant


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"role": "wizard", "content": "x"}, "unknown role 'wizard'"),
        ({"role": "user", "content": 3}, "content must be a string or a list"),
        ({"role": "user", "content": [{"text": "no type"}]}, "content part 0"),
        ({"role": "user", "content": "x", "metadata": {"k": float("nan")}}, "JSON"),
        ({"role": "user", "content": "x", "metadata": {1: "int key"}}, "keys must be strings"),
        ({"role": "user", "content": "x", "metadata": []}, "JSON object"),
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        ({"role": "user", "content": "x", "tool_call_id": "c"}, "belongs to tool messages"),
        ({"role": "user", "content": "x", "tool_calls": [{}]}, "belong to assistant"),
        ({"role": "user", "content": "bad \udcff"}, "lone surrogate"),
        ({"role": "user", "content": "x", "created_at": datetime(2024, 1, 1)}, "timezone-aware"),
        ({"role": "user", "content": "x", "format": "xml"}, "unknown format"),
        ({"role": "user", "content": "x", "name": ""}, "name"),
    ],
)
def test_bad_messages_are_explained(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidMessage, match=match):
        Message(**kwargs)  # type: ignore[arg-type]


def test_created_at_is_normalised_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    m = Message.user("x", created_at=datetime(2024, 1, 1, 12, tzinfo=plus2))
    assert m.created_at == datetime(2024, 1, 1, 10, tzinfo=timezone.utc)
    assert m.created_at.utcoffset() == timedelta(0)


def test_dict_round_trip_and_openai_shape() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    m = Message.assistant("", tool_calls=[call], metadata={"run": 1})
    assert Message.from_dict(m.to_dict()) == m
    assert m.to_openai() == {"role": "assistant", "content": "", "tool_calls": [call]}
    assert (
        Message.from_dict({"role": "assistant", "content": None, "tool_calls": [call]}).content
        == ""
    )
    assert Message.user([{"type": "text", "text": "a"}, {"type": "image_url"}]).text == "a"


@pytest.mark.parametrize(
    "sid", ["", " ", "\t", "a\x00b", "a\x1fb", "a\x7fb", "a\x85b", "x" * 257, None, b"bytes"]
)
def test_bad_session_ids(sid: object) -> None:
    with pytest.raises(InvalidSessionId):
        check_session_id(sid)


@pytest.mark.parametrize("sid", ["a", "user:42/thread:7", "x" * 256, "ünïcödé 😀", "a b"])
def test_good_session_ids(sid: str) -> None:
    assert check_session_id(sid) == sid


def test_tenant_names_are_checked() -> None:
    with pytest.raises(InvalidSessionId):
        check_tenant("t" * 65)
    assert check_tenant("acme") == "acme"


def test_forbidden_characters_are_exactly_controls_and_surrogates() -> None:
    import unicodedata

    from chatkeep.validation import _FORBIDDEN

    mismatched = [
        hex(cp)
        for cp in range(0x110000)
        if (unicodedata.category(chr(cp)) in ("Cc", "Cs")) != bool(_FORBIDDEN.fullmatch(chr(cp)))
    ]
    assert mismatched == []


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_plain_text_body_is_the_json_encoding(text: str) -> None:
    import json

    from chatkeep.validation import encode_body

    m = Message.user(text)
    expected = json.dumps({"content": text}, ensure_ascii=False, separators=(",", ":"))
    assert encode_body(m) == expected.encode()
    rich = Message.user(text, metadata={"k": text})  # the general path gives the same shape
    assert json.loads(encode_body(rich)) == {"content": text, "metadata": {"k": text}}
