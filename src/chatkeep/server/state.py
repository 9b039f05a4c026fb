"""What the app shares between requests: settings, the one store, keys, LLM, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from chatkeep.server.auth import tenant_of
from chatkeep.server.keys import KeyFile
from chatkeep.server.llm import Provider
from chatkeep.server.metrics import Metrics
from chatkeep.server.settings import Settings
from chatkeep.store import AsyncStore


@dataclass
class ServerState:
    settings: Settings
    keys: KeyFile
    metrics: Metrics
    provider: Provider | None = None
    store: AsyncStore | None = None
    _views: dict[str, AsyncStore] = field(default_factory=dict)

    def view(self, tenant: str) -> AsyncStore:
        """The shared store scoped to ``tenant`` (views share the connections)."""
        assert self.store is not None, "the app's lifespan is not running"
        view = self._views.get(tenant)
        if view is None:
            view = self._views[tenant] = self.store.with_tenant(tenant)
        return view


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.chatkeep
    return state


async def tenant_store(request: Request) -> AsyncStore:
    """FastAPI dependency: the caller's tenant-scoped store (401 without a valid key)."""
    state = state_of(request)
    tenant = tenant_of(request, state.keys, loopback=state.settings.loopback)
    request.scope["chatkeep_tenant"] = tenant
    return state.view(tenant)
