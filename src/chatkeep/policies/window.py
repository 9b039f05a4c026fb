"""Which stored messages the LLM sees: the window policy, as pure functions.

Invariants (pinned by property tests):

* pinned system/developer messages and the running summary come first and count toward the
  budget;
* then the newest messages whose tokens fit, oldest dropped first (a contiguous suffix);
* the window never starts on an ``assistant`` or ``tool`` message, so a tool result is never
  separated from the assistant message that called it;
* the latest user message is always included, with everything after it, even when that alone
  is over budget; ``Window.over_budget`` then says so;
* order is preserved.

Backends hand :func:`select_window` only the rows it needs (a suffix found through stored
running token totals), so the cost of a window depends on the window, not on the history.
"""

from __future__ import annotations

from collections.abc import Sequence

from chatkeep.types import StoredMessage, Summary, Window

PINNED_ROLES = frozenset({"system", "developer"})
_CANNOT_START = frozenset({"assistant", "tool"})


def tail_budget(
    budget: int, *, system: Sequence[StoredMessage], summary: Summary | None, reserve: int
) -> int:
    """Tokens left for conversation messages once system, summary and reserve are counted."""
    return budget - reserve - sum(m.tokens for m in system) - (summary.tokens if summary else 0)


def select_window(
    *,
    budget: int,
    system: Sequence[StoredMessage],
    summary: Summary | None,
    tail: Sequence[StoredMessage],
    total_count: int,
    last_seq: int,
    reserve: int = 0,
) -> Window:
    """Build the window.

    ``tail`` is a suffix, in seq order, of the session's windowable messages (those after the
    summary, without pinned ones). It must hold every message that could fit in the budget
    and, if there is a user message among the windowable ones, the latest of them and all that
    follows it. ``total_count`` is the session's message count, for ``Window.dropped``, and
    ``last_seq`` its newest seq (a turn appends with it as ``expect_last_seq``).
    ``reserve`` counts tokens the caller adds itself (an app's system prompt, a new question).
    """
    if budget < 0:
        raise ValueError("token budget must be >= 0")
    avail = tail_budget(budget, system=system, summary=summary, reserve=reserve)
    start = len(tail)
    used = 0
    while start > 0 and used + tail[start - 1].tokens <= avail:
        start -= 1
        used += tail[start].tokens
    last_user = next((i for i in range(len(tail) - 1, -1, -1) if tail[i].role == "user"), None)
    if last_user is not None and start > last_user:
        start = last_user
    while start < len(tail) and tail[start].role in _CANNOT_START:
        start += 1
    chosen = tuple(tail[start:])
    tokens = budget - avail + sum(m.tokens for m in chosen)
    return Window(
        system=tuple(system),
        summary=summary,
        messages=chosen,
        tokens=tokens,
        budget=budget,
        over_budget=tokens > budget,
        dropped=total_count - len(system) - len(chosen),
        last_seq=last_seq,
    )


def split_history(
    history: Sequence[StoredMessage], summary: Summary | None, *, pin_system: bool
) -> tuple[list[StoredMessage], list[StoredMessage]]:
    """Split a whole history into (pinned, windowable) the way every backend does."""
    covered = summary.covers_through_seq if summary else 0
    pinned: list[StoredMessage] = []
    rest: list[StoredMessage] = []
    for m in history:
        if pin_system and m.role in PINNED_ROLES:
            pinned.append(m)
        elif m.seq > covered:
            rest.append(m)
    return pinned, rest


def window_from_history(
    history: Sequence[StoredMessage],
    *,
    budget: int,
    summary: Summary | None = None,
    pin_system: bool = True,
    reserve: int = 0,
) -> Window:
    """The window over a whole history held in memory (the reference computation)."""
    pinned, rest = split_history(history, summary, pin_system=pin_system)
    return select_window(
        budget=budget,
        system=pinned,
        summary=summary,
        tail=rest,
        total_count=len(history),
        last_seq=history[-1].seq if history else 0,
        reserve=reserve,
    )
