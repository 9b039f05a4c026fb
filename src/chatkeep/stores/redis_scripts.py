"""The Lua scripts of the ``redis://`` backend (sans-IO: text only).

Every script touches the keys of ONE session, passed in the order of
:data:`chatkeep.stores.redis_keys.SUFFIXES`, and every one of those keys carries the same hash
tag, so each script runs in one slot (Redis Cluster accepts it) and is atomic: Redis runs a
script to the end before it serves anything else, so an append is all or nothing.

Session keys (``{tag}:<suffix>``)::

    s  hash   created, updated, last (= message count), total, systok, meta (JSON),
              expms/expiso (expiry), sumtext/sumseq/sumtok/sumat (summary),
              ix (1 once the session is in its tenant's index)
    m  hash   seq -> record ("role US tokens US id US created_at US body-JSON")
    p  zset   member seq, score = tokens of all messages before it (running total)
    y  zset   seqs of system/developer messages (pinned without a scan)
    u  zset   seqs of user messages (the latest one is always in a window)
    i  zset   idempotency key, score = last seq of its batch (pop forgets later keys)
    j  hash   idempotency key -> "first:last"
    l  string lease: "token US owner", with its own PX expiry
    f  string lease fencing counter (INCR)

Numbers bigger than 2^31 (expiry milliseconds) stay strings inside Lua: they are compared with
``tonumber`` but never printed from a Lua number.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

_PRELUDE = r"""
local M, MS, P, Y, U, I, J, L, F =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local DATA = {M, MS, P, Y, U, I, J}

local function expired(now)
  local e = redis.call('HGET', M, 'expms')
  return e and e ~= '' and tonumber(e) <= now
end

-- true when the session exists and has not expired; an expired one is dropped when asked
local function live(now, drop)
  if redis.call('EXISTS', M) == 0 then return false end
  if expired(now) then
    if drop then redis.call('DEL', unpack(DATA)) end
    return false
  end
  return true
end

local function create(now_iso)
  redis.call('HSET', M, 'created', now_iso, 'updated', now_iso, 'last', 0, 'total', 0,
             'systok', 0, 'meta', '{}', 'expms', '', 'sumseq', 0, 'ix', 0)
end

-- 1 when the session is not yet known to be in its tenant's index (the caller adds it, then
-- sets ix; a crash in between is healed by the session's next write)
local function unindexed()
  return redis.call('HGET', M, 'ix') ~= '1' and 1 or 0
end

-- give every key of the session the session's expiry (new keys are born without one)
local function ttl()
  local e = redis.call('HGET', M, 'expms')
  if e and e ~= '' then
    for _, k in ipairs(DATA) do redis.call('PEXPIREAT', k, e) end
    redis.call('PEXPIREAT', F, e)
  end
end

-- HMGET of records from..to, in chunks (Lua's unpack has a stack limit)
local function records(from, to)
  local out = {}
  local s = from
  while s <= to do
    local e = math.min(to, s + 999)
    local f = {}
    for q = s, e do f[#f + 1] = q end
    local part = redis.call('HMGET', MS, unpack(f))
    for k = 1, #part do out[#out + 1] = part[k] end
    s = e + 1
  end
  return out
end

local function hash(key)
  local flat = redis.call('HGETALL', key)
  local h = {}
  for k = 1, #flat, 2 do h[flat[k]] = flat[k + 1] end
  return h, flat
end
"""

# ARGV: now_ms, now_iso, idempotency key or '', expect_last_seq or '', n, then n triples
# (role, tokens, record). Replies {0, first, last, records...} (replay), {1, last} (conflict),
# {2, first, unindexed} (stored). The hot path: one HMGET reads all the state it needs.
APPEND = r"""
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', M, 'last', 'total', 'expms', 'ix')
local exists = h[1] ~= false
if exists and h[3] ~= '' and tonumber(h[3]) <= now then
  redis.call('DEL', unpack(DATA))
  exists = false
end
local last, total, exp, ix = 0, 0, '', false
if exists then
  last, total, exp, ix = tonumber(h[1]), tonumber(h[2]), h[3], h[4]
  if ARGV[3] ~= '' then
    local seen = redis.call('HGET', J, ARGV[3])
    if seen then
      local sep = string.find(seen, ':', 1, true)
      local first = tonumber(string.sub(seen, 1, sep - 1))
      local upto = tonumber(string.sub(seen, sep + 1))
      local out = records(first, upto)
      table.insert(out, 1, upto)
      table.insert(out, 1, first)
      table.insert(out, 1, 0)
      return out
    end
  end
end
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= last then return {1, last} end
if not exists then create(ARGV[2]) end
local systok = 0
local n = tonumber(ARGV[5])
for k = 1, n do
  local b = 5 + 3 * (k - 1)
  local role, tok, seq = ARGV[b + 1], tonumber(ARGV[b + 2]), last + k
  redis.call('HSET', MS, seq, ARGV[b + 3])
  redis.call('ZADD', P, total, seq)
  if role == 'user' then
    redis.call('ZADD', U, seq, seq)
  elseif role == 'system' or role == 'developer' then
    redis.call('ZADD', Y, seq, seq)
    systok = systok + tok
  end
  total = total + tok
end
redis.call('HSET', M, 'last', last + n, 'total', total, 'updated', ARGV[2])
if systok > 0 then redis.call('HINCRBY', M, 'systok', systok) end
if ARGV[3] ~= '' then
  redis.call('HSET', J, ARGV[3], (last + 1) .. ':' .. (last + n))
  redis.call('ZADD', I, last + n, ARGV[3])
end
if exp ~= '' then ttl() end
return {2, last + 1, ix == '1' and 0 or 1}
"""

# ARGV: now_ms, after_seq, limit or '', newest ('1'/'0'). Replies {} (no session) or
# {first_seq, records...}.
READ = r"""
if not live(tonumber(ARGV[1]), false) then return {} end
local last = tonumber(redis.call('HGET', M, 'last'))
local from, to = tonumber(ARGV[2]) + 1, last
if ARGV[3] ~= '' then
  local lim = tonumber(ARGV[3])
  if ARGV[4] == '1' then
    from = math.max(from, last - lim + 1)
  else
    to = math.min(to, from + lim - 1)
  end
end
if from > to then return {from} end
local out = records(from, to)
table.insert(out, 1, from)
return out
"""

# ARGV: now_ms, budget, reserve, pin ('1'/'0'). Replies {} (no session) or
# {meta (flat HGETALL), pinned seqs, pinned records, tail start seq, tail records}.
# The tail starts where the stored running totals say the budget can reach (one ZRANGEBYSCORE),
# or earlier at the latest user message: the same cut as the SQL backends.
WINDOW = r"""
local h, flat = hash(M)
if h.last == nil then return {} end
if h.expms and h.expms ~= '' and tonumber(h.expms) <= tonumber(ARGV[1]) then return {} end
local last, total, covered = tonumber(h.last), tonumber(h.total), tonumber(h.sumseq)
local budget, reserve, pin = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local sysseqs, sysrecs, systok = {}, {}, 0
if pin then
  sysseqs = redis.call('ZRANGE', Y, 0, -1)
  for k = 1, #sysseqs do sysrecs[k] = redis.call('HGET', MS, sysseqs[k]) end
  systok = tonumber(h.systok)
end
local sumtok = 0
if h.sumtext then sumtok = tonumber(h.sumtok) end
local avail = budget - reserve - systok - sumtok
local bound = total - math.max(avail, 0) - systok
local cut = last + 1
local found = redis.call('ZRANGEBYSCORE', P, bound, '+inf', 'LIMIT', 0, 1)
if #found > 0 then cut = tonumber(found[1]) end
local ustart = last + 1
local user = redis.call('ZREVRANGE', U, 0, 0)
if #user > 0 and tonumber(user[1]) > covered then ustart = tonumber(user[1]) end
local start = math.max(covered + 1, math.min(cut, ustart))
local tail = {}
if start <= last then tail = records(start, last) end
return {flat, sysseqs, sysrecs, start, tail}
"""

# ARGV: now_ms, now_iso. Replies nil or {seq, record}.
POP = r"""
if not live(tonumber(ARGV[1]), true) then return false end
local last = tonumber(redis.call('HGET', M, 'last'))
if last == 0 then return false end
local rec = redis.call('HGET', MS, last)
local s1 = string.find(rec, '\31', 1, true)
local s2 = string.find(rec, '\31', s1 + 1, true)
local role, tok = string.sub(rec, 1, s1 - 1), tonumber(string.sub(rec, s1 + 1, s2 - 1))
redis.call('HDEL', MS, last)
redis.call('ZREM', P, last)
redis.call('ZREM', U, last)
if redis.call('ZREM', Y, last) == 1 then redis.call('HINCRBY', M, 'systok', -tok) end
redis.call('HINCRBY', M, 'total', -tok)
redis.call('HSET', M, 'last', last - 1, 'updated', ARGV[2])
local gone = redis.call('ZRANGEBYSCORE', I, last, '+inf')
for k = 1, #gone do redis.call('HDEL', J, gone[k]) end
redis.call('ZREMRANGEBYSCORE', I, last, '+inf')
if tonumber(redis.call('HGET', M, 'sumseq')) >= last then
  redis.call('HDEL', M, 'sumtext', 'sumtok', 'sumat')
  redis.call('HSET', M, 'sumseq', 0)
end
return {last, rec}
"""

# ARGV: now_ms, now_iso. Replies the number of messages removed.
CLEAR = r"""
if not live(tonumber(ARGV[1]), true) then return 0 end
local last = tonumber(redis.call('HGET', M, 'last'))
redis.call('DEL', MS, P, Y, U, I, J)
redis.call('HDEL', M, 'sumtext', 'sumtok', 'sumat')
redis.call('HSET', M, 'last', 0, 'total', 0, 'systok', 0, 'sumseq', 0, 'updated', ARGV[2])
return last
"""

# ARGV: as APPEND (the idempotency key slot is ignored). Replies {1, last} (conflict) or
# {2, 1, unindexed} (stored). Clear and rebuild in one script: readers never see an empty list;
# the sorted sets are rebuilt from seq 1, the expiry (TTL) and metadata are kept.
REPLACE = r"""
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', M, 'last', 'expms', 'ix')
local exists = h[1] ~= false
if exists and h[2] ~= '' and tonumber(h[2]) <= now then
  redis.call('DEL', unpack(DATA))
  exists = false
end
local last, exp, ix = 0, '', false
if exists then last, exp, ix = tonumber(h[1]), h[2], h[3] end
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= last then return {1, last} end
if not exists then create(ARGV[2]) end
redis.call('DEL', MS, P, Y, U, I, J)
redis.call('HDEL', M, 'sumtext', 'sumtok', 'sumat')
local total, systok = 0, 0
local n = tonumber(ARGV[5])
for k = 1, n do
  local b = 5 + 3 * (k - 1)
  local role, tok = ARGV[b + 1], tonumber(ARGV[b + 2])
  redis.call('HSET', MS, k, ARGV[b + 3])
  redis.call('ZADD', P, total, k)
  if role == 'user' then
    redis.call('ZADD', U, k, k)
  elseif role == 'system' or role == 'developer' then
    redis.call('ZADD', Y, k, k)
    systok = systok + tok
  end
  total = total + tok
end
redis.call('HSET', M, 'last', n, 'total', total, 'systok', systok, 'sumseq', 0,
           'updated', ARGV[2])
if exp ~= '' then ttl() end
return {2, 1, ix == '1' and 0 or 1}
"""

# Replies 1 when the session existed. Deletes its leases too.
DELETE = r"""
local existed = redis.call('EXISTS', M)
redis.call('DEL', M, MS, P, Y, U, I, J, L, F)
return existed
"""

# ARGV: now_ms. Deletes every key of the session when it is gone or expired; replies 1 then,
# 0 when it is alive (its expiry was cleared or moved since the purge listed it).
PURGE = r"""
if redis.call('EXISTS', M) == 1 and not expired(tonumber(ARGV[1])) then return 0 end
redis.call('DEL', M, MS, P, Y, U, I, J, L, F)
return 1
"""

# ARGV: now_ms, now_iso, metadata JSON or '', expiry mode ('keep'/'clear'/'set'), expms, expiso.
# Replies {session hash (flat) as it is after the update, unindexed}.
UPDATE = r"""
if not live(tonumber(ARGV[1]), true) then create(ARGV[2]) end
if ARGV[3] ~= '' then redis.call('HSET', M, 'meta', ARGV[3]) end
redis.call('HSET', M, 'updated', ARGV[2])
if ARGV[4] == 'set' then
  redis.call('HSET', M, 'expms', ARGV[5], 'expiso', ARGV[6])
elseif ARGV[4] == 'clear' then
  redis.call('HSET', M, 'expms', '')
  redis.call('HDEL', M, 'expiso')
  for _, k in ipairs(DATA) do redis.call('PERSIST', k) end
  redis.call('PERSIST', F)
end
local _, flat = hash(M)
ttl()
return {flat, unindexed()}
"""

# ARGV: now_ms, now_iso, text, covers_through_seq, tokens. Replies {0, unindexed} or
# {1, last} (covers more than the session holds; nothing written).
SUMMARY = r"""
local last = 0
local exists = live(tonumber(ARGV[1]), true)
if exists then last = tonumber(redis.call('HGET', M, 'last')) end
if tonumber(ARGV[4]) > last then return {1, last} end
if not exists then create(ARGV[2]) end
redis.call('HSET', M, 'sumtext', ARGV[3], 'sumseq', ARGV[4], 'sumtok', ARGV[5],
           'sumat', ARGV[2], 'updated', ARGV[2])
ttl()
return {0, unindexed()}
"""

# KEYS: lease, fence. ARGV: owner, ttl_ms. Replies the new fencing token, or nil when another
# owner holds a live lease. The same owner asking again renews with a new token.
ACQUIRE = r"""
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '\31', 1, true)
  if string.sub(cur, sep + 1) ~= ARGV[1] then return false end
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. '\31' .. ARGV[1], 'PX', ARGV[2])
return token
"""

# KEYS: lease. ARGV: token. Compare-and-delete: only the holder of that token releases.
RELEASE = r"""
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local sep = string.find(cur, '\31', 1, true)
if string.sub(cur, 1, sep - 1) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


# KEYS: the session hash. Marks the session as indexed, if it still exists.
INDEXED = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'ix', 1) end
return 0
"""

# ARGV: now_ms, n, then n triples seq, id, body. Replies 0 (every body rewritten) or the first
# seq whose id is not the one given (nothing rewritten). Role, tokens, id and time stay.
REWRITE = r"""
local n = tonumber(ARGV[2])
local alive = live(tonumber(ARGV[1]), false)
local heads = {}
for k = 0, n - 1 do
  local seq, id = ARGV[3 + 3 * k], ARGV[4 + 3 * k]
  local rec = alive and redis.call('HGET', MS, seq)
  if not rec then return tonumber(seq) end
  local s1 = string.find(rec, '\31', 1, true)
  local s2 = string.find(rec, '\31', s1 + 1, true)
  local s3 = string.find(rec, '\31', s2 + 1, true)
  local s4 = string.find(rec, '\31', s3 + 1, true)
  if string.sub(rec, s2 + 1, s3 - 1) ~= id then return tonumber(seq) end
  heads[k + 1] = string.sub(rec, 1, s4)
end
for k = 0, n - 1 do
  redis.call('HSET', MS, ARGV[3 + 3 * k], heads[k + 1] .. ARGV[5 + 3 * k])
end
return 0
"""


@dataclass(frozen=True)
class Script:
    name: str
    text: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.text.encode()).hexdigest())


def _session_script(name: str, body: str) -> Script:
    return Script(name, _PRELUDE + body)


SCRIPTS: dict[str, Script] = {
    "append": _session_script("append", APPEND),
    "read": _session_script("read", READ),
    "window": _session_script("window", WINDOW),
    "pop": _session_script("pop", POP),
    "clear": _session_script("clear", CLEAR),
    "replace": _session_script("replace", REPLACE),
    "delete": _session_script("delete", DELETE),
    "purge": _session_script("purge", PURGE),
    "update": _session_script("update", UPDATE),
    "summary": _session_script("summary", SUMMARY),
    "rewrite": _session_script("rewrite", REWRITE),
    "acquire": Script("acquire", ACQUIRE),
    "release": Script("release", RELEASE),
    "indexed": Script("indexed", INDEXED),
}
