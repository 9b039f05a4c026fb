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
