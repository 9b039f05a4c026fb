"""chatkeep: durable, session-keyed conversation memory for LLM chat apps.

Memory objects are cheap views over a durable store (SQLite by default), so a conversation
survives the next request, a dev-server reload, a second worker and a restart::

    from chatkeep import Memory, open_store

    store = open_store()                      # sqlite:///chatkeep.db, or $CHATKEEP_URL
    memory = Memory("user-42", store=store)   # per request is fine: it holds no state
    memory.add("user", "My name is Ada.")
    print(memory.window().to_openai())

``import chatkeep`` imports only the standard library; framework adapters, servers and
drivers load when used and name the pip extra to install when missing.
"""

from chatkeep._version import __version__
from chatkeep.errors import (
    ChatkeepError,
    ChatkeepWarning,
    ConflictError,
    CorruptRecord,
    DurabilityWarning,
    EncryptionKeyError,
    EphemeralStoreWarning,
    InvalidInput,
    InvalidMessage,
    InvalidSessionId,
    InvalidURL,
    LeaseBusy,
    LeaseError,
    LeaseTimeout,
    MissingDependency,
    StoreClosed,
    StoreError,
    StoreFull,
    StoreUnavailable,
    TamperedRecord,
    TokenizerMismatch,
    TokenizerUnavailable,
)
from chatkeep.memory import AsyncMemory, AsyncTurn, Memory, Turn, default_store
from chatkeep.store import AsyncStore, Store
from chatkeep.stores import default_url, open_async_store, open_store
from chatkeep.tokenizers import Tokenizer, get_tokenizer
from chatkeep.types import (
    AppendResult,
    Lease,
    Message,
    SessionInfo,
    SessionPage,
    StoredMessage,
    Summary,
    Window,
)
from chatkeep.validation import Limits

__all__ = [
    "AppendResult",
    "AsyncMemory",
    "AsyncStore",
    "AsyncTurn",
    "ChatkeepError",
    "ChatkeepWarning",
    "ConflictError",
    "CorruptRecord",
    "DurabilityWarning",
    "EncryptionKeyError",
    "EphemeralStoreWarning",
    "InvalidInput",
    "InvalidMessage",
    "InvalidSessionId",
    "InvalidURL",
    "Lease",
    "LeaseBusy",
    "LeaseError",
    "LeaseTimeout",
    "Limits",
    "Memory",
    "Message",
    "MissingDependency",
    "SessionInfo",
    "SessionPage",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoreFull",
    "StoreUnavailable",
    "StoredMessage",
    "Summary",
    "TamperedRecord",
    "Tokenizer",
    "TokenizerMismatch",
    "TokenizerUnavailable",
    "Turn",
    "Window",
    "__version__",
    "default_store",
    "default_url",
    "get_tokenizer",
    "open_async_store",
    "open_store",
]
