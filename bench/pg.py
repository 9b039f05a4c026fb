"""chatkeep's PostgreSQL store against raw psycopg, measured side by side in one run.

    python -m bench.pg             # alone (also part of python -m bench.run)
    python -m bench.pg --quick

The server is ``$CHATKEEP_BENCH_POSTGRES_URL``, else ``$CHATKEEP_TEST_POSTGRES_URL``, else
``postgresql://127.0.0.1:5432/test``; when it does not answer the benchmark is skipped with a
message. Everything lives in a fresh schema that is dropped afterwards.

Baselines (what an app could do with psycopg and no library), on a table keyed by
``(session, seq)`` in the same schema, same server, same ``synchronous_commit``:

* append: ``INSERT (session, seq, role, body)`` + ``COMMIT`` on one open connection;
* window: ``SELECT seq, role, body ... ORDER BY seq DESC LIMIT k`` plus ``json.loads`` of each
  body, ``k`` = the number of messages chatkeep's 3,000-token window returned.

Contender and baseline alternate round by round; medians and p95 of every operation.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import uuid
from typing import Any

import chatkeep
from bench.run import chat_text, interleave, stats, timed
from chatkeep import Message

LOCAL = "postgresql://127.0.0.1:5432/test"
SIZES = (100, 1_000, 10_000)


def server_url() -> str:
    return (
        os.environ.get("CHATKEEP_BENCH_POSTGRES_URL")
        or os.environ.get("CHATKEEP_TEST_POSTGRES_URL")
        or LOCAL
    )


def _fill(store: chatkeep.Store, raw: Any, sid: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    done = 0
    while done < n:
        k = min(1000, n - done)
        msgs = [
            Message("user" if (done + i) % 2 == 0 else "assistant", chat_text(rng))
            for i in range(k)
        ]
        store.append(sid, msgs)
        with raw.cursor() as cur:
            cur.executemany(
                "INSERT INTO raw_m VALUES (%s, %s, %s, %s)",
                [
                    (sid, done + i + 1, m.role, json.dumps({"content": m.content}))
                    for i, m in enumerate(msgs)
                ],
            )
        raw.commit()
        done += k


def _one_size(store: chatkeep.Store, raw: Any, n: int, rounds: int, k: int) -> dict[str, Any]:
    sid = f"s-{n}"
    _fill(store, raw, sid, n, seed=n)
    rng = random.Random(n + 1)
    texts = [chat_text(rng) for _ in range(rounds * k)]
    it_ck, it_raw = iter(texts), iter(texts)
    seq = [n]

    def ck_append() -> list[float]:
        return timed(lambda: store.append(sid, Message.user(next(it_ck))), k)

    def raw_append() -> list[float]:
        def one() -> None:
            seq[0] += 1
            raw.execute(
                "INSERT INTO raw_m VALUES (%s, %s, %s, %s)",
                (sid, seq[0], "user", json.dumps({"content": next(it_raw)})),
            )
            raw.commit()

        return timed(one, k)

    a_ck, a_raw = interleave(rounds, ck_append, raw_append)
    size = len(store.window(sid, 3000).messages)

    def ck_window() -> list[float]:
        return timed(lambda: store.window(sid, 3000), k)

    def raw_window() -> list[float]:
        def one() -> None:
            rows = raw.execute(
                "SELECT seq, role, body FROM raw_m WHERE session = %s ORDER BY seq DESC LIMIT %s",
                (sid, size),
            ).fetchall()
            raw.commit()
            [json.loads(r[2]) for r in rows]

        return timed(one, k)

    w_ck, w_raw = interleave(rounds, ck_window, raw_window)
    out: dict[str, Any] = {"history": n, "window_size": size}
    for name, ck, rw, target in (
        ("append", a_ck, a_raw, 1.5),
        ("window", w_ck, w_raw, 2.0),
    ):
        a, b = stats(ck), stats(rw)
        out[name] = {
            "chatkeep": a,
            "raw": b,
            "ratio": a["median_ms"] / b["median_ms"],
            "target": target,
        }
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """The PostgreSQL results, or ``{"skipped": why}`` when no server answers."""
    import psycopg
    from psycopg import sql

    base = server_url()
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        why = f"PostgreSQL at {base} is unreachable ({str(exc).strip()}); set "
        why += "CHATKEEP_BENCH_POSTGRES_URL to benchmark it"
        return {"skipped": why}
    schema = f"ck_bench_{uuid.uuid4().hex[:10]}"
    rounds, k = (40, 3) if quick else (200, 3)  # fine-grained ABBA: noise hits both sides
    try:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        server = admin.execute("SHOW server_version").fetchone()
        commit = admin.execute("SHOW synchronous_commit").fetchone()
        raw = psycopg.connect(base, options=f"-c search_path={schema}")
        raw.execute(
            "CREATE TABLE raw_m (session text NOT NULL, seq bigint NOT NULL, role text NOT NULL,"
            " body text NOT NULL, PRIMARY KEY (session, seq))"
        )
        raw.commit()
        rows = []
        with chatkeep.open_store(f"{base}{'&' if '?' in base else '?'}schema={schema}") as store:
            for n in SIZES:
                rows.append(_one_size(store, raw, n, rounds, k))
        raw.close()
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        admin.close()
    return {
        "server": f"PostgreSQL {server[0] if server else '?'}",
        "synchronous_commit": commit[0] if commit else "?",
        "sizes": rows,
        "append_flatness": rows[-1]["append"]["chatkeep"]["median_ms"]
        / rows[0]["append"]["chatkeep"]["median_ms"],
        "window_flatness": rows[-1]["window"]["chatkeep"]["median_ms"]
        / rows[0]["window"]["chatkeep"]["median_ms"],
    }


def render(r: dict[str, Any] | None) -> list[str]:
    """Markdown lines for ``run()``'s result."""
    if not r:
        return []
    if "skipped" in r:
        return ["", f"PostgreSQL: skipped: {r['skipped']}"]
    lines = [
        "",
        f"## PostgreSQL ({r['server']}, synchronous_commit={r['synchronous_commit']})",
        "",
        "Ratio = chatkeep / raw psycopg (INSERT + COMMIT; SELECT + json.loads of the same rows).",
        "",
        "| workload | stored | chatkeep median (p95) ms | raw median (p95) ms | ratio | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["sizes"]:
        for name in ("append", "window"):
            x = row[name]
            a, b = x["chatkeep"], x["raw"]
            label = "append" if name == "append" else f"window ({row['window_size']} msgs)"
            ok = "PASS" if x["ratio"] <= x["target"] else "MISS"
            lines.append(
                f"| {label} | {row['history']:,} | {a['median_ms']:.3f} ({a['p95_ms']:.3f}) | "
                f"{b['median_ms']:.3f} ({b['p95_ms']:.3f}) | {x['ratio']:.2f}x | "
                f"{ok} (target <= {x['target']:g}x) |"
            )
    lines += [
        "",
        f"Flatness (median at {SIZES[-1]:,} stored / at {SIZES[0]:,}): append "
        f"{r['append_flatness']:.2f}x, window {r['window_flatness']:.2f}x",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    print("\n".join(render(run(args.quick))))


if __name__ == "__main__":
    main()
