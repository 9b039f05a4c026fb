"""``decode_row`` builds real, frozen ``StoredMessage`` objects field for field.

It fills the slots through a private twin class and then switches the object's class (it is
the per-message hot path of every read); these tests pin that what comes out is exactly what
the validated constructor would build, for plain and for fully populated bodies.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

import pytest

import chatkeep
from chatkeep.stores._common import decode_row
from chatkeep.types import Message, StoredMessage

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)

MESSAGES = [
    Message.user("plain text", created_at=WHEN),
    Message.user([{"type": "text", "text": "parts"}, {"type": "image_url", "image_url": {}}]),
    Message.assistant(
        "",
        tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        name="bot",
        metadata={"k": [1, 2]},
    ),
    Message.tool("42", tool_call_id="c1"),
    Message("assistant", "x", format="openai-agents", payload={"type": "message", "id": "m"}),
    Message.system("sys", metadata={"a": None}),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.role)
@pytest.mark.parametrize("as_bytes", [False, True])
def test_decoded_row_is_the_stored_message(message: Message, as_bytes: bool) -> None:
    body = json.dumps(message.body(), separators=(",", ":"))
    created = message.created_at.isoformat(timespec="microseconds")
    got = decode_row(
        "s-1", 7, message.role, 11, "id-7", created, body.encode() if as_bytes else body
    )
    want = StoredMessage(
        **{f.name: getattr(message, f.name) for f in dataclasses.fields(Message)},
        session_id="s-1",
        seq=7,
        tokens=11,
        id="id-7",
    )
    assert type(got) is StoredMessage
    assert got == want
    assert got.to_dict() == want.to_dict()
    assert hash(got.seq) == 7 and got.created_at.tzinfo is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.content = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del got.role  # type: ignore[misc]


def test_datetime_created_at_is_taken_as_utc() -> None:
    got = decode_row("s", 1, "user", 1, "i", WHEN, '{"content":"a"}')
    assert got.created_at == WHEN and got.created_at.tzinfo is timezone.utc


@pytest.mark.parametrize(
    ("role", "body"),
    [
        ("user", "not json"),
        ("user", '{"content":"a"} trailing'),
        ("user", "[1]"),
        ("user", '{"content":5}'),
        ("user", '{"content":{"a":1}}'),
        ("wizard", '{"content":"a"}'),
        ("wizard", '{"content":"a","name":"n"}'),
    ],
)
def test_bad_rows_raise_corrupt_record(role: str, body: str) -> None:
    with pytest.raises(chatkeep.CorruptRecord, match="seq 3 of session 's'"):
        decode_row("s", 3, role, 1, "i", "2026-01-01T00:00:00.000000+00:00", body)


def test_a_bad_timestamp_is_a_corrupt_record() -> None:
    with pytest.raises(chatkeep.CorruptRecord):
        decode_row("s", 3, "user", 1, "i", "yesterday", '{"content":"a"}')
