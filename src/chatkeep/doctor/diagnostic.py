"""What the doctor reports: a frozen :class:`Diagnostic` and the catalogue of rules."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding: where (1-based line, 1-based column), which rule, what and how to fix it."""

    path: str
    line: int
    col: int
    code: str
    message: str
    hint: str = ""

    @property
    def rule(self) -> Rule:
        return RULES[self.code]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "severity": self.rule.severity, "name": self.rule.name}


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    severity: Severity
    summary: str
    hint: str
    """One line printed under each finding."""
    fix: str
    """The longer ``--fix-hints`` text: the chatkeep way."""


_STORE_FIX = (
    "Keep the conversation in a durable store and make the memory a cheap view over it:\n"
    "    store = chatkeep.open_store()              # once, at import or in the app lifespan\n"
    "    @app.post('/chat')\n"
    "    def chat(user_id: str, text: str):\n"
    "        memory = chatkeep.Memory(user_id, store=store)   # per request is fine\n"
    "        with memory.turn(text) as turn:\n"
    "            turn.reply(llm(turn.messages))"
)

RULES: dict[str, Rule] = {
    r.code: r
    for r in (
        Rule(
            "CK001",
            "unparseable",
            "error",
            "a Python file the doctor could not parse",
            "fix the syntax error (the doctor never runs your code, it only parses it)",
            "The doctor parses every .py file with Python's ast module. A file that does not "
            "parse is reported and skipped; the rest of the run continues.",
        ),
        Rule(
            "CK002",
            "analysis-failed",
            "warning",
            "a file the doctor parsed but could not analyse (a doctor bug)",
            "please report it with the file's shape; the other files were checked",
            "A rule raised an unexpected error on this file. The file was skipped, the run went "
            "on, and the error is in the message. This is a bug in the doctor, not in your code.",
        ),
        Rule(
            "CK101",
            "memory-per-request",
            "error",
            "an in-process chat memory created inside a request handler",
            "create it once (module scope / app lifespan) or back it with a durable store "
            "keyed by the user: chatkeep.Memory(user_id, store=store)",
            "A memory object with no durable store behind it starts empty on every request.\n"
            + _STORE_FIX,
        ),
        Rule(
            "CK102",
            "hot-path-construction",
            "warning",
            "a chat engine, index or LLM client built on every request or rerun",
            "build it once at startup (module scope, app lifespan or st.cache_resource) "
            "and reuse it",
            "Indexes, chat engines and LLM clients are expensive (embeddings, HTTP pools) and a "
            "chat engine built per request brings a fresh empty memory. Build them once:\n"
            "    index = VectorStoreIndex.from_documents(docs)   # at startup\n"
            "    llm = OpenAI(model='gpt-4o-mini')\n"
            "and keep per-user history in chatkeep (Memory(user_id, store=store)), passing "
            "memory.messages() to the engine or LLM on each request.",
        ),
        Rule(
            "CK103",
            "streamlit-rerun",
            "error",
            "a Streamlit script builds chat memory in its body: every rerun starts empty",
            "guard it with `if 'memory' not in st.session_state:`, build it in an "
            "@st.cache_resource function, or use chatkeep.Memory over a store",
            "Streamlit re-executes the whole script on every interaction. Either keep the "
            "object in st.session_state, or keep the conversation in chatkeep:\n"
            "    store = st.cache_resource(chatkeep.open_store)()\n"
            "    memory = chatkeep.Memory(user_id, store=store)   # per rerun is fine",
        ),
        Rule(
            "CK104",
            "stateless-query",
            "warning",
            "a stateless query engine used for a conversation",
            "use a chat engine with memory (index.as_chat_engine(memory=...)), an Agents "
            "session, or pass the history explicitly (chatkeep.Memory(...).messages())",
            "query_engine.query() sees only the question: 'What did I ask earlier?' has no "
            "answer. Use index.as_chat_engine(chat_mode='condense_question', memory=...) or read "
            "the history from chatkeep (with the Agents SDK: Runner.run(agent, text, "
            "session=session)):\n"
            "    memory = chatkeep.Memory(user_id, store=store)\n"
            "    with memory.turn(text) as turn:\n"
            "        turn.reply(llm(turn.messages))   # the window includes earlier turns",
        ),
        Rule(
            "CK105",
            "shared-session-key",
            "error",
            "one constant session / chat-store key used for every user",
            "key the memory by the caller (user id, session cookie, conversation id), "
            "never a constant",
            "A constant key makes every user share one conversation, which is also a privacy "
            "leak. Key it by who is calling:\n"
            "    memory = chatkeep.Memory(f'user-{user_id}', store=store)",
        ),
        Rule(
            "CK106",
            "in-process-state-with-reload-or-workers",
            "error",
            "in-process chat state combined with --reload or several worker processes",
            "move the conversation to a store every process shares (chatkeep's SQLite "
            "default, PostgreSQL, Redis) or run one worker without reload",
            "--reload restarts the process on every change and --workers N runs N processes "
            "with N separate memories: a request can land on a worker that never saw the "
            "conversation. State in a shared store survives both:\n"
            "    store = chatkeep.open_store('sqlite:///chat.db')  # or postgresql://, redis://\n"
            "    memory = chatkeep.Memory(user_id, store=store)",
        ),
        Rule(
            "CK107",
            "chat-store-half-persisted",
            "error",
            "a SimpleChatStore persisted but never loaded back (or loaded, never persisted)",
            "pair SimpleChatStore.persist(path) with SimpleChatStore.from_persist_path(path), "
            "or use a store that writes every message (chatkeep)",
            "A SimpleChatStore lives in memory; persist() writes a snapshot and "
            "from_persist_path() reads it. With only one of them the conversation is lost on "
            "restart. chatkeep writes every message when it is added:\n"
            "    memory = chatkeep.Memory(user_id, store=chatkeep.open_store())",
        ),
        Rule(
            "CK108",
            "store-not-closed",
            "warning",
            "a store or database connection opened per request and never closed",
            "open it once at startup (or use `with`), and close it at shutdown",
            "Opening a store per request leaks connections and file handles and pays the "
            "connect cost every time. Open once, close at shutdown:\n"
            "    @asynccontextmanager\n"
            "    async def lifespan(app):\n"
            "        app.state.store = await chatkeep.open_async_store()\n"
            "        yield\n"
            "        await app.state.store.close()",
        ),
        Rule(
            "CK201",
            "store-not-durable",
            "error",
            "a store whose data does not survive a restart (memory://, Redis without AOF/RDB)",
            "use sqlite:///chatkeep.db, postgresql:// or a Redis server with appendonly yes "
            "(or save) enabled",
            "Found by `chatkeep doctor --store URL`, which opens the store without writing. "
            "memory:// lives in one process; a Redis server with neither AOF nor RDB snapshots "
            "loses every conversation when it restarts. Turn persistence on:\n"
            "    redis-cli CONFIG SET appendonly yes   # and in redis.conf\n"
            "or use a durable store: chatkeep.open_store('sqlite:///chatkeep.db').",
        ),
        Rule(
            "CK202",
            "store-unreachable",
            "error",
            "a store that could not be opened (server down, bad URL, missing file)",
            "check the URL, that the server is running and reachable, and the credentials; a "
            "SQLite file or file:// directory must exist (the doctor never creates one)",
            "Found by `chatkeep doctor --store URL`. The message carries the driver's error "
            "(the password in the URL is redacted). Fix the URL or start the server, then run "
            "the doctor again.",
        ),
    )
}
