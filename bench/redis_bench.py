"""chatkeep's redis:// store against raw redis-py on the same server, in the same run.

    python -m bench.redis_bench [--quick]     # alone; `python -m bench.run` includes it

Server: ``$CHATKEEP_BENCH_REDIS_URL``, else ``$CHATKEEP_TEST_REDIS_URL``, else
redis://127.0.0.1:6379/0; skipped with a message when unreachable. Each run uses a fresh key
prefix and deletes its keys afterwards.

Baselines (what an app could do with no library at all), at 100 / 1,000 / 10,000 stored:

* append: ``RPUSH key json.dumps({"role": ..., "content": ...})`` (one round trip, no seq
  check, no idempotency, no token totals, no TTL refresh);
* window: ``LRANGE key -k -1`` + ``json.loads`` of each item, ``k`` = the number of messages
  chatkeep's 3,000-token window returned.

Contender and baseline alternate round by round; medians and p95 over every operation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import uuid
from typing import Any

import chatkeep
from bench.run import chat_text, interleave, stats, timed
from chatkeep import Message

SIZES = (100, 1_000, 10_000)


def server_url() -> str:
    return (
        os.environ.get("CHATKEEP_BENCH_REDIS_URL")
        or os.environ.get("CHATKEEP_TEST_REDIS_URL")
        or "redis://127.0.0.1:6379/0"
    )


def _fill(store: chatkeep.Store, raw: Any, raw_key: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    done = 0
    while done < n:
        k = min(1000, n - done)
        msgs = [
            Message("user" if (done + i) % 2 == 0 else "assistant", chat_text(rng))
            for i in range(k)
        ]
        store.append("s", msgs)
        raw.rpush(raw_key, *(json.dumps({"role": m.role, "content": m.content}) for m in msgs))
        done += k


def _one_size(url: str, base: str, n: int, rounds: int, k: int) -> dict[str, Any]:
    import redis

    prefix = f"ck_bench_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in url else "?"
    store = chatkeep.open_store(f"{url}{sep}prefix={prefix}&durability_warning=off")
    raw = redis.Redis.from_url(base)
    raw_key = f"{prefix}:raw:s"
    try:
        raw.delete(raw_key)
        _fill(store, raw, raw_key, n, seed=n)
        size = len(store.window("s", 3000).messages)
        rng = random.Random(7)
        texts = [chat_text(rng) for _ in range(rounds * k)]
        it_ck, it_raw = iter(texts), iter(texts)

        def ck_append() -> list[float]:
            return timed(lambda: store.append("s", Message.user(next(it_ck))), k)

        def raw_append() -> list[float]:
            return timed(
                lambda: raw.rpush(raw_key, json.dumps({"role": "user", "content": next(it_raw)})),
                k,
            )

        def ck_window() -> list[float]:
            return timed(lambda: store.window("s", 3000), k)

        def raw_window() -> list[float]:
            return timed(lambda: [json.loads(x) for x in raw.lrange(raw_key, -size, -1)], k)

        # windows first, on exactly n stored messages; then the appends grow both sides alike
        w_ck, w_raw = interleave(rounds, ck_window, raw_window)
        a_ck, a_raw = interleave(rounds, ck_append, raw_append)
        rows = store.read("s")
        assert [m.seq for m in rows] == list(range(1, n + rounds * k + 1)), "seqs not gapless"
    finally:
        store.erase("default")
        store.close()
        keys = list(raw.scan_iter(f"{{{prefix}:*")) + list(raw.scan_iter(f"{prefix}:*"))
        if keys:
            raw.delete(*keys)
        raw.close()
    out: dict[str, Any] = {"history": n, "window_messages": size}
    for name, (a, b), target in (
        ("append", (a_ck, a_raw), 2.0),
        ("window", (w_ck, w_raw), 2.0),
    ):
        sa, sb = stats(a), stats(b)
        out[name] = {
            "chatkeep": sa,
            "raw": sb,
            "ratio": sa["median_ms"] / sb["median_ms"],
            "target": target,
        }
    return out


def run(quick: bool) -> dict[str, Any] | None:
    """The Redis section of the benchmark report, or None (with a message) when Redis is off."""
    try:
        import redis
    except ImportError:
        print("redis benchmark skipped: pip install 'chatkeep[redis]'", file=sys.stderr)
        return None
    base = server_url()
    try:
        client = redis.Redis.from_url(base, socket_connect_timeout=2)
        client.ping()
        version = client.info("server")["redis_version"]
        client.close()
    except redis.RedisError as exc:
        print(
            f"redis benchmark skipped: {base} is unreachable ({exc}); set CHATKEEP_BENCH_REDIS_URL",
            file=sys.stderr,
        )
        return None
    rounds, k = (60, 4) if quick else (250, 4)  # fine-grained ABBA: load bursts hit both sides
    sizes = []
    for n in SIZES:
        print(f"redis: append and window, {n:,} stored ...", file=sys.stderr)
        sizes.append(_one_size(base, base, n, rounds, k))
    return {
        "server": f"Redis {version} (loopback)",
        "sizes": sizes,
        "append_flatness": sizes[-1]["append"]["chatkeep"]["median_ms"]
        / sizes[0]["append"]["chatkeep"]["median_ms"],
        "window_flatness": sizes[-1]["window"]["chatkeep"]["median_ms"]
        / sizes[0]["window"]["chatkeep"]["median_ms"],
    }


def render(section: dict[str, Any] | None) -> str:
    if section is None:
        return "\n\nRedis: skipped (no server reachable; see bench/redis_bench.py)."
    lines = [
        "",
        "",
        f"## Redis ({section['server']}): chatkeep redis:// / raw redis-py, same server",
        "",
        "| workload | chatkeep median (p95) ms | raw median (p95) ms | ratio | verdict |",
        "|---|---|---|---|---|",
    ]
    for row in section["sizes"]:
        for name, raw_name in (("append", "RPUSH"), ("window", "LRANGE + json.loads")):
            r = row[name]
            a, b = r["chatkeep"], r["raw"]
            what = (
                f"append, {row['history']:,} stored (raw: {raw_name})"
                if name == "append"
                else f"3,000-token window ({row['window_messages']} msgs), {row['history']:,} "
                f"stored (raw: {raw_name})"
            )
            verdict = ("PASS" if r["ratio"] <= r["target"] else "MISS") + f" (<= {r['target']:g}x)"
            lines.append(
                f"| {what} | {a['median_ms']:.3f} ({a['p95_ms']:.3f}) | "
                f"{b['median_ms']:.3f} ({b['p95_ms']:.3f}) | {r['ratio']:.2f}x | {verdict} |"
            )
    lines += [
        "",
        f"Flatness (chatkeep median at {SIZES[-1]:,} / at {SIZES[0]:,}): append "
        f"{section['append_flatness']:.2f}x, window {section['window_flatness']:.2f}x",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(render(run(parser.parse_args().quick)).strip())


if __name__ == "__main__":
    main()
