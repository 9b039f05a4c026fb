"""A client of ``chatkeep serve`` over plain HTTP, across a server restart.

    python examples/server_client.py

Starts ``chatkeep serve`` (loopback, a free port, the store at ``$CHATKEEP_URL`` or
``sqlite:///chatkeep.db``), has one chat turn, stops the server, starts a new one and asks
again: the answer comes from the history the first server stored. Any language with an HTTP
client can do the same; the only state is in the store.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

SESSION = "server-client-demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "chatkeep.cli",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):  # up to 30 s
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit("the server did not start")


def chat(base: str, text: str) -> dict[str, object]:
    r = httpx.post(f"{base}/v1/chat", json={"session_id": SESSION, "message": text}, timeout=30)
    r.raise_for_status()
    return dict(r.json())


def main() -> None:
    proc, base = start_server()
    try:
        print(f"[server pid {httpx.get(base + '/healthz').json()['pid']}]")
        turn = chat(base, "Hi, my name is Ada.")
        print(f"you:  Hi, my name is Ada.\nbot:  {turn['reply']}")
    finally:
        proc.terminate()
        proc.wait(30)
    proc, base = start_server()  # a brand-new server process on another port
    try:
        print(f"[server pid {httpx.get(base + '/healthz').json()['pid']}]")
        turn = chat(base, "What is my name?")
        print(f"you:  What is my name?\nbot:  {turn['reply']}")
        info = httpx.get(f"{base}/v1/sessions/{SESSION}").json()
        print(f"session {SESSION!r} holds {info['message_count']} messages")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    os.environ.setdefault("CHATKEEP_KEYS_FILE", "chatkeep-keys.json")
    main()
