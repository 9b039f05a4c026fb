"""Test helpers for the server: an OpenAI-compatible stub LLM on loopback, free ports, and
``chatkeep serve`` subprocesses with bounded waits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StubLLM:
    """A tiny OpenAI-compatible Chat Completions server (JSON and SSE), for offline tests.

    It speaks the real wire protocol, so the server's ``openai`` client is exercised end to
    end. Replies are ``stub: <last user text> (<n> messages)``; ``delay`` slows each reply (or
    each streamed chunk), ``fail`` answers HTTP 500. Every request body is kept in ``seen``.
    """

    def __init__(self, *, delay: float = 0.0, chunk_delay: float = 0.0) -> None:
        self.delay = delay
        self.chunk_delay = chunk_delay
        self.fail = False
        self.seen: list[dict[str, Any]] = []
        self.disconnects = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                stub.seen.append(body)
                if stub.fail or not self.path.endswith("/chat/completions"):
                    self._json(500, {"error": {"message": "stub failure", "type": "server"}})
                    return
                users = [m for m in body["messages"] if m["role"] == "user"]
                text = f"stub: {users[-1]['content']} ({len(body['messages'])} messages)"
                time.sleep(stub.delay)
                if body.get("stream"):
                    self._stream(body["model"], text)
                else:
                    self._json(200, _completion(body["model"], text))

            def _json(self, status: int, data: dict[str, Any]) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self, model: str, text: str) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                words = text.split(" ")
                try:
                    for i, word in enumerate(words):
                        piece = word if i == 0 else " " + word
                        self.wfile.write(f"data: {json.dumps(_chunk(model, piece))}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(stub.chunk_delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    stub.disconnects += 1
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StubLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _chunk(model: str, piece: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
    }


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server at {base} not ready after {timeout}s")


@contextmanager
def serve(
    tmp_path: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``chatkeep serve`` in a subprocess on a free loopback port; yields its base URL."""
    port = port or free_port()
    log = open(tmp_path / f"serve-{port}-{time.monotonic_ns()}.log", "wb")
    full_env = {
        **os.environ,
        "CHATKEEP_URL": f"sqlite:///{tmp_path}/server.db",
        "CHATKEEP_KEYS_FILE": str(tmp_path / "keys.json"),
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "chatkeep.cli", "serve", "--port", str(port), *args],
        cwd=tmp_path,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base, proc
    finally:
        stop(proc)
        log.close()


def stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
