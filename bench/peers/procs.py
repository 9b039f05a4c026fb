"""Spawned worker processes that run named bench functions, each call bounded by a hard timeout.

A workload sends ``("module:function", args)`` to a :class:`Worker` (a real process started with
the ``spawn`` method, so it shares nothing with the parent but the files and servers it opens) and
waits for the answer. A call that does not answer in time is a :class:`Timeout`: the caller kills
the worker (a stuck driver call cannot be interrupted any other way) and starts a fresh one. State
a worker keeps between calls (an open store, an engine) lives in the called module's globals.
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import traceback
from multiprocessing.connection import Connection
from typing import Any


class Timeout(Exception):
    """The worker did not answer in time (it has been killed)."""


class Failed(Exception):
    """The called function raised in the worker (message: ``Type: text``)."""


def _serve(conn: Connection) -> None:
    while True:
        try:
            msg = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if msg is None:
            return
        target, args = msg
        module, _, name = target.partition(":")
        try:
            fn = getattr(importlib.import_module(module), name)
            conn.send(("ok", fn(*args)))
        except BaseException as exc:  # report everything, the parent decides
            conn.send(("err", f"{type(exc).__name__}: {exc}"[:400], traceback.format_exc()))


class Worker:
    """One spawned process serving calls until closed or killed."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def send(self, target: str, *args: Any) -> None:
        self.conn.send((target, args))

    def recv(self, timeout: float) -> Any:
        """The answer to the last ``send``; kills the worker and raises Timeout when late."""
        if not self.conn.poll(timeout):
            self.kill()
            raise Timeout(f"no answer in {timeout:g}s")
        try:
            status, *rest = self.conn.recv()
        except EOFError:
            raise Failed("worker process died") from None
        if status == "err":
            raise Failed(rest[0])
        return rest[0]

    def call(self, target: str, *args: Any, timeout: float) -> Any:
        self.send(target, *args)
        return self.recv(timeout)

    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(5)

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(5)
        if self.proc.is_alive():
            self.kill()
        self.conn.close()
