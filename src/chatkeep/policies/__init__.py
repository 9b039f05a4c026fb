"""Sans-IO policies: pure functions over stored messages (no store, no network)."""

from chatkeep.policies.tokens import message_tokens
from chatkeep.policies.window import select_window, window_from_history

__all__ = ["message_tokens", "select_window", "window_from_history"]
