"""Prometheus metrics: requests, latency, appends, window sizes, lease waits, LLM calls.

Each app gets its own registry (several apps can live in one test process). With several
workers, ``chatkeep serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory,
unless you set one) before the workers start, so ``/metrics`` on any worker reports the sum
over all of them (prometheus_client's multiprocess mode). A single process keeps its metrics in
memory.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_TOKENS = (16, 64, 256, 512, 1000, 2000, 4000, 8000, 16000, 32000, 128000)
_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "chatkeep_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "chatkeep_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.appends = Counter(
            "chatkeep_messages_appended", "Messages appended", ["via"], registry=r
        )
        self.window_tokens = Histogram(
            "chatkeep_window_tokens", "Tokens in windows served", buckets=_TOKENS, registry=r
        )
        self.window_messages = Histogram(
            "chatkeep_window_messages", "Messages in windows served", buckets=_COUNTS, registry=r
        )
        self.lease_wait = Histogram(
            "chatkeep_lease_wait_seconds",
            "Time a chat turn waited for its session lease",
            buckets=_LATENCY,
            registry=r,
        )
        self.llm_latency = Histogram(
            "chatkeep_llm_call_seconds",
            "LLM call latency",
            ["provider", "outcome"],
            buckets=_LATENCY,
            registry=r,
        )

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
