"""Print diagnostics as text (``path:line:col: CKnnn message``), JSON or SARIF 2.1.0."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chatkeep._version import __version__
from chatkeep.doctor.diagnostic import RULES, Diagnostic

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"error": "error", "warning": "warning", "note": "note"}


def text(
    diags: Sequence[Diagnostic], files: int, *, fix_hints: bool = False, stores: int = 0
) -> str:
    lines = []
    for d in diags:
        lines.append(f"{d.path}:{d.line}:{d.col}: {d.code} {d.message}")
        lines.append(f"    hint: {d.hint}")
        if fix_hints:
            lines.extend("    | " + ln for ln in d.rule.fix.splitlines())
    lines.append(summary(diags, files, stores))
    return "\n".join(lines)


def summary(diags: Sequence[Diagnostic], files: int, stores: int = 0) -> str:
    checked = f"{files} file(s)" + (f" and {stores} store(s)" if stores else "")
    if not diags:
        return f"chatkeep doctor: {checked} checked, no problems found"
    by_code = Counter(d.code for d in diags)
    parts = ", ".join(f"{code} x{n}" for code, n in sorted(by_code.items()))
    return (
        f"chatkeep doctor: {len(diags)} problem(s) in {len({d.path for d in diags})} file(s) "
        f"({parts}); {checked} checked"
    )


def as_json(
    diags: Sequence[Diagnostic], files: int, *, fix_hints: bool = False, configs: int = 0
) -> str:
    rows = []
    for d in diags:
        row = d.to_dict()
        if fix_hints:
            row["fix"] = d.rule.fix
        rows.append(row)
    out = {"files": files, "configs": configs, "count": len(rows), "diagnostics": rows}
    return json.dumps(out, indent=2)


def sarif(diags: Sequence[Diagnostic], files: int) -> str:
    codes = sorted(RULES)
    rules: list[dict[str, Any]] = [
        {
            "id": code,
            "name": RULES[code].name,
            "shortDescription": {"text": RULES[code].summary},
            "fullDescription": {"text": RULES[code].fix},
            "help": {"text": RULES[code].hint},
            "defaultConfiguration": {"level": SARIF_LEVEL[RULES[code].severity]},
        }
        for code in codes
    ]
    results = [
        {
            "ruleId": d.code,
            "ruleIndex": codes.index(d.code),
            "level": SARIF_LEVEL[d.rule.severity],
            "message": {"text": f"{d.message}. Hint: {d.hint}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": Path(d.path).as_posix()},
                        "region": {"startLine": d.line, "startColumn": d.col},
                    }
                }
            ],
        }
        for d in diags
    ]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "chatkeep doctor",
                        "version": __version__,
                        "rules": rules,
                    }
                },
                "results": results,
                "properties": {"filesChecked": files},
            }
        ],
    }
    return json.dumps(log, indent=2)
