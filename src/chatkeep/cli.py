"""The ``chatkeep`` command line: inspect, delete, export and import conversations."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chatkeep._version import __version__
from chatkeep.cli_doctor import doctor
from chatkeep.errors import ChatkeepError, InvalidInput
from chatkeep.export_checks import check_session_record, check_summary_span, read_lines
from chatkeep.store import Store
from chatkeep.stores import default_url, open_store
from chatkeep.types import Message, StoredMessage
from chatkeep.validation import check_session_id

EXPORT_VERSION = 1
BATCH = 500

app = typer.Typer(
    name="chatkeep",
    help="Durable, session-keyed conversation memory for LLM chat apps.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
sessions_app = typer.Typer(help="List, show and delete sessions.", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")
app.command("doctor")(doctor)

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        "-s",
        envvar="CHATKEEP_URL",
        show_envvar=True,
        help="Store URL (default: $CHATKEEP_URL, else sqlite:///chatkeep.db).",
    ),
]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant to act as.")]


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _open(url: str | None, tenant: str) -> Store:
    return open_store(url or default_url(), tenant=tenant)


def _version(value: bool) -> None:
    if value:
        out.print(f"chatkeep {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """chatkeep keeps chat memory in a durable store so it survives reloads, workers and
    restarts. Every command takes --store URL and --tenant NAME."""


# -- sessions -------------------------------------------------------------------------------
@sessions_app.command("list")
def sessions_list(
    store: StoreOpt = None,
    tenant: TenantOpt = "default",
    prefix: Annotated[str | None, typer.Option(help="Only ids starting with this.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List sessions, ordered by id.

    Example: chatkeep sessions list --prefix user- --limit 20
    """
    with _open(store, tenant) as st:
        items = []
        for info in st.iter_sessions(prefix=prefix, page_size=min(limit, 500)):
            items.append(info)
            if len(items) >= limit:
                break
    if as_json:
        for info in items:
            out.print(json.dumps(info.to_dict(), ensure_ascii=False), markup=False)
        return
    table = Table("session", "messages", "tokens", "updated", "expires", title=st.url)
    for info in items:
        table.add_row(
            escape(info.session_id),
            str(info.message_count),
            str(info.total_tokens),
            _when(info.updated_at),
            _when(info.expires_at) if info.expires_at else "-",
        )
    out.print(table)
    if not items:
        err.print("no sessions")


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(help="The session to show.")],
    store: StoreOpt = None,
    tenant: TenantOpt = "default",
    window: Annotated[
        int | None,
        typer.Option(min=0, help="Mark the messages in the LLM window for this token budget."),
    ] = None,
    last: Annotated[int | None, typer.Option(min=1, help="Only the newest N messages.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Show a session's transcript, and with --window which messages the LLM would get.

    Example: chatkeep sessions show user-42 --window 3000
    """
    with _open(store, tenant) as st:
        info = st.info(session_id)
        if info is None:
            err.print(
                f"[red]no session {escape(repr(session_id))} in {st.url} "
                f"(tenant {escape(repr(tenant))})[/]"
            )
            raise _Exit(1)
        messages = st.read(session_id, limit=last, newest=last is not None)
        win = st.window(session_id, window) if window is not None else None
        summary = st.get_summary(session_id)
    in_window = {m.seq for m in win.all_messages} if win else set()
    if as_json:
        for m in messages:
            row = m.to_dict()
            if win is not None:
                row["in_window"] = m.seq in in_window
            out.print(json.dumps(row, ensure_ascii=False), markup=False)
        return
    out.print(
        f"[bold]{escape(info.session_id)}[/]  {info.message_count} messages, "
        f"{info.total_tokens} tokens, updated {_when(info.updated_at)}"
    )
    if info.metadata:
        out.print(f"metadata: {json.dumps(info.metadata, ensure_ascii=False)}", markup=False)
    if summary is not None:
        out.print(
            f"summary (through seq {summary.covers_through_seq}, {summary.tokens} tokens):"
            f" {summary.text}",
            markup=False,
        )
    table = Table("seq", "role", "tokens", "text", *(["window"] if win else []))
    for m in messages:
        mark = ["[green]in[/]" if m.seq in in_window else "[dim]out[/]"] if win else []
        table.add_row(str(m.seq), m.role, str(m.tokens), escape(_text(m)), *mark)
    out.print(table)
    if win is not None:
        flag = (
            " [red]OVER BUDGET[/] (the latest user message alone does not fit)"
            if win.over_budget
            else ""
        )
        out.print(
            f"window: {len(win.all_messages)} messages, {win.tokens}/{win.budget} tokens, "
            f"{win.dropped} left out{flag}"
        )


@sessions_app.command("delete")
def sessions_delete(
    session_ids: Annotated[list[str], typer.Argument(help="Sessions to delete.")],
    store: StoreOpt = None,
    tenant: TenantOpt = "default",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete sessions and everything in them. Exit status 1 if one did not exist.

    Example: chatkeep sessions delete user-42 user-43 --yes
    """
    for sid in session_ids:  # all of them first: a bad id must not leave a half-done delete
        check_session_id(sid)
    if not yes and not typer.confirm(f"Delete {len(session_ids)} session(s)?", err=True):
        raise _Exit(1)
    missing = []
    with _open(store, tenant) as st:
        for sid in session_ids:
            if st.delete(sid):
                out.print(f"deleted {sid}", markup=False)
            else:
                missing.append(sid)
    for sid in missing:
        err.print(f"[red]no session {escape(repr(sid))}[/]")
    if missing:
        raise _Exit(1)


# -- export / import ------------------------------------------------------------------------
@app.command("export")
def export(
    session_ids: Annotated[
        list[str] | None, typer.Argument(help="Sessions to export (default: all).")
    ] = None,
    store: StoreOpt = None,
    tenant: TenantOpt = "default",
    output: Annotated[
        str, typer.Option("--output", "-o", help="File to write, or - for stdout.")
    ] = "-",
    prefix: Annotated[str | None, typer.Option(help="Only ids starting with this.")] = None,
) -> None:
    """Export sessions as JSON Lines: lossless (tool calls, metadata, payloads, timestamps).

    Example: chatkeep export --output backup.jsonl
    """
    with _open(store, tenant) as st:
        ids = session_ids or [s.session_id for s in st.iter_sessions(prefix=prefix)]
        missing = [sid for sid in ids if st.info(sid) is None]
        if missing:  # checked before anything is written
            raise InvalidInput(f"no session {missing[0]!r} to export")
        if output == "-":
            count = _write_export(st, tenant, ids, sys.stdout, show_progress=False)
        else:
            count = _export_to_file(st, tenant, ids, Path(output))
    err.print(f"exported {len(ids)} session(s), {count} message(s)")


def _export_to_file(st: Store, tenant: str, ids: list[str], path: Path) -> int:
    # Written beside the target and renamed over it once complete and synced: a failure or a
    # kill part-way leaves the previous file (or none), never a truncated export.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            count = _write_export(st, tenant, ids, f, show_progress=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _write_export(
    st: Store, tenant: str, ids: list[str], target: IO[str], *, show_progress: bool
) -> int:
    count = 0
    header = {
        "chatkeep_export": EXPORT_VERSION,
        "tenant": tenant,
        "exported_at": datetime.now().astimezone().isoformat(),
        "tokenizer": st.tokenizer.name,
    }
    target.write(json.dumps(header, ensure_ascii=False) + "\n")
    with _progress(show_progress) as progress:
        task = progress.add_task("exporting", total=len(ids))
        for sid in ids:
            info = st.info(sid)
            if info is None:
                raise InvalidInput(f"session {sid!r} was deleted while it was being exported")
            summary = st.get_summary(sid)
            record: dict[str, Any] = {
                "type": "session",
                **info.to_dict(),
                "summary": (
                    {"text": summary.text, "covers_through_seq": summary.covers_through_seq}
                    if summary
                    else None
                ),
            }
            target.write(json.dumps(record, ensure_ascii=False) + "\n")
            after = 0
            while True:
                page = st.read(sid, after_seq=after, limit=BATCH)
                for m in page:
                    target.write(
                        json.dumps({"type": "message", **m.to_dict()}, ensure_ascii=False) + "\n"
                    )
                count += len(page)
                if len(page) < BATCH:
                    break
                after = page[-1].seq
            progress.advance(task)
    return count


@dataclass
class _Session:
    info: dict[str, Any]
    line: int
    messages: list[Message] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)


def _parse_export(path: Path) -> Iterator[_Session]:
    """Validate an export file record by record; raise InvalidInput naming the bad line."""
    current: _Session | None = None
    for n, rec in read_lines(path):
        if rec is None:
            continue
        try:
            if not isinstance(rec, dict):
                raise InvalidInput("not a JSON object")
            if n == 1:
                if rec.get("chatkeep_export") != EXPORT_VERSION:
                    raise InvalidInput("not a chatkeep export (missing header)")
                continue
            kind = rec.get("type")
            if kind == "session":
                check_session_record(rec)
                if current is not None:
                    yield _complete(path, current)
                current = _Session(rec, n)
            elif kind == "message":
                if current is None or rec.get("session_id") != current.info["session_id"]:
                    raise InvalidInput("message outside its session's block")
                seq = rec.get("seq")
                expected = (current.seqs[-1] + 1) if current.seqs else 1
                if seq != expected:
                    raise InvalidInput(f"seq {seq!r} where {expected} was expected")
                current.messages.append(Message.from_dict(rec))
                current.seqs.append(seq)
            else:
                raise InvalidInput(f"unknown record type {kind!r}")
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"{path}:{n}: {exc}") from exc
    if current is not None:
        yield _complete(path, current)


def _complete(path: Path, session: _Session) -> _Session:
    try:
        check_summary_span(session.info, len(session.messages))
    except InvalidInput as exc:
        raise InvalidInput(f"{path}:{session.line}: {exc}") from exc
    return session


@app.command("import")
def import_(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A file written by chatkeep export.")
    ],
    store: StoreOpt = None,
    tenant: TenantOpt = "default",
    on_conflict: Annotated[
        str, typer.Option(help="When a session exists: fail, skip, append or replace.")
    ] = "fail",
) -> None:
    """Import an export file. The whole file is validated before anything is written, and
    re-running an interrupted import does not duplicate messages.

    Example: chatkeep import backup.jsonl --store sqlite:////tmp/copy.db --on-conflict skip
    """
    if on_conflict not in ("fail", "skip", "append", "replace"):
        raise InvalidInput("--on-conflict must be fail, skip, append or replace")
    sessions = list(_parse_export(file))  # validates every line first
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
    imported = skipped = messages = 0
    with _open(store, tenant) as st, _progress(True) as progress:
        if on_conflict == "fail":
            clash = [s.info["session_id"] for s in sessions if st.info(s.info["session_id"])]
            if clash:
                raise InvalidInput(
                    f"{len(clash)} session(s) already exist (first: {clash[0]!r}); nothing "
                    "was imported. Use --on-conflict skip, append or replace"
                )
        task = progress.add_task("importing", total=sum(len(s.messages) for s in sessions))
        for s in sessions:
            sid = s.info["session_id"]
            exists = st.info(sid) is not None
            if exists and on_conflict == "skip":
                skipped += 1
                progress.advance(task, len(s.messages))
                continue
            if exists and on_conflict == "replace":
                st.delete(sid)
            for start in range(0, len(s.messages), BATCH):
                batch = s.messages[start : start + BATCH]
                st.append(sid, batch, idempotency_key=f"import:{digest}:{s.line}:{start}")
                progress.advance(task, len(batch))
                messages += len(batch)
            meta = s.info.get("metadata") or None
            expires = s.info.get("expires_at")
            st.update_session(
                sid, metadata=meta, expires_at=datetime.fromisoformat(expires) if expires else None
            )
            summary = s.info.get("summary")
            if summary:
                last = st.info(sid)
                offset = (last.last_seq - len(s.messages)) if last else 0
                st.put_summary(sid, summary["text"], offset + summary["covers_through_seq"])
            imported += 1
    err.print(f"imported {imported} session(s), {messages} message(s); skipped {skipped}")


# -- helpers ---------------------------------------------------------------------------------
def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _text(m: StoredMessage) -> str:
    text = m.text.replace("\n", " ")
    if m.tool_calls:
        fns = [c.get("function") or {} for c in m.tool_calls]
        calls = ", ".join(f"{f.get('name', '?')}({f.get('arguments', '')})" for f in fns)
        text = f"{text} [tool calls: {calls}]".strip()
    if m.tool_call_id:
        text = f"[{m.tool_call_id}] {text}"
    return text if len(text) <= 200 else text[:199] + "…"


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not enabled or not err.is_terminal,
        transient=True,
    )


from chatkeep.cli_server import register as _register_server  # noqa: E402

_register_server(app)

from chatkeep.cli_crypto import register as _register_crypto  # noqa: E402

_register_crypto(app)


def main() -> None:
    """Entry point of the ``chatkeep`` console script."""
    try:
        app(standalone_mode=False)
    except _Exit as exc:
        sys.exit(exc.code)
    except InvalidInput as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except ChatkeepError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(1)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # a usage error
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
