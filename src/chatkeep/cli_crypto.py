"""``chatkeep keygen`` and ``chatkeep rekey``: keys for encryption at rest."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chatkeep.stores import default_url, open_store

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def keygen() -> None:
    """Print a new random encryption key (base64, 32 bytes) for $CHATKEEP_ENCRYPTION_KEY.

    Example: chatkeep keygen > chatkeep.key && chmod 600 chatkeep.key
    """
    from chatkeep.crypto import Keyring, generate_key

    key = generate_key()
    err.print(f"key id {Keyring(key).current_id} (keep the key secret; losing it loses the data)")
    out.print(key, markup=False)


def rekey(
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            "-s",
            envvar="CHATKEEP_URL",
            show_envvar=True,
            help="Store URL (default: $CHATKEEP_URL, else sqlite:///chatkeep.db).",
        ),
    ] = None,
    tenant: Annotated[
        list[str] | None,
        typer.Option(
            "--tenant",
            "-t",
            help="Tenant to rekey (repeatable; default: every tenant the store holds).",
        ),
    ] = None,
) -> None:
    """Re-encrypt stored conversations with the current key ($CHATKEEP_ENCRYPTION_KEY),
    reading older data with $CHATKEEP_ENCRYPTION_OLD_KEYS; plaintext written before encryption
    was turned on, and envelopes in the older format, are rewritten too. Messages keep their
    ids, seqs, timestamps and idempotency keys (rewritten in place). Data already under the
    current key is skipped, so an interrupted or killed run resumes where it stopped. With
    only old keys set, it decrypts everything (turning encryption off). Exit status 1 if a
    session could not be rewritten.

    Example: CHATKEEP_ENCRYPTION_KEY=$(cat new.key) CHATKEEP_ENCRYPTION_OLD_KEYS=$(cat old.key)
    chatkeep rekey --store sqlite:///chatkeep.db
    """
    from chatkeep.rekey import rekey_sessions, session_ids
    from chatkeep.stores import resolve_keyring

    keyring = resolve_keyring(None)
    with open_store(store or default_url(), encryption=keyring or False) as st:
        from chatkeep.rekey import _backend

        backend = _backend(st)
        todo = session_ids(st, tenant or None)
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=not err.is_terminal,
            transient=True,
        )
        ticker = _Ticker(len(todo), enabled=not err.is_terminal)
        with progress:
            task = progress.add_task("rekeying", total=len(todo))

            def advance(_tenant: str, _sid: str) -> None:
                progress.advance(task)
                ticker.tick()

            report = rekey_sessions(backend, todo, on_session=advance)
    target = f"key id {keyring.current_id}" if keyring and keyring.current_id else "plaintext"
    err.print(
        f"rekey to {target}: {report.sessions} session(s) looked at, {report.rewritten} "
        f"rewritten ({report.messages} message(s)), {len(report.skipped)} skipped"
    )
    for t, sid, why in report.skipped:
        err.print(
            f"[red]skipped[/] tenant {escape(t)!s} session {escape(repr(sid))}: {escape(why)}"
        )
    if report.skipped:
        raise typer.Exit(1)


class _Ticker:
    """Progress on a non-terminal stderr (a log): one line every ``every`` seconds."""

    def __init__(self, total: int, *, enabled: bool, every: float = 5.0) -> None:
        self.total, self.enabled, self.every = total, enabled, every
        self.done = 0
        self.next = time.monotonic() + every

    def tick(self) -> None:
        self.done += 1
        if self.enabled and time.monotonic() >= self.next:
            self.next = time.monotonic() + self.every
            err.print(f"rekey: {self.done}/{self.total} session(s)")


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
    app.command("rekey")(rekey)
