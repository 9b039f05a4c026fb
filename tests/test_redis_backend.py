"""redis:// specifics, on real servers: processes, slots, TTLs, erase, durability, outages.

The shared behaviour is in tests/conformance (which runs on Redis too); this file holds what
only Redis has. Servers this file starts itself bind a free port in a fresh folder.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from tests.reliability.servers import RedisServer as Server
from tests.reliability.servers import free_port

import chatkeep
from chatkeep import DurabilityWarning, InvalidURL, Message, StoreUnavailable
from chatkeep.stores import make_async_backend, make_backend
from chatkeep.stores.redis import RedisBackend
from chatkeep.stores.redis_async import AsyncRedisBackend
from chatkeep.stores.redis_keys import SUFFIXES
from chatkeep.types import utcnow
from redis_support import drop_prefix, fresh_prefix, server_url, with_options


@pytest.fixture
def base_url() -> str:
    return server_url()


@pytest.fixture
def url(base_url: str) -> Iterator[str]:
    with fresh_prefix(base_url) as (store_url, _):
        yield store_url


@pytest.fixture
def raw(base_url: str) -> Iterator[Any]:
    client = redis.Redis.from_url(base_url)
    yield client
    client.close()


def prefix_of(url: str) -> str:
    return url.split("prefix=")[1].split("&")[0]


def keys_of(raw: Any, prefix: str) -> list[bytes]:
    return sorted(k for p in (f"{{{prefix}:*", f"{prefix}:*") for k in raw.scan_iter(p))


# -- a private server (for outages and persistence): tests/reliability/servers.py ----------


@pytest.fixture
def server(tmp_path: Path, base_url: str) -> Iterator[Server]:  # base_url: skip when Redis is off
    srv = Server(tmp_path)
    srv.start()
    yield srv
    if srv.proc and srv.proc.poll() is None:
        srv.kill()


def run_py(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- tests --------------------------------------------------------------------------------------


def test_processes_append_to_one_session_gapless_without_duplicates(url: str) -> None:
    code = """
        import sys, chatkeep
        with chatkeep.open_store(sys.argv[1]) as store:
            for i in range(40):
                store.append("shared", [chatkeep.Message.user(f"{sys.argv[2]}-{i}"),
                                        chatkeep.Message.assistant(f"{sys.argv[2]}-{i}-r")])
        """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), url, f"p{n}"], stderr=subprocess.PIPE
        )
        for n in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    with chatkeep.open_store(url) as store:
        rows = store.read("shared")
        assert [m.seq for m in rows] == list(range(1, 321))
        texts = [m.text for m in rows]
        assert len(set(texts)) == 320
        # every batch stayed whole and in order: a reply right after its question
        for q, a in zip(rows[::2], rows[1::2], strict=True):
            assert a.text == q.text + "-r"
        info = store.info("shared")
        assert info.total_tokens == sum(m.tokens for m in rows) and info.last_seq == 320


def test_a_new_process_continues_the_conversation(url: str) -> None:
    writer = run_py(
        """
        import sys, chatkeep
        with chatkeep.open_store(sys.argv[1]) as store:
            chatkeep.Memory("user-1", store=store).add("user", "My name is Ada.")
        """,
        url,
    )
    assert writer.returncode == 0, writer.stderr
    reader = run_py(
        """
        import sys, chatkeep
        with chatkeep.open_store(sys.argv[1]) as store:
            print(chatkeep.Memory("user-1", store=store).messages()[0]["content"])
        """,
        url,
    )
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.strip() == "My name is Ada."


def test_every_key_of_a_session_shares_one_cluster_slot(url: str, raw: Any) -> None:
    from redis.crc import key_slot

    prefix = prefix_of(url)
    sid = "slot{check}:*?"  # braces and glob characters inside the id
    with chatkeep.open_store(url) as store:
        store.append(sid, [Message.system("s"), Message.user("u")], idempotency_key="k")
        store.put_summary(sid, "sum", 1)
        store.update_session(sid, expires_at=utcnow() + timedelta(hours=1))
        lease = store.acquire_lease(sid, owner="me", ttl=30)
        assert lease is not None
        store.append("other", Message.user("x"))
    tag = f"{{{prefix}:7:default:{sid}}}"
    mine = [k for k in keys_of(raw, prefix) if k.startswith(tag.encode())]
    # every suffix exists: the script really touched them all
    assert sorted(k.decode()[len(tag) + 1 :] for k in mine) == sorted(SUFFIXES)
    assert len({key_slot(k) for k in mine}) == 1
    other = [k for k in keys_of(raw, prefix) if b"default:other}" in k]
    assert other and key_slot(other[0]) != key_slot(mine[0])  # sessions spread over slots


def test_expiry_is_a_native_ttl_on_every_key(url: str, raw: Any) -> None:
    prefix = prefix_of(url)
    with chatkeep.open_store(url) as store:
        store.append("s", [Message.system("s"), Message.user("u")], idempotency_key="k")
        when = utcnow() + timedelta(hours=2)
        store.update_session("s", expires_at=when)
        # keys born after the expiry was set get it too (the append script refreshes TTLs)
        store.append("s", Message.user("again"), idempotency_key="k2")
        store.put_summary("s", "sum", 1)
        data = [k for k in keys_of(raw, prefix) if b"default:s}" in k and not k.endswith(b":l")]
        assert len(data) >= 7
        for key in data:
            left = raw.pttl(key)
            assert 2 * 3600_000 - 60_000 < left <= 2 * 3600_000, key
        assert store.info("s").expires_at == when
        store.update_session("s", expires_at=None)
        assert all(raw.pttl(k) == -1 for k in data)
        # an expiry in the past deletes the data at once, natively
        store.update_session("s", expires_at=utcnow() - timedelta(seconds=1))
        assert [k for k in keys_of(raw, prefix) if b"default:s}" in k] == []
        assert store.purge_expired() == 1
        assert raw.zcard(f"{prefix}:sessions:7:default") == 0
        assert raw.zcard(f"{prefix}:expiry") == 0


def test_erase_leaves_no_key_of_the_tenant(url: str, raw: Any) -> None:
    prefix = prefix_of(url)
    with chatkeep.open_store(url) as store:
        acme = store.with_tenant("ac*me")  # a glob character in the tenant
        for i in range(30):
            acme.append(f"s{i}", [Message.user("x"), Message.assistant("y")])
        acme.put_summary("s1", "sum", 1)
        acme.update_session("s2", expires_at=utcnow() + timedelta(hours=1))
        acme.acquire_lease("never-written", owner="w", ttl=60)
        store.with_tenant("acme").append("keep", Message.user("other tenant"))
        store.append("mine", Message.user("keep"))
        assert store.erase("ac*me") == 30
        left = keys_of(raw, prefix)
        assert not [k for k in left if b":5:ac*me" in k]
        assert raw.zcard(f"{prefix}:expiry") == 0
        assert store.with_tenant("acme").read("keep")[0].text == "other tenant"
        assert store.read("mine")[0].text == "keep"
        store.erase("acme")
        store.erase("default")
        assert keys_of(raw, prefix) == [f"{prefix}:tokenizer".encode()]


def test_lease_is_set_nx_px_with_a_fencing_token(url: str, raw: Any) -> None:
    prefix = prefix_of(url)
    with chatkeep.open_store(url) as store:
        a = store.acquire_lease("s", owner="a", ttl=5)
        assert a is not None
        key = f"{{{prefix}:7:default:s}}:l"
        assert 4000 < raw.pttl(key) <= 5000
        assert raw.get(key) == f"{a.token}\x1fa".encode()
        assert store.release_lease("s", a.token + 1) is False  # wrong token: nothing released
        assert raw.exists(key)
        assert store.release_lease("s", a.token)
        assert not raw.exists(key)


def test_the_durability_warning_fires_on_a_server_without_persistence(base_url: str) -> None:
    probe = redis.Redis.from_url(base_url)
    try:
        aof = probe.config_get("appendonly")["appendonly"]
        save = probe.config_get("save")["save"]
    finally:
        probe.close()
    if aof == b"yes" or save.strip():
        pytest.skip("this Redis persists (AOF or RDB on); the warning rightly stays quiet")
    prefix = f"ck_test_{uuid.uuid4().hex[:12]}"
    try:
        with pytest.warns(DurabilityWarning, match="appendonly no, no save points"):
            store = chatkeep.open_store(with_options(base_url, prefix=prefix))
        assert store.persistent is False
        store.close()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            quiet = chatkeep.open_store(
                with_options(base_url, prefix=prefix, durability_warning="off")
            )
        assert quiet.persistent is False  # the flag tells the truth even when silenced
        quiet.close()
    finally:
        drop_prefix(base_url, prefix)


def test_a_server_with_aof_is_persistent_and_survives_a_kill(server: Server) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = chatkeep.open_store(server.url + "?timeout=2&connect_timeout=1")
    try:
        assert store.persistent is True
        store.append("s", [Message.user("before the crash"), Message.assistant("ok")])
        server.kill()
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1") as err:
            store.append("s", Message.user("during the outage"))
        assert time.monotonic() - started < 10
        assert isinstance(err.value.__cause__, redis.ConnectionError)
        assert "idempotency_key" in str(err.value)  # an un-keyed append is not retried
        with pytest.raises(StoreUnavailable):
            store.read("s")
        server.start()  # same port, same folder: AOF replays
        # the same store object recovers; nothing acknowledged was lost
        assert [m.text for m in store.read("s")] == ["before the crash", "ok"]
        assert store.append("s", Message.user("after")).first_seq == 3
    finally:
        store.close()


def test_a_kill_mid_stream_leaves_only_whole_batches(server: Server) -> None:
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, chatkeep
                store = chatkeep.open_store(sys.argv[1])
                i = 0
                while True:
                    store.append("s", [chatkeep.Message.user(f"{i}-{j}") for j in range(5)])
                    print(i, flush=True)
                    i += 1
                """
            ),
            server.url + "?timeout=2&connect_timeout=1&durability_warning=off",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    for _ in range(30):  # let 30 batches be acknowledged, then kill the server mid-stream
        writer.stdout.readline()
    server.kill()
    out, err = writer.communicate(timeout=30)
    assert writer.returncode != 0 and "StoreUnavailable" in err
    acked = 30 + len(out.split())  # every batch the writer printed as acknowledged
    server.start()
    with chatkeep.open_store(server.url + "?durability_warning=off") as store:
        rows = store.read("s")
    assert len(rows) % 5 == 0 and len(rows) >= 5 * acked
    for k in range(0, len(rows), 5):
        batch = [m.text for m in rows[k : k + 5]]
        assert batch == [f"{k // 5}-{j}" for j in range(5)]
    assert [m.seq for m in rows] == list(range(1, len(rows) + 1))


def test_a_closed_port_is_store_unavailable_quickly(base_url: str) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0?connect_timeout=1"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as err:
        chatkeep.open_store(url)
    assert time.monotonic() - started < 10
    assert "hunter2" not in str(err.value) and "***" in str(err.value)
    assert isinstance(err.value.__cause__, redis.ConnectionError)


def test_killed_connections_recover_without_a_new_store(url: str, raw: Any) -> None:
    name = f"ck-{uuid.uuid4().hex[:8]}"
    with chatkeep.open_store(with_options(url, client_name=name)) as store:
        store.append("s", Message.user("a"))
        killed = 0
        for client in raw.client_list():
            if client["name"] == name:
                raw.client_kill_filter(_id=client["id"])
                killed += 1
        assert killed >= 1
        assert [m.text for m in store.read("s")] == ["a"]
        assert store.append("s", Message.user("b")).first_seq == 2


def test_async_twin_is_native_and_complete(url: str) -> None:
    backend = make_async_backend(url)
    assert isinstance(backend, AsyncRedisBackend)
    assert isinstance(make_backend(url), RedisBackend)
    sync_api = {n for n in dir(RedisBackend) if not n.startswith("_")}
    async_api = {n for n in dir(AsyncRedisBackend) if not n.startswith("_")}
    assert sync_api == async_api
    for name in sync_api:
        if inspect.isfunction(getattr(RedisBackend, name)):
            assert inspect.iscoroutinefunction(getattr(AsyncRedisBackend, name)), name

    async def main() -> None:
        async with await chatkeep.open_async_store(url) as store:
            await asyncio.gather(*(store.append("s", Message.user(str(i))) for i in range(50)))
            rows = await store.read("s")
            assert [m.seq for m in rows] == list(range(1, 51))
            assert store.persistent is False

    asyncio.run(main())


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("redis://127.0.0.1/0?colour=red", "unknown option"),
        ("redis://127.0.0.1/0?prefix=has space", "prefix="),
        ("redis://127.0.0.1/0?prefix={tag}", "prefix="),
        ("redis://127.0.0.1/0?prefix=app:7", "prefix="),
        ("redis://127.0.0.1/0?timeout=0", "timeout"),
        ("redis://127.0.0.1/0?timeout=soon", "timeout"),
        ("redis://127.0.0.1/0?durability_warning=maybe", "durability_warning"),
        ("redis:///0", "names no host"),
    ],
)
def test_bad_urls_are_explained(bad: str, match: str) -> None:
    with pytest.raises(InvalidURL, match=match):
        make_backend(bad)


def test_a_url_redis_py_rejects_is_invalid_url() -> None:
    with pytest.raises(InvalidURL, match="max_connections"):
        chatkeep.open_store("redis://127.0.0.1:6379/0?max_connections=lots")


def test_url_forms() -> None:
    for form in ("redis://h:6379/0", "rediss://u:p@h:6380/1", "unix:///run/redis.sock?db=2"):
        backend = make_backend(form)
        assert isinstance(backend, RedisBackend)
        assert "p@" not in backend.options.label
    backend = make_backend("redis://h/0?prefix=app1&timeout=2.5&client_name=web")
    assert isinstance(backend, RedisBackend)
    assert (backend.options.prefix, backend.options.timeout) == ("app1", 2.5)
    assert backend.options.driver_url == "redis://h/0?client_name=web"
    unix = make_backend("unix:///run/redis.sock?db=2&prefix=x")
    assert isinstance(unix, RedisBackend)
    assert unix.options.driver_url == "unix:///run/redis.sock?db=2"


def test_a_crash_before_indexing_heals_on_the_next_write(url: str, raw: Any) -> None:
    """The index lives in another cluster slot than the session, so it is written after the
    session's script: a process dying in between leaves the session readable and unlisted
    until its next write, never half-written."""
    from chatkeep.stores import redis_keys as rk
    from chatkeep.stores.redis_scripts import SCRIPTS

    prefix = prefix_of(url)
    with chatkeep.open_store(url) as store:
        backend = store._backend.inner  # under the (keyless) encryption wrapper
        assert isinstance(backend, RedisBackend)
        rows = store._rows(Message.user("written, then the process died"))
        args = rk.append_args(utcnow(), rows, ["a" * 32], None, None)
        reply = backend._eval(raw, SCRIPTS["append"], backend.keys.session("default", "s"), args)
        assert list(reply) == [2, 1, 1]  # stored, seq 1, not yet indexed
        assert store.sessions().items == ()
        assert store.read("s")[0].text == "written, then the process died"
        store.append("s", Message.assistant("next write"))
        assert [i.session_id for i in store.sessions().items] == ["s"]
        assert raw.hget(f"{{{prefix}:7:default:s}}:s", "ix") == b"1"
        # an index entry whose session is gone (deleted behind the index's back) is skipped
        raw.zadd(f"{prefix}:sessions:7:default", {"ghost": 0})
        assert [i.session_id for i in store.sessions().items] == ["s"]
        assert store.erase("default") == 1
        assert raw.exists(f"{prefix}:sessions:7:default") == 0


def test_a_full_redis_refuses_whole_appends_cleanly(tmp_path: Path, base_url: str) -> None:
    srv = Server(tmp_path, "--maxmemory", "3mb", "--maxmemory-policy", "noeviction")
    srv.start()
    try:
        with chatkeep.open_store(srv.url + "?durability_warning=off&timeout=5") as store:
            batch = [Message.user("x" * 2000) for _ in range(5)]
            with pytest.raises(StoreUnavailable, match="maxmemory") as err:
                for _ in range(2000):
                    store.append("s", batch)
            assert isinstance(err.value.__cause__, redis.ResponseError)
            rows = store.read("s")
            assert len(rows) % 5 == 0 and rows  # whole batches only
            assert [m.seq for m in rows] == list(range(1, len(rows) + 1))
            assert store.info("s").total_tokens == sum(m.tokens for m in rows)
    finally:
        srv.kill()


def test_a_cluster_spreads_sessions_over_its_nodes_and_erase_empties_them(
    redis_cluster_url: str,
) -> None:
    from redis_support import fresh_cluster_prefix

    with fresh_cluster_prefix(redis_cluster_url) as url, chatkeep.open_store(url) as store:
        for i in range(30):
            store.append(f"user-{i}", [Message.user("q"), Message.assistant("a")])
            store.acquire_lease(f"user-{i}", owner="w", ttl=60)
        client = store._backend.client
        per_node = {node.name: node.redis_connection.dbsize() for node in client.get_primaries()}
        assert len(per_node) == 3 and all(n > 0 for n in per_node.values()), per_node
        assert len(list(store.iter_sessions())) == 30
        assert store.erase("default") == 30
        prefix = prefix_of(url)
        left = [k for k in client.scan_iter(f"*{prefix}*") if b"tokenizer" not in k]
        assert left == []


def test_persistent_is_known_for_every_store(tmp_path: Path) -> None:
    with chatkeep.open_store(f"sqlite:///{tmp_path}/p.db") as durable:
        assert durable.persistent is True
    with chatkeep.open_store("memory://") as ephemeral:
        assert ephemeral.persistent is False
    assert make_backend("redis://127.0.0.1:1/0").persistent is None  # unknown until opened


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("quickstart.py", ["bot:  Your name is Ada.", "holds 4 messages", "redis://"]),
        ("async_app.py", ["ada: 10 messages", "bob: 10 messages"]),
        ("window.py", ["81 messages stored; window: 1 pinned +"]),
    ],
)
def test_the_examples_run_on_redis(
    url: str, tmp_path: Path, example: str, expected: list[str]
) -> None:
    """docs/deployment.md (Redis): every example, pointed at Redis by $CHATKEEP_URL."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "examples" / example)],
        cwd=tmp_path,
        env={**os.environ, "CHATKEEP_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for text in expected:
        assert text in out.stdout
    assert not list(tmp_path.iterdir())  # nothing went to disk: it all lives in Redis


class _Unasync(ast.NodeTransformer):
    """The async twin seen as sync code: no async/await, no docstrings."""

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> Any:
        self.generic_visit(node)
        return ast.FunctionDef(**{f: getattr(node, f) for f in node._fields})

    def visit_Await(self, node: ast.Await) -> Any:
        return self.visit(node.value)

    def visit_comprehension(self, node: ast.comprehension) -> Any:
        self.generic_visit(node)
        node.is_async = 0
        return node

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        self.generic_visit(node)
        if isinstance(node.value, ast.Name) and node.value.id == "Awaitable":
            return node.slice  # Callable[[Any], Awaitable[T]] is the twin of ...[[Any], T]
        return node

    def generic_visit(self, node: ast.AST) -> ast.AST:
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        return super().generic_visit(node)


def _class_dump(module: str, name: str) -> str:
    tree = ast.parse((Path(__file__).resolve().parent.parent / "src" / module).read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
    cls.name = "Twin"
    return ast.dump(_Unasync().visit(cls))


def test_the_async_twin_has_not_drifted_from_the_sync_one() -> None:
    """Both twins are written by hand; this keeps them the same code: the async backend,
    with async/await removed, must equal the sync one up to the few driver calls that differ."""
    sync = _class_dump("chatkeep/stores/redis.py", "RedisBackend")
    twin = _class_dump("chatkeep/stores/redis_async.py", "AsyncRedisBackend")
    allowed = {  # the only differences: which client, and how it closes
        "keyword(arg='asyncio', value=Constant(value=True))": (
            "keyword(arg='asyncio', value=Constant(value=False))"
        ),
        "attr='aclose'": "attr='close'",
    }
    for theirs, ours in allowed.items():
        twin = twin.replace(theirs, ours)
    if sync != twin:
        import difflib

        diff = difflib.unified_diff(
            sync.replace("), ", "),\n").splitlines(),
            twin.replace("), ", "),\n").splitlines(),
            lineterm="",
            n=1,
        )
        pytest.fail("the twins differ:\n" + "\n".join(list(diff)[:60]))


def test_a_unix_socket_url_works(tmp_path: Path, base_url: str) -> None:
    sock = tmp_path / "redis.sock"
    srv = Server(tmp_path, "--unixsocket", str(sock), "--unixsocketperm", "700")
    srv.start()
    try:
        url = f"unix://{sock}?db=3&prefix=ck_unix&durability_warning=off"
        with chatkeep.open_store(url) as store:
            store.append("s", [Message.user("over a socket"), Message.assistant("yes")])
        with chatkeep.open_store(url) as again:  # a new store, same data
            assert [m.text for m in again.read("s")] == ["over a socket", "yes"]
        assert redis.Redis(port=srv.port, db=3).exists("{ck_unix:7:default:s}:m")
    finally:
        srv.kill()


def _tls_files(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 (openssl)."""
    f = {n: folder / n for n in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt", "san")}
    f["san"].write_text("subjectAltName=IP:127.0.0.1\n")
    key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    for cmd in (
        f"req -x509 {key} -keyout {f['ca.key']} -out {f['ca.crt']} -days 1 "
        "-subj /CN=chatkeep-test-ca",
        f"req {key} -keyout {f['srv.key']} -out {f['srv.csr']} -subj /CN=127.0.0.1",
        f"x509 -req -in {f['srv.csr']} -CA {f['ca.crt']} -CAkey {f['ca.key']} -CAcreateserial "
        f"-out {f['srv.crt']} -days 1 -extfile {f['san']}",
    ):
        subprocess.run(["openssl", *cmd.split()], check=True, capture_output=True, timeout=60)
    return f


def test_rediss_connects_over_verified_tls(tmp_path: Path, base_url: str) -> None:
    import shutil

    if not shutil.which("openssl"):
        pytest.skip("needs openssl to make a test certificate")
    f = _tls_files(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(f["srv.crt"]), "--tls-key-file", str(f["srv.key"]),
         "--tls-ca-cert-file", str(f["ca.crt"]), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={f['ca.crt']}&durability_warning=off"
        deadline = time.monotonic() + 20
        while True:
            try:
                store = chatkeep.open_store(url + "&connect_timeout=1")
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with store:
            store.append("s", Message.user("encrypted in transit"))
            assert store.read("s")[0].text == "encrypted in transit"
        # a client that does not trust the server's CA is refused, as StoreUnavailable
        with pytest.raises(StoreUnavailable) as err:
            chatkeep.open_store(f"rediss://127.0.0.1:{port}/0?connect_timeout=2")
        assert "certificate" in str(err.value).lower()
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.mark.parametrize("error", [ConnectionResetError(104, "reset"), BrokenPipeError(32, "pipe")])
def test_a_socket_error_redis_py_lets_through_is_a_dropped_connection(
    url: str, error: OSError
) -> None:
    # redis-py's asyncio paths can raise a bare OSError for a reset socket instead of its own
    # ConnectionError; the server answered those with 500 instead of 503 during restarts.
    backend = make_backend(url)
    abackend = make_async_backend(url)
    backend.open()
    calls: list[int] = []

    def flaky(client: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return client.ping()

    assert backend._run(flaky) is True  # retried once, as a dropped connection is
    with pytest.raises(StoreUnavailable, match=type(error).__name__):
        backend._run(lambda client: (_ for _ in ()).throw(error))

    async def twin() -> None:
        await abackend.open()
        seen: list[int] = []

        async def aflaky(client: Any) -> Any:
            seen.append(1)
            if len(seen) == 1:
                raise error
            return await client.ping()

        try:
            assert await abackend._run(aflaky) is True
            with pytest.raises(StoreUnavailable, match="may or may not have been applied"):
                await abackend._run(aflaky_always, retry=False)
        finally:
            await abackend.close()

    async def aflaky_always(client: Any) -> Any:
        raise error

    try:
        asyncio.run(twin())
    finally:
        backend.close()
