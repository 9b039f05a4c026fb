"""A meaningful subset of the conformance suite, run again with encryption at rest on: every
backend x {sync, async}, each store opened with a key. Everything the subset checks (lossless
round trips of rich messages, windows, idempotent replays, replace, summaries, metadata,
tenant isolation) must hold unchanged when what the backends store is ciphertext."""

from __future__ import annotations

from typing import Any

import pytest

from chatkeep.crypto import generate_key
from conformance.test_append import (
    test_expect_last_seq,
    test_hostile_but_printable_ids_round_trip,
    test_idempotency_key_replays_the_original,
    test_openai_dicts_are_accepted,
    test_pop,
    test_read_paging,
    test_tokens_are_counted_once_at_write,
)
from conformance.test_isolation import (
    test_erase_removes_one_tenant,
    test_tenants_never_see_each_other,
)
from conformance.test_read_payloads import (
    test_read_payloads_hands_out_copies,
    test_read_payloads_is_read_with_bare_items,
)
from conformance.test_replace import (
    test_pop_and_append_after_replace,
    test_replace_is_tenant_scoped,
    test_replace_restarts_seqs_and_counters,
    test_summary_and_idempotency_keys_go_metadata_and_expiry_stay,
    test_window_after_replace_matches_a_fresh_append,
)
from conformance.test_returned_copies import (
    test_replayed_append_and_update_results_are_copies,
    test_rich_messages_round_trip,
)
from conformance.test_sessions import (
    test_clear_keeps_session_delete_removes_it,
    test_info_and_metadata,
    test_summary,
)
from conformance.test_window import (
    test_latest_user_message_is_always_in,
    test_tool_result_stays_with_its_call,
    test_window_keeps_the_newest_and_pins_system,
    test_window_matches_reference,
)
from conftest import SyncView

KEY = generate_key()


@pytest.fixture
def store_options() -> dict[str, Any]:
    return {"encryption": KEY}


def test_the_store_really_encrypts(store: Any) -> None:
    """Guards the subset above: its stores are encrypting ones (not silently plain)."""
    is_async = isinstance(store, SyncView)  # the async flavour
    backend = store._store._backend if is_async else store._backend
    assert backend.sealer.sealing
    store.append("s", {"role": "user", "content": "hello"})
    raw = backend.inner.read(store.tenant, "s", after_seq=0, limit=None, newest=False)
    if is_async:
        raw = store._loop.run(raw)
    assert raw[0].format == "sealed" and raw[0].content.startswith("ck2:")
    assert store.read("s")[0].content == "hello"


__all__ = [
    "test_clear_keeps_session_delete_removes_it",
    "test_erase_removes_one_tenant",
    "test_expect_last_seq",
    "test_hostile_but_printable_ids_round_trip",
    "test_idempotency_key_replays_the_original",
    "test_info_and_metadata",
    "test_latest_user_message_is_always_in",
    "test_openai_dicts_are_accepted",
    "test_pop",
    "test_pop_and_append_after_replace",
    "test_read_paging",
    "test_read_payloads_hands_out_copies",
    "test_read_payloads_is_read_with_bare_items",
    "test_replace_is_tenant_scoped",
    "test_replace_restarts_seqs_and_counters",
    "test_replayed_append_and_update_results_are_copies",
    "test_rich_messages_round_trip",
    "test_summary",
    "test_summary_and_idempotency_keys_go_metadata_and_expiry_stay",
    "test_tenants_never_see_each_other",
    "test_tokens_are_counted_once_at_write",
    "test_tool_result_stays_with_its_call",
    "test_window_after_replace_matches_a_fresh_append",
    "test_window_keeps_the_newest_and_pins_system",
    "test_window_matches_reference",
]
