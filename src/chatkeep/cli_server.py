"""``chatkeep serve`` and ``chatkeep keys``: run the server, manage its API keys."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chatkeep.errors import MissingDependency
from chatkeep.server.settings import DEFAULT_HOST, DEFAULT_KEYS_FILE, DEFAULT_PORT, Settings

keys_app = typer.Typer(
    help="Create, list and revoke the server's API keys (one tenant per key).",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

KeysFileOpt = Annotated[
    str,
    typer.Option(
        "--keys-file",
        envvar="CHATKEEP_KEYS_FILE",
        show_envvar=True,
        help="The keys file (hashed keys; written with mode 0600).",
    ),
]


def serve(
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
    host: Annotated[
        str, typer.Option(envvar="CHATKEEP_HOST", help="Interface to bind (loopback: keyless ok).")
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(envvar="CHATKEEP_PORT", help="TCP port.")] = DEFAULT_PORT,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    reload: Annotated[bool, typer.Option(help="Restart when source files change (dev).")] = False,
    reload_dir: Annotated[
        list[str] | None, typer.Option(help="Directory to watch with --reload (repeatable).")
    ] = None,
    keys_file: KeysFileOpt = DEFAULT_KEYS_FILE,
    token_limit: Annotated[
        int, typer.Option(envvar="CHATKEEP_TOKEN_LIMIT", min=1, help="Default window budget.")
    ] = 3000,
    system_prompt: Annotated[
        str | None, typer.Option(envvar="CHATKEEP_SYSTEM_PROMPT", help="System prompt for chat.")
    ] = None,
    lease_policy: Annotated[
        str,
        typer.Option(
            envvar="CHATKEEP_LEASE_POLICY", help="Concurrent turns on a session: queue or reject."
        ),
    ] = "queue",
    llm_base_url: Annotated[
        str | None,
        typer.Option(
            envvar="CHATKEEP_LLM_BASE_URL",
            help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (none: offline).",
        ),
    ] = None,
    llm_model: Annotated[
        str | None, typer.Option(envvar="CHATKEEP_LLM_MODEL", help="Model name for the endpoint.")
    ] = None,
    max_body_bytes: Annotated[
        int, typer.Option(envvar="CHATKEEP_MAX_BODY_BYTES", help="Largest request body accepted.")
    ] = 2_000_000,
    log_level: Annotated[
        str, typer.Option(envvar="CHATKEEP_LOG_LEVEL", help="debug, info, warning or error.")
    ] = "info",
    encryption_key_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Encrypt stored conversations with the base64 key in this file (or set "
            "$CHATKEEP_ENCRYPTION_KEY; `chatkeep keygen` makes one).",
        ),
    ] = None,
) -> None:
    """Run the memory server: REST API under /v1, chat, web inspector at /.

    The LLM key is read from $CHATKEEP_LLM_API_KEY only (never from the command line), the
    encryption key from --encryption-key-file or $CHATKEEP_ENCRYPTION_KEY.
    Example: chatkeep serve --port 8765 --workers 2
    """
    try:
        import uvicorn

        from chatkeep.server import _require
        from chatkeep.server.auth import check_startup
        from chatkeep.server.keys import KeyFile
        from chatkeep.server.logs import configure

        _require()
    except MissingDependency:
        raise
    except ImportError as exc:
        raise MissingDependency(f"{exc}: pip install 'chatkeep[server]'") from exc
    settings = Settings.from_env(
        store_url=store,
        host=host,
        port=port,
        keys_file=keys_file,
        token_limit=token_limit,
        system_prompt=system_prompt,
        lease_policy=lease_policy,
        llm_base_url=llm_base_url,
        llm_model=llm_model,
        max_body_bytes=max_body_bytes,
        log_level=log_level,
        encryption_key=encryption_key_file.read_text().strip() if encryption_key_file else None,
    )
    check_startup(settings.host, settings.loopback, KeyFile(settings.keys_path))  # exit 1
    os.environ.update(settings.to_env())
    multiproc_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiproc_dir = tempfile.mkdtemp(prefix="chatkeep-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
    configure(settings.log_level)
    from chatkeep.stores import redact

    llm = f"{settings.llm_model} at {settings.llm_base_url}" if settings.llm_base_url else None
    keyring = settings.keyring()
    crypt = f"key id {keyring.current_id or 'none (read-only)'}" if keyring else "off"
    err.print(
        f"chatkeep serve: http://{settings.host}:{settings.port}/ (web inspector; API docs at "
        f"/docs), store {redact(settings.store_url)}, "
        f"{workers} worker{'s' if workers > 1 else ''}, LLM: {llm or 'offline responder'}, "
        f"encryption: {crypt}",
        markup=False,
    )
    try:
        uvicorn.run(
            "chatkeep.server.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            reload=reload,
            reload_dirs=reload_dir or None,
            log_config=None,
            log_level=settings.log_level,
            timeout_graceful_shutdown=10,
        )
    finally:
        if multiproc_dir:
            shutil.rmtree(multiproc_dir, ignore_errors=True)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Argument(help="The tenant this key acts as.")],
    keys_file: KeysFileOpt = DEFAULT_KEYS_FILE,
    label: Annotated[str, typer.Option(help="A note to recognise the key by.")] = "",
) -> None:
    """Create an API key for TENANT and print it (shown once; only its hash is kept).

    Example: chatkeep keys create acme --label "acme prod"
    """
    from chatkeep.server.keys import KeyFile

    key, record = KeyFile(keys_file).create(tenant, label=label)
    err.print(f"key {record.id} for tenant {escape(tenant)!s} (store it now; it is not kept):")
    out.print(key, markup=False)


@keys_app.command("list")
def keys_list(
    keys_file: KeysFileOpt = DEFAULT_KEYS_FILE,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List API keys: id, tenant, label, created, revoked (never the keys themselves).

    Example: chatkeep keys list --json
    """
    from chatkeep.server.keys import KeyFile

    records = KeyFile(keys_file).records()
    if as_json:
        for r in records:
            row = r.to_dict()
            del row["hash"]
            out.print(json.dumps(row, ensure_ascii=False), markup=False)
        return
    table = Table("id", "tenant", "label", "created", "revoked")
    for r in records:
        table.add_row(r.id, escape(r.tenant), escape(r.label), r.created_at, r.revoked_at or "-")
    out.print(table)
    if not records:
        err.print(f"no keys in {keys_file}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (as `keys list` shows it).")],
    keys_file: KeysFileOpt = DEFAULT_KEYS_FILE,
) -> None:
    """Revoke an API key; a running server refuses it from its next request on.

    Example: chatkeep keys revoke 1a2b3c4d
    """
    from chatkeep.server.keys import KeyFile

    record = KeyFile(keys_file).revoke(key_id)
    err.print(f"revoked key {record.id} (tenant {escape(record.tenant)})")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
