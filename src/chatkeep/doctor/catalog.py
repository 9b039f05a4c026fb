"""Which calls build what: chat memories, chat engines, indexes, LLM clients, connections.

Matching is on the resolved dotted name (see :mod:`chatkeep.doctor.imports`), so aliases and
deep import paths (``llama_index.core.memory.chat_memory_buffer.ChatMemoryBuffer``) both match.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Literal

from chatkeep.doctor.imports import ImportMap, call_name, const_str, keyword

Kind = Literal["memory", "engine", "index", "llm", "embedding", "connection"]


@dataclass(frozen=True)
class Construct:
    kind: Kind
    label: str  # what to call it in a message, e.g. "ChatMemoryBuffer.from_defaults()"
    node: ast.Call


LI_MEMORY = {
    "ChatMemoryBuffer",
    "ChatSummaryMemoryBuffer",
    "Memory",
    "SimpleComposableMemory",
    "SimpleChatStore",
}
LC_MEMORY = {
    "InMemoryChatMessageHistory",
    "ChatMessageHistory",
    "ConversationBufferMemory",
    "ConversationBufferWindowMemory",
    "ConversationSummaryMemory",
    "ConversationSummaryBufferMemory",
    "ConversationTokenBufferMemory",
    "ConversationEntityMemory",
    "ConversationKGMemory",
    "ConversationStringBufferMemory",
}
LC_TOPS = ("langchain", "langchain_core", "langchain_community", "langchain_classic")
LI_ENGINES = {
    "SimpleChatEngine",
    "CondenseQuestionChatEngine",
    "CondensedQuestionChatEngine",
    "CondensePlusContextChatEngine",
    "ContextChatEngine",
    "ReActAgent",
    "OpenAIAgent",
    "FunctionCallingAgent",
    "AgentRunner",
}
ENGINE_FACTORIES = {"", "from_defaults", "from_tools", "from_llm"}
INDEX_FACTORIES = {"", "from_documents", "from_vector_store", "from_defaults"}
LLM_TOPS = (
    "llama_index.llms.",
    "llama_index.embeddings.",
    "langchain_openai.",
    "langchain_anthropic.",
    "langchain_google_genai.",
    "langchain_google_vertexai.",
    "langchain_ollama.",
    "langchain_mistralai.",
    "langchain_groq.",
    "langchain_aws.",
    "langchain_cohere.",
    "langchain_community.chat_models.",
    "langchain_community.llms.",
    "langchain.chat_models.",
)
SDK_CLIENTS = {
    "openai.OpenAI",
    "openai.AsyncOpenAI",
    "openai.AzureOpenAI",
    "openai.AsyncAzureOpenAI",
    "anthropic.Anthropic",
    "anthropic.AsyncAnthropic",
}
CONNECTIONS = {
    "chatkeep.open_store",
    "chatkeep.open_async_store",
    "chatkeep.stores.open_store",
    "chatkeep.stores.open_async_store",
    "sqlite3.connect",
    "redis.Redis",
    "redis.StrictRedis",
    "redis.from_url",
    "redis.Redis.from_url",
    "redis.asyncio.Redis",
    "redis.asyncio.from_url",
    "redis.asyncio.Redis.from_url",
    "psycopg.connect",
    "psycopg.Connection.connect",
    "psycopg.AsyncConnection.connect",
    "psycopg2.connect",
    "asyncpg.connect",
    "pymongo.MongoClient",
}
CHATKEEP_OPEN = {
    "chatkeep.open_store",
    "chatkeep.open_async_store",
    "chatkeep.stores.open_store",
    "chatkeep.stores.open_async_store",
}


def _split(name: str) -> tuple[str, str, str]:
    """('llama_index', 'ChatMemoryBuffer', 'from_defaults') for a resolved dotted name."""
    parts = name.split(".")
    top = parts[0]
    if len(parts) >= 2 and parts[-1][:1].islower() and parts[-2][:1].isupper():
        return top, parts[-2], parts[-1]
    return top, parts[-1], ""


def _in_process_history(imports: ImportMap, node: ast.expr | None) -> bool:
    if not isinstance(node, ast.Call):
        return False
    _, cls, _ = _split(call_name(imports, node))
    in_process = {"SimpleChatStore", "InMemoryChatMessageHistory", "ChatMessageHistory"}
    return cls in in_process and not _seeded(node)


def _seeded(call: ast.Call) -> bool:
    """History passed in explicitly (``chat_history=rows_from_db``, ``messages=...``): the
    conversation lives wherever it came from, the object is just this request's view."""
    for name in ("chat_history", "messages"):
        value = keyword(call, name)
        if (
            value is not None
            and not (isinstance(value, ast.List | ast.Tuple) and not value.elts)
            and not (isinstance(value, ast.Constant) and value.value is None)
        ):
            return True
    return False


def memory_url(imports: ImportMap, call: ast.Call) -> str | None:
    """The literal URL of a chatkeep open_store call, if any."""
    if call_name(imports, call) not in CHATKEEP_OPEN:
        return None
    return const_str(call.args[0] if call.args else keyword(call, "url"))


def classify(imports: ImportMap, call: ast.Call) -> Construct | None:
    """What ``call`` builds, when it is something the doctor cares about."""
    name = call_name(imports, call)
    if not name:
        return None
    if isinstance(call.func, ast.Attribute) and call.func.attr in ("as_chat_engine", "as_agent"):
        return Construct("engine", f"{call.func.attr}()", call)
    top, cls, method = _split(name)
    label = f"{cls}.{method}()" if method else f"{cls}()"
    if name in CONNECTIONS:
        url = memory_url(imports, call)
        if url is not None and url.startswith("memory:"):
            return Construct("memory", f"open_store({url!r})", call)
        return Construct("connection", name.split(".", 1)[-1] + "()", call)
    if top == "llama_index":
        if cls in LI_MEMORY and method in ("", "from_defaults"):
            if cls == "SimpleChatStore" or not (
                _durable_llamaindex(imports, cls, call) or _seeded(call)
            ):
                return Construct("memory", label, call)
            return None
        if cls in LI_ENGINES and method in ENGINE_FACTORIES:
            return Construct("engine", label, call)
        if cls.endswith("Index") and method in INDEX_FACTORIES and method != "":
            return Construct("index", label, call)
        if cls in ("load_index_from_storage", "load_indices_from_storage"):
            return Construct("index", label, call)
    if top in LC_TOPS and cls in LC_MEMORY and not method:
        chat_memory = keyword(call, "chat_memory")
        if chat_memory is not None and not _in_process_history(imports, chat_memory):
            return None
        if _seeded(call):
            return None
        return Construct("memory", label, call)
    if top == "agents" and cls == "SQLiteSession" and not method:
        db = call.args[1] if len(call.args) > 1 else keyword(call, "db_path")
        if db is None or const_str(db) == ":memory:":
            return Construct("memory", "SQLiteSession() with the ':memory:' default", call)
        return None
    if name.startswith(LLM_TOPS) and cls[:1].isupper() and method in ("", "from_defaults"):
        embedding = "embeddings." in name or cls.endswith("Embeddings")
        return Construct("embedding" if embedding else "llm", label, call)
    if name in SDK_CLIENTS or name == "langchain.chat_models.init_chat_model":
        return Construct("llm", label, call)
    return None


def _durable_llamaindex(imports: ImportMap, cls: str, call: ast.Call) -> bool:
    store = keyword(call, "chat_store")
    if store is not None and not _in_process_history(imports, store):
        return True
    if cls == "Memory":
        uri = keyword(call, "async_database_uri")
        if uri is not None and ":memory:" not in (const_str(uri) or ""):
            return True
        return keyword(call, "async_engine") is not None
    return False
