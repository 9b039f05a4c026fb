"""The copy helpers behind the in-process stores' returned objects (see the conformance test
tests/conformance/test_returned_copies.py for the stores themselves)."""

from __future__ import annotations

import enum

from chatkeep.stores._detach import _clone, copy_json


class Colour(str, enum.Enum):
    RED = "red"


def test_clone_is_deep_and_independent() -> None:
    value = {"a": [1, {"b": [2.5, None, True]}], "c": "text"}
    copy = _clone(value)
    assert copy == value
    copy["a"][1]["b"].append("x")
    assert value == {"a": [1, {"b": [2.5, None, True]}], "c": "text"}


def test_clone_falls_back_for_values_marshal_refuses() -> None:
    value = {"k": [Colour.RED]}  # marshal raises ValueError on str subclasses
    copy = _clone(value)
    assert copy == value and copy["k"] is not value["k"] and copy["k"][0] is Colour.RED
    assert copy_json(value) == value


def test_detach_all_copies_each_rich_message_and_keeps_plain_ones() -> None:
    from chatkeep.stores._detach import detach_all, detach_window
    from chatkeep.types import Message, Window, stored_from_message

    plain = stored_from_message(Message.user("hi"), "s", 1, 3, "a")
    rich = stored_from_message(
        Message.user("q", metadata={"tags": [Colour.RED, "b"]}), "s", 2, 3, "b"
    )  # the str-subclass value sends the whole batch through the pure-Python copy
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    tool = stored_from_message(Message.assistant("", tool_calls=[call]), "s", 3, 3, "c")
    out = detach_all([plain, rich, tool])
    assert out[0] is plain and out == [plain, rich, tool]
    assert (
        out[1].metadata is not rich.metadata
        and out[1].metadata["tags"] is not rich.metadata["tags"]
    )
    assert out[2].tool_calls is not tool.tool_calls
    assert out[2].tool_calls[0]["function"] is not call["function"]  # type: ignore[index]
    w = Window((), None, (plain,), 3, 10, False, 0, 1)
    assert detach_window(w) is w  # nothing mutable: no copy at all
