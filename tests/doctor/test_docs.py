"""docs/doctor.md matches the code: every rule documented, each bad example flagged with its
code and nothing else, each good example clean, each hint as the doctor prints it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatkeep.doctor import RULES, check_source

DOC = (Path(__file__).resolve().parents[2] / "docs" / "doctor.md").read_text()
SECTIONS = dict(re.findall(r"^### (CK\d{3})\n(.*?)(?=^###? |\Z)", DOC, re.S | re.M))


def test_every_rule_has_a_section() -> None:
    assert set(SECTIONS) == set(RULES)


@pytest.mark.parametrize("code", sorted(RULES))
def test_section_matches_the_rule(code: str) -> None:
    text = SECTIONS[code]
    rule = RULES[code]
    assert f"**{rule.name}** ({rule.severity})" in text
    assert f"**Fix hint:** {rule.hint}\n" in text
    if code in ("CK001", "CK002"):
        return
    if code.startswith("CK2"):  # runtime rules check a store, not code: a command example
        assert re.search(r"```sh\nchatkeep doctor --store \S+", text), code
        return
    bad = re.findall(r"Bad:\n\n```py\n(.*?)```", text, re.S)
    good = re.findall(r"Good:\n\n```py\n(.*?)```", text, re.S)
    assert len(bad) == 1 and len(good) == 1
    assert {d.code for d in check_source(bad[0], f"{code}_bad.py")} == {code}
    assert check_source(good[0], f"{code}_good.py") == []
