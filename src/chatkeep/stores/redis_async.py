"""The async twin of :mod:`chatkeep.stores.redis`, over ``redis.asyncio`` (no threads).

Same scripts, same keys, same replies: only the IO is awaited. Anything that is not IO lives
in :mod:`chatkeep.stores.redis_keys` and :mod:`chatkeep.stores.redis_scripts`.
``tests/test_redis_backend.py`` checks that the twins have not drifted: this class with
``async``/``await`` removed must be the sync class, up to the client and its ``close()``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from chatkeep.errors import ChatkeepError, InvalidURL, TokenizerMismatch
from chatkeep.stores import redis_keys as rk
from chatkeep.stores._common import (
    check_summary_args,
    decode_cursor,
    encode_cursor,
    new_id,
    rewrite_conflict,
    summary_of,
    ts,
)
from chatkeep.stores.base import UNSET, NewRow, Rewrite, _Unset
from chatkeep.stores.redis_keys import (
    import_redis,
    lease_of,
    make_client,
    tokenizer_error,
    unavailable,
    warn_durability,
)
from chatkeep.stores.redis_scripts import SCRIPTS, Script
from chatkeep.types import (
    AppendResult,
    JSONObject,
    Lease,
    SessionInfo,
    SessionPage,
    StoredMessage,
    Summary,
    Window,
    utcnow,
)

T = TypeVar("T")


class AsyncRedisBackend:
    scheme = "redis"
    ephemeral = False

    def __init__(self, url: str, label: str) -> None:
        self.options = rk.parse_options(url, label)
        self.keys = rk.Keys(self.options.prefix)
        #: True / False / None (unknown): see :class:`chatkeep.stores.redis.RedisBackend`.
        self.persistent: bool | None = None
        self._client: Any = None

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def client(self) -> Any:  # redis.asyncio.Redis
        if self._client is None:
            try:
                self._client = make_client(self.options, asyncio=True)
            except ValueError as exc:  # redis-py's own URL checks
                raise InvalidURL(f"{self.options.label}: {exc}") from exc
        return self._client

    async def _run(self, fn: Callable[[Any], Awaitable[T]], *, retry: bool = True) -> T:
        errors = import_redis().exceptions
        for attempt in (0, 1):
            try:
                return await fn(self.client)
            except ChatkeepError:
                raise
            except (errors.ConnectionError, errors.TimeoutError, OSError, EOFError) as exc:
                # OSError / EOFError: a reset or refused socket that redis-py let through
                # unwrapped (it happens on its asyncio paths); a dropped connection all the same
                dropped = not isinstance(exc, (errors.TimeoutError, TimeoutError))
                if retry and attempt == 0 and dropped:
                    continue
                raise unavailable(self.options.label, exc, retry=retry) from exc
            except (errors.RedisError, errors.RedisClusterException) as exc:
                raise unavailable(self.options.label, exc, retry=True) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _eval(self, r: Any, script: Script, keys: list[str], args: list[Any]) -> Any:
        try:
            return await r.evalsha(script.sha, len(keys), *keys, *args)
        except import_redis().exceptions.NoScriptError:
            await r.script_load(script.text)
            return await r.evalsha(script.sha, len(keys), *keys, *args)

    async def _index(self, r: Any, tenant: str, session_id: str, unindexed: Any) -> None:
        """Put a session its script reported as unindexed into its tenant's index, then mark
        it: the index lives in another cluster slot, so this cannot be part of the script. A
        crash in between leaves the mark unset, and the session's next write indexes it."""
        if unindexed:
            await r.zadd(self.keys.index(tenant), {session_id: 0})
            meta = self.keys.session(tenant, session_id)[:1]
            await self._eval(r, SCRIPTS["indexed"], meta, [])

    async def _unindex(self, r: Any, tenant: str, session_id: str) -> None:
        idx, member = self.keys.index(tenant), self.keys.expiry_member(tenant, session_id)
        await r.zrem(idx, session_id)
        await r.zrem(self.keys.expiry, member)
        meta = self.keys.session(tenant, session_id)[0]
        if await r.exists(meta):
            await r.zadd(idx, {session_id: 0})
            exp = await r.hget(meta, "expms")
            if exp:
                await r.zadd(self.keys.expiry, {member: int(exp)})

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        errors = import_redis().exceptions

        async def go(r: Any) -> bool | None:
            await r.ping()
            try:
                return rk.persistent_by_config(
                    await r.config_get("appendonly"), await r.config_get("save")
                )
            except errors.ResponseError:
                pass
            try:
                return rk.persistent_by_info(await r.info("persistence"))
            except errors.ResponseError:
                return None

        self.persistent = await self._run(go)
        if self.persistent is False and self.options.durability_warning:
            warn_durability(self.options.label)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def bind_tokenizer(self, name: str) -> None:
        async def go(r: Any) -> None:
            if not await r.set(self.keys.tokenizer, name, nx=True):
                held = await r.get(self.keys.tokenizer)
                if held is not None and held.decode() != name:
                    raise TokenizerMismatch(tokenizer_error(self.options.label, held, name))

        await self._run(go)

    # -- primitives --------------------------------------------------------------------------
    async def append(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        idempotency_key: str | None,
        expect_last_seq: int | None,
    ) -> AppendResult:
        ids = [r.msg_id or new_id() for r in rows]
        args = rk.append_args(utcnow(), rows, ids, idempotency_key, expect_last_seq)

        async def go(r: Any) -> Any:
            reply = await self._eval(r, SCRIPTS["append"], keys, args)
            if reply[0] == 2:
                await self._index(r, tenant, session_id, reply[2])
            return reply

        keys = self.keys.session(tenant, session_id)
        reply = await self._run(go, retry=idempotency_key is not None)
        if reply[0] == 1:
            raise rk.check_conflict(session_id, expect_last_seq, int(reply[1]))
        return rk.append_result(session_id, rows, ids, reply)

    async def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]:
        args = [rk.now_ms(utcnow()), after_seq, "" if limit is None else limit, int(newest)]
        keys = self.keys.session(tenant, session_id)
        reply = await self._run(lambda r: self._eval(r, SCRIPTS["read"], keys, args))
        return rk.decode_records(session_id, int(reply[0]), reply[1:]) if reply else []

    async def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window:
        args = [rk.now_ms(utcnow()), budget, reserve, int(pin_system)]
        keys = self.keys.session(tenant, session_id)
        reply = await self._run(lambda r: self._eval(r, SCRIPTS["window"], keys, args))
        return rk.window_of(
            session_id, reply, budget=budget, pin_system=pin_system, reserve=reserve
        )

    async def pop(self, tenant: str, session_id: str) -> StoredMessage | None:
        now = utcnow()
        keys = self.keys.session(tenant, session_id)
        reply = await self._run(
            lambda r: self._eval(r, SCRIPTS["pop"], keys, [rk.now_ms(now), ts(now)]), retry=False
        )
        return None if reply is None else rk.decode_record(session_id, int(reply[0]), reply[1])

    async def clear(self, tenant: str, session_id: str) -> int:
        now = utcnow()
        keys = self.keys.session(tenant, session_id)
        return int(
            await self._run(
                lambda r: self._eval(r, SCRIPTS["clear"], keys, [rk.now_ms(now), ts(now)]),
                retry=False,
            )
        )

    async def replace(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        expect_last_seq: int | None,
    ) -> AppendResult:
        ids = [r.msg_id or new_id() for r in rows]
        args = rk.append_args(utcnow(), rows, ids, None, expect_last_seq)

        async def go(r: Any) -> Any:
            reply = await self._eval(r, SCRIPTS["replace"], keys, args)
            if reply[0] == 2:
                await self._index(r, tenant, session_id, reply[2])
            return reply

        keys = self.keys.session(tenant, session_id)
        reply = await self._run(go, retry=False)
        if reply[0] == 1:
            raise rk.check_conflict(session_id, expect_last_seq, int(reply[1]))
        return rk.append_result(session_id, rows, ids, reply)

    async def delete(self, tenant: str, session_id: str) -> bool:
        async def go(r: Any) -> bool:
            keys = self.keys.session(tenant, session_id)
            existed = await self._eval(r, SCRIPTS["delete"], keys, [])
            await self._unindex(r, tenant, session_id)
            return bool(existed)

        return await self._run(go)

    async def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        after = decode_cursor(cursor)
        now = utcnow()

        async def go(r: Any) -> SessionPage:
            found: list[SessionInfo] = []
            low, high = rk.prefix_range(prefix, after)
            while len(found) <= limit:
                want = limit + 1 - len(found)
                ids = await r.zrangebylex(self.keys.index(tenant), low, high, start=0, num=want)
                if not ids:
                    break
                pipe = r.pipeline(transaction=False)
                for raw in ids:
                    pipe.hgetall(self.keys.session(tenant, raw.decode())[0])
                for raw, h in zip(ids, await pipe.execute(), strict=True):
                    meta = rk.as_hash(h)
                    if rk.is_live(meta, now):
                        found.append(rk.info_of(tenant, raw.decode(), meta))
                low = b"(" + ids[-1]
                if len(ids) < want:
                    break
            items = tuple(found[:limit])
            nxt = encode_cursor(items[-1].session_id) if len(found) > limit else None
            return SessionPage(items, nxt)

        return await self._run(go)

    async def _hash(self, tenant: str, session_id: str) -> dict[str, str] | None:
        key = self.keys.session(tenant, session_id)[0]
        h = rk.as_hash(await self._run(lambda r: r.hgetall(key)))
        return h if rk.is_live(h, utcnow()) else None

    async def info(self, tenant: str, session_id: str) -> SessionInfo | None:
        h = await self._hash(tenant, session_id)
        return None if h is None else rk.info_of(tenant, session_id, h)

    async def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        now = utcnow()
        mode, ms, iso = (
            ("keep", "", "") if isinstance(expires_at, _Unset) else rk.expiry_args(expires_at)
        )
        args = [rk.now_ms(now), ts(now), rk.dump_metadata(metadata), mode, ms, iso]
        member = self.keys.expiry_member(tenant, session_id)

        async def go(r: Any) -> Any:
            if mode == "set":  # the expiry index first: purge must be able to find it
                await r.zadd(self.keys.expiry, {member: int(ms)})
            keys = self.keys.session(tenant, session_id)
            flat, unindexed = await self._eval(r, SCRIPTS["update"], keys, args)
            await self._index(r, tenant, session_id, unindexed)
            if mode == "clear":
                await r.zrem(self.keys.expiry, member)
            return flat

        return rk.info_of(tenant, session_id, rk.as_hash(await self._run(go)))

    async def get_summary(self, tenant: str, session_id: str) -> Summary | None:
        h = await self._hash(tenant, session_id)
        return None if h is None else rk.summary_from(h)

    async def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary:
        check_summary_args(session_id, covers_through_seq, covers_through_seq)  # covers >= 0
        now = utcnow()
        args = [rk.now_ms(now), ts(now), text, covers_through_seq, tokens]
        keys = self.keys.session(tenant, session_id)

        async def go(r: Any) -> Any:
            reply = await self._eval(r, SCRIPTS["summary"], keys, args)
            if reply[0] == 0:
                await self._index(r, tenant, session_id, reply[1])
            return reply

        reply = await self._run(go)
        if reply[0] == 1:
            raise rk.summary_error(session_id, covers_through_seq, int(reply[1]))
        return summary_of(text, covers_through_seq, tokens, now)

    async def purge_expired(self, now: datetime) -> int:
        async def go(r: Any) -> int:
            members = await r.zrangebyscore(self.keys.expiry, "-inf", rk.now_ms(now))
            purged = 0
            for member in members:
                tenant, session_id = self.keys.split_member(member)
                keys = self.keys.session(tenant, session_id)
                if await self._eval(r, SCRIPTS["purge"], keys, [rk.now_ms(now)]):
                    purged += 1
                    await self._unindex(r, tenant, session_id)
            return purged

        return await self._run(go)

    async def erase(self, tenant: str) -> int:
        async def go(r: Any) -> int:
            idx = self.keys.index(tenant)
            erased = 0
            for raw in await r.zrange(idx, 0, -1):
                keys = self.keys.session(tenant, raw.decode())
                erased += int(await self._eval(r, SCRIPTS["delete"], keys, []))
            stray = [
                k async for k in r.scan_iter(match=self.keys.tenant_pattern(tenant), count=1000)
            ]
            for start in range(0, len(stray), 500):
                await r.delete(*stray[start : start + 500])
            pattern = self.keys.expiry_pattern(tenant)
            mine = [m async for m, _ in r.zscan_iter(self.keys.expiry, match=pattern)]
            if mine:
                await r.zrem(self.keys.expiry, *mine)
            await r.delete(idx)
            return erased

        return await self._run(go)

    async def acquire_lease(
        self, tenant: str, session_id: str, owner: str, ttl: float
    ) -> Lease | None:
        keys = self.keys.lease(tenant, session_id)
        ttl_ms = max(1, int(ttl * 1000))
        token = await self._run(
            lambda r: self._eval(r, SCRIPTS["acquire"], keys, [owner, ttl_ms]), retry=False
        )
        return lease_of(session_id, owner, token, time.time() + ttl)

    async def release_lease(self, tenant: str, session_id: str, token: int) -> bool:
        keys = self.keys.lease(tenant, session_id)[:1]
        return bool(
            await self._run(lambda r: self._eval(r, SCRIPTS["release"], keys, [token]), retry=False)
        )

    async def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None:
        keys = self.keys.session(tenant, session_id)
        args = rk.rewrite_args(utcnow(), rows)
        bad = await self._run(
            lambda r: self._eval(r, SCRIPTS["rewrite"], keys, args), retry=True
        )  # a repeat after a dropped connection writes the same bodies again
        if int(bad):
            raise rewrite_conflict(session_id, int(bad))

    async def tenants(self) -> list[str]:
        async def go(r: Any) -> list[str]:
            found = {
                self.keys.index_tenant(k)
                async for k in r.scan_iter(match=self.keys.index_pattern(), count=1000)
            }
            return sorted(t for t in found if t is not None)

        return await self._run(go)
