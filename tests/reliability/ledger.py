"""Invariant checkers: what the stored rows must look like, and what the workers were told.

:func:`parse_rows` reads one session's rows back into the operations that wrote them (every
message says which append, turn or replace it belongs to; see :func:`batch`) and lists
every broken invariant: a gap or a repeat in the seqs, a batch that is not whole or not
contiguous, a key stored twice, content that is not what was written, a turn whose answer does
not directly follow its own question, a replace list anywhere but at seq 1.

:class:`CrashLedger` follows a series of killed writers: what each acknowledged, what it had in
flight when it died, and what a reader saw after each kill. Anything acknowledged or once seen
must stay, exactly once, at the same seqs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chatkeep
from chatkeep import Message

APPEND_SESSIONS = ("log-0", "log-1", "log-2")  # only ever appended to: nothing may vanish
TURN_SESSION = "turns-0"
REPLACE_SESSION = "rep-0"
CHURN_SESSIONS = ("churn-0", "churn-1", "churn-2")  # soak only: cleared, deleted, replaced
BIG = 300_000  # bytes of padding in a "big" message: spans many pages, so a kill can tear it


def pad(key: str, j: int, size: int) -> str:
    return "" if not size else (f"<{key}/{j}>" * (size // 8 + 1))[:size]


def batch(key: str, n: int, big: int = 0) -> list[Message]:
    """The messages of append ``key``: a user message first, then assistant/user in turn; the
    last one carries ``big`` bytes of padding."""
    out = []
    for j in range(n):
        size = big if j == n - 1 else 0
        role = "user" if j % 2 == 0 else "assistant"
        meta = {"k": key, "j": j, "n": n, "big": size}
        out.append(
            Message.from_dict(
                {"role": role, "content": f"{key}/{j}" + pad(key, j, size), "metadata": meta}
            )
        )
    return out


def generation(gen: str, n: int) -> list[Message]:
    """The list a replace with generation ``gen`` stores."""
    return [
        Message.from_dict(
            {
                "role": "user" if j % 2 == 0 else "assistant",
                "content": f"{gen}#{j}",
                "metadata": {"g": gen, "j": j, "n": n},
            }
        )
        for j in range(n)
    ]


@dataclass
class Parsed:
    batches: dict[str, tuple[int, int]] = field(default_factory=dict)  # key -> (first, last)
    gen: str | None = None  # the replace generation the session starts with, if any
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)


def _batch_problem(key: str, chunk: list[Any], n: int) -> str | None:
    if len(chunk) != n:
        return f"batch {key} is cut: {len(chunk)} of {n} messages"
    for j, m in enumerate(chunk):
        meta = m.metadata
        if meta.get("k") != key or meta.get("j") != j:
            return f"batch {key} is not contiguous: seq {m.seq} holds {meta}"
        if m.role != ("user" if j % 2 == 0 else "assistant"):
            return f"batch {key} seq {m.seq} has role {m.role}"
        if m.text != f"{key}/{j}" + pad(key, j, int(meta.get("big", 0))):
            return f"batch {key} seq {m.seq}: the content is not what was written"
    if n == 2 and "after" in chunk[1].metadata and chunk[1].metadata["after"] != chunk[0].seq - 1:
        after = chunk[1].metadata["after"]
        return f"turn {key} saw seq {after} but its question landed at seq {chunk[0].seq}"
    return None


def parse_rows(sid: str, rows: list[chatkeep.StoredMessage]) -> Parsed:
    out = Parsed()
    seqs = [m.seq for m in rows]
    if seqs != list(range(1, len(rows) + 1)):
        out.problems.append(f"{sid}: seqs are not 1..{len(rows)}: {seqs[:20]}")
    i = 0
    while i < len(rows):
        meta = rows[i].metadata
        n = int(meta.get("n", 1))
        if "g" in meta:  # a replace list: only ever the whole session, from seq 1
            gen = str(meta["g"])
            want = [(m.role, m.text, m.metadata) for m in generation(gen, n)]
            got = [(m.role, m.text, m.metadata) for m in rows[i : i + n]]
            if i != 0 or out.gen is not None or got != want:
                out.problems.append(f"{sid}: replace list {gen} is mixed, cut or not at seq 1")
            out.gen = gen
        elif "k" in meta and meta.get("j") == 0:
            key = str(meta["k"])
            problem = _batch_problem(key, rows[i : i + n], n)
            if problem:
                out.problems.append(f"{sid}: {problem}")
            if key in out.batches:
                out.duplicated += 1
                out.problems.append(f"{sid}: {key} is stored twice")
            out.batches[key] = (rows[i].seq, rows[i].seq + n - 1)
        else:
            out.problems.append(f"{sid}: seq {rows[i].seq} belongs to no whole batch: {meta}")
            n = 1
        i += n
    return out


def totals_problem(
    store: chatkeep.Store, sid: str, rows: list[chatkeep.StoredMessage]
) -> str | None:
    """The session's counters must agree with its rows."""
    info = store.info(sid)
    if info is None:
        return None if not rows else f"{sid}: info() is None but it has {len(rows)} rows"
    last = rows[-1].seq if rows else 0
    if (info.message_count, info.last_seq, info.total_tokens) != (
        len(rows),
        last,
        sum(m.tokens for m in rows),
    ):
        return f"{sid}: info says {info} but the rows say {len(rows)} messages up to seq {last}"
    summary = store.get_summary(sid)
    if summary is not None and summary.covers_through_seq > last:
        return f"{sid}: the summary covers seq {summary.covers_through_seq} > last seq {last}"
    return None


def read_acks(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a worker's report (a last line cut by the kill does not count)."""
    if not path.exists():
        return []
    data = path.read_bytes()
    whole = data[: data.rfind(b"\n") + 1]
    return [json.loads(line) for line in whole.splitlines()]


class CrashLedger:
    """What a series of killed writers acknowledged, and what must therefore be stored."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[str, int, int]] = {}  # acked or seen: key -> (sid, seqs)
        self.attempted: dict[str, str] = {}  # every key a writer tried -> its session
        # what the replace session may hold: nothing (None) until a replace is acknowledged
        self.generations: set[str | None] = {None}
        self.stats = {
            "acked": 0,
            "acked_appends": 0,
            "acked_turns": 0,
            "acked_replaces": 0,
            "retried": 0,
            "retries_replayed": 0,
            "lost": 0,
            "duplicated": 0,
        }
        self.problems: list[str] = []

    def absorb(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Take in one writer's report; returns the operation it had in flight, if any."""
        flight: dict[str, Any] | None = None
        for rec in records:
            if rec["t"] == "do":
                flight = rec
                if rec["op"] == "replace":
                    continue
                self.attempted[rec["k"]] = rec["sid"]
                continue
            assert rec["t"] == "ok" and flight is not None, rec
            self.stats["acked"] += 1
            if flight["op"] == "replace":
                self.stats["acked_replaces"] += 1
                self.generations = {rec["g"]}
            else:
                self._acked(flight, rec)
            flight = None
        if flight is not None and flight["op"] == "replace":
            self.generations.add(flight["g"])  # it may or may not have happened
        return flight

    def _acked(self, op: dict[str, Any], rec: dict[str, Any]) -> None:
        self.stats["acked_turns" if op["op"] == "turn" else "acked_appends"] += 1
        key, seen = rec["k"], self.known.get(rec["k"])
        if op.get("retry"):
            self.stats["retried"] += 1
            self.stats["retries_replayed"] += int(rec["rep"])
            if rec["rep"] != (seen is not None):
                self.problems.append(f"retry of {key}: replayed={rec['rep']} but stored={seen}")
        entry = (op["sid"], rec["first"], rec["last"])
        if seen is not None and seen != entry:
            self.problems.append(f"{key} was at {seen}, its acknowledgement says {entry}")
        self.known[key] = entry

    def check(self, store: chatkeep.Store) -> None:
        """Read every session as a new process would and compare with what was promised."""
        for sid in (*APPEND_SESSIONS, TURN_SESSION):
            rows = store.read(sid)
            parsed = parse_rows(sid, rows)
            self.problems += parsed.problems
            self.stats["duplicated"] += parsed.duplicated
            problem = totals_problem(store, sid, rows)
            if problem:
                self.problems.append(problem)
            for key in parsed.batches:
                if self.attempted.get(key) != sid:
                    self.problems.append(f"{sid}: {key} was never written there")
            for key, (where, first, last) in self.known.items():
                if where != sid:
                    continue
                if key not in parsed.batches:
                    self.stats["lost"] += 1
                    self.problems.append(f"{sid}: {key} (seqs {first}..{last}) was lost")
                elif parsed.batches[key] != (first, last):
                    self.problems.append(f"{sid}: {key} moved to {parsed.batches[key]}")
            for key, (first, last) in parsed.batches.items():
                self.known[key] = (sid, first, last)  # seen by a reader: it must stay
        rows = store.read(REPLACE_SESSION)
        parsed = parse_rows(REPLACE_SESSION, rows)
        self.problems += parsed.problems
        if parsed.gen not in self.generations:
            self.stats["lost"] += 1
            self.problems.append(
                f"{REPLACE_SESSION} holds {parsed.gen}, expected one of {self.generations}"
            )
        self.generations = {parsed.gen}  # what a reader saw must stay until the next replace
