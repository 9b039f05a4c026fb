"""Every rule: snippets that must be flagged (with exactly these codes) and near misses that
must stay clean."""

from __future__ import annotations

import textwrap

import pytest

from chatkeep.doctor import check_source

FLAGGED: dict[str, tuple[set[str], str]] = {
    # -- CK101 memory per request ---------------------------------------------------------
    "llamaindex-alias": (
        {"CK101"},
        """
        from fastapi import APIRouter
        from llama_index.core.memory import ChatMemoryBuffer as CMB
        router = APIRouter()
        @router.post("/ask")
        async def ask(q: str):
            memory = CMB.from_defaults()
            return memory
        """,
    ),
    "module-alias": (
        {"CK101"},
        """
        import flask
        import llama_index.core.memory as m
        app = flask.Flask(__name__)
        @app.route("/talk", methods=["POST"])
        def talk():
            mem = m.ChatSummaryMemoryBuffer.from_defaults()
            return "ok"
        """,
    ),
    "llamaindex-memory-default-sqlite-in-memory": (
        {"CK101"},
        """
        from fastapi import FastAPI
        from llama_index.core.memory import Memory
        app = FastAPI()
        @app.post("/x")
        def x(session_id: str):
            return Memory.from_defaults(session_id=session_id, token_limit=4000)
        """,
    ),
    "langchain-history-add-api-route": (
        {"CK101"},
        """
        from fastapi import FastAPI
        from langchain_core.chat_history import InMemoryChatMessageHistory
        app = FastAPI()
        def reply(text: str):
            history = InMemoryChatMessageHistory()
            history.add_user_message(text)
            return history.messages
        app.add_api_route("/reply", reply, methods=["POST"])
        """,
    ),
    "langchain-buffer-memory-flask-add-url-rule": (
        {"CK101"},
        """
        from flask import Flask
        from langchain.memory import ConversationBufferMemory
        app = Flask(__name__)
        def answer():
            memory = ConversationBufferMemory(return_messages=True)
            return "x"
        app.add_url_rule("/answer", "answer", answer, methods=["POST"])
        """,
    ),
    "agents-sqlite-session-default": (
        {"CK101"},
        """
        from agents import Agent, Runner, SQLiteSession
        from fastapi import FastAPI
        app = FastAPI()
        agent = Agent(name="a")
        @app.post("/run")
        async def run(user_id: str, text: str):
            session = SQLiteSession(user_id)
            return await Runner.run(agent, text, session=session)
        """,
    ),
    "agents-sqlite-session-explicit-memory": (
        {"CK101"},
        """
        from agents import SQLiteSession
        from fastapi import FastAPI
        app = FastAPI()
        @app.post("/run")
        async def run(user_id: str):
            return SQLiteSession(user_id, ":memory:")
        """,
    ),
    "chatkeep-memory-url-per-request": (
        {"CK101"},
        """
        import chatkeep
        from fastapi import FastAPI
        app = FastAPI()
        @app.post("/chat")
        def chat(user_id: str):
            memory = chatkeep.Memory(user_id, store=chatkeep.open_store("memory://"))
            return memory.messages()
        """,
    ),
    "django-class-based-view": (
        {"CK101"},
        """
        from django.views import View
        from llama_index.core.memory import ChatMemoryBuffer
        class ChatView(View):
            def post(self, request):
                memory = ChatMemoryBuffer.from_defaults()
                return memory
        """,
    ),
    "flask-methodview-as-view": (
        {"CK101"},
        """
        from flask import Flask
        from flask.views import MethodView
        from langchain_community.chat_message_histories import ChatMessageHistory
        app = Flask(__name__)
        class Chat(MethodView):
            def post(self):
                return ChatMessageHistory()
        app.add_url_rule("/c", view_func=Chat.as_view("chat"))
        """,
    ),
    "starlette-route": (
        {"CK101"},
        """
        from starlette.applications import Starlette
        from starlette.routing import Route
        from llama_index.core.memory import ChatMemoryBuffer
        async def chat(request):
            memory = ChatMemoryBuffer.from_defaults()
            return memory
        app = Starlette(routes=[Route("/chat", chat, methods=["POST"])])
        """,
    ),
    "chainlit-on-message": (
        {"CK101"},
        """
        import chainlit as cl
        from llama_index.core.memory import ChatMemoryBuffer
        @cl.on_message
        async def main(message: cl.Message):
            memory = ChatMemoryBuffer.from_defaults()
        """,
    ),
    "gradio-chat-interface-and-events": (
        {"CK101", "CK104"},
        """
        import gradio as gr
        from llama_index.core.memory import ChatMemoryBuffer
        def respond(message, history):
            memory = ChatMemoryBuffer.from_defaults()
            return str(query_engine.query(message))
        def on_submit(message, chat_history):
            return str(query_engine.query(message))
        gr.ChatInterface(respond).launch()
        with gr.Blocks() as demo:
            box = gr.Textbox()
            box.submit(on_submit, [box], [box])
        """,
    ),
    "app-factory-nested-route": (
        {"CK101"},
        """
        from flask import Flask, g
        from llama_index.core.memory import ChatMemoryBuffer
        def create_app():
            app = Flask(__name__)
            @app.post("/chat")
            def chat():
                g.memory = ChatMemoryBuffer.from_defaults()
                return "ok"
            return app
        """,
    ),
    "fastapi-http-middleware": (
        {"CK101"},
        """
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        @app.middleware("http")
        async def attach_memory(request, call_next):
            request.state.memory = ChatMemoryBuffer.from_defaults()
            return await call_next(request)
        """,
    ),
    "websocket-constant-key": (
        {"CK105"},
        """
        import chatkeep
        from fastapi import FastAPI, WebSocket
        app = FastAPI()
        store = chatkeep.open_store()
        @app.websocket("/ws/{user_id}")
        async def ws(websocket: WebSocket, user_id: str):
            memory = chatkeep.Memory("shared", store=store)
        """,
    ),
    "helper-one-level-deep": (
        {"CK101"},
        """
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        def get_memory():
            return ChatMemoryBuffer.from_defaults(token_limit=1500)
        @app.post("/chat")
        def chat(message: str):
            memory = get_memory()
            return memory
        """,
    ),
    "fastapi-dependency": (
        {"CK101"},
        """
        from fastapi import Depends, FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        def get_memory():
            return ChatMemoryBuffer.from_defaults()
        @app.post("/chat")
        def chat(message: str, memory=Depends(get_memory)):
            return memory
        """,
    ),
    # -- CK102 hot path ---------------------------------------------------------------------
    "llm-clients-and-index-per-request": (
        {"CK102"},
        """
        import openai
        from fastapi import FastAPI
        from langchain_openai import ChatOpenAI
        from llama_index.core import StorageContext, load_index_from_storage
        app = FastAPI()
        @app.get("/search")
        def search(q: str):
            client = openai.OpenAI()
            llm = ChatOpenAI(model="gpt-4o-mini")
            index = load_index_from_storage(StorageContext.from_defaults(persist_dir="s"))
            return q
        """,
    ),
    "chat-engine-class-per-request": (
        {"CK102"},
        """
        from fastapi import FastAPI
        from llama_index.core.chat_engine import SimpleChatEngine
        app = FastAPI()
        @app.post("/c")
        def c(text: str):
            return SimpleChatEngine.from_defaults().chat(text)
        """,
    ),
    # -- CK103 Streamlit --------------------------------------------------------------------
    "streamlit-body": (
        {"CK103"},
        """
        import streamlit as st
        from llama_index.core.memory import ChatMemoryBuffer
        memory = ChatMemoryBuffer.from_defaults()
        if prompt := st.chat_input():
            memory.put(prompt)
        """,
    ),
    "streamlit-engine-and-index": (
        {"CK102", "CK103"},
        """
        import streamlit as st
        from llama_index.core import VectorStoreIndex
        index = VectorStoreIndex.from_documents([])
        engine = index.as_chat_engine()
        """,
    ),
    "engine-per-request-over-a-per-request-buffer": (
        {"CK101", "CK102"},
        """
        from fastapi import FastAPI
        from llama_index.core import VectorStoreIndex
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        index = VectorStoreIndex.from_documents([])
        @app.post("/chat")
        def chat(text: str):
            memory = ChatMemoryBuffer.from_defaults(token_limit=3000)
            engine = index.as_chat_engine(memory=memory)
            return engine.chat(text).response
        """,
    ),
    "streamlit-helper": (
        {"CK103"},
        """
        import streamlit as st
        from langchain_core.chat_history import InMemoryChatMessageHistory
        def make():
            return InMemoryChatMessageHistory()
        history = make()
        """,
    ),
    # -- CK104 stateless query for a conversation ----------------------------------------
    "query-engine-in-chat-route": (
        {"CK104"},
        """
        from fastapi import FastAPI
        app = FastAPI()
        @app.post("/chat")
        def chat(message: str):
            return str(app.state.index.as_query_engine().query(message))
        """,
    ),
    "query-engine-with-history-variable": (
        {"CK104"},
        """
        from fastapi import FastAPI
        app = FastAPI()
        history = []
        @app.post("/ask")
        def ask(q: str, messages: list[str]):
            return str(query_engine.query(q))
        """,
    ),
    "agents-runner-without-session-in-chat": (
        {"CK104"},
        """
        from agents import Agent, Runner
        from fastapi import FastAPI
        app = FastAPI()
        agent = Agent(name="assistant")
        @app.post("/chat")
        async def chat(user_id: str, text: str):
            result = await Runner.run(agent, text)
            return result.final_output
        """,
    ),
    "query-engine-in-streamlit-chat": (
        {"CK104"},
        """
        import streamlit as st
        @st.cache_resource
        def engine():
            return build().as_query_engine()
        if prompt := st.chat_input("Ask"):
            st.write(engine().query(prompt).response)
        """,
    ),
    # -- CK105 one constant key ------------------------------------------------------------
    "constant-chat-store-key": (
        {"CK105"},
        """
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        from llama_index.storage.chat_store.redis import RedisChatStore
        app = FastAPI()
        chat_store = RedisChatStore(redis_url="redis://localhost:6379")
        @app.post("/chat")
        def chat(user_id: str, text: str):
            memory = ChatMemoryBuffer.from_defaults(chat_store=chat_store, chat_store_key="user1")
            return memory
        """,
    ),
    "constant-chatkeep-session": (
        {"CK105"},
        """
        import chatkeep
        from fastapi import FastAPI
        app = FastAPI()
        store = chatkeep.open_store()
        SESSION = "default"
        @app.post("/chat")
        def chat(text: str):
            return chatkeep.Memory(SESSION, store=store).messages()
        """,
    ),
    "constant-langchain-config": (
        {"CK105"},
        """
        from fastapi import FastAPI
        app = FastAPI()
        @app.post("/chat")
        def chat(user: str, text: str):
            return chain.invoke({"input": text}, config={"configurable": {"session_id": "abc"}})
        """,
    ),
    "module-level-constant-key-in-web-app": (
        {"CK105"},
        """
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        from llama_index.core.storage.chat_store import SimpleChatStore
        app = FastAPI()
        chat_store = SimpleChatStore()
        memory = ChatMemoryBuffer.from_defaults(chat_store=chat_store, chat_store_key="user1")
        @app.post("/chat")
        def chat(text: str):
            return memory.get()
        """,
    ),
    # -- CK106 in-process state + reload / workers in code --------------------------------
    "uvicorn-run-reload": (
        {"CK106"},
        """
        import uvicorn
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        memory = ChatMemoryBuffer.from_defaults()
        if __name__ == "__main__":
            uvicorn.run("main:app", reload=True)
        """,
    ),
    "dict-global-with-workers": (
        {"CK106"},
        """
        from collections import defaultdict
        from llama_index.core.memory import ChatMemoryBuffer
        import uvicorn
        from fastapi import FastAPI
        app = FastAPI()
        histories = defaultdict(list)
        memories = {}
        @app.post("/chat")
        def chat(user_id: str, text: str):
            histories[user_id].append(text)
            memories[user_id] = ChatMemoryBuffer.from_defaults()
        uvicorn.run(app, workers=4)
        """,
    ),
    "memory-url-with-flask-debug": (
        {"CK106"},
        """
        import chatkeep
        from flask import Flask
        app = Flask(__name__)
        store = chatkeep.open_store("memory://")
        app.run(debug=True)
        """,
    ),
    # -- CK107 half persisted ----------------------------------------------------------------
    "persisted-never-loaded": (
        {"CK107"},
        """
        from llama_index.core.storage.chat_store import SimpleChatStore
        chat_store = SimpleChatStore()
        def save():
            chat_store.persist(persist_path="chat_store.json")
        """,
    ),
    "loaded-never-persisted": (
        {"CK107"},
        """
        from llama_index.core.storage.chat_store import SimpleChatStore
        chat_store = SimpleChatStore.from_persist_path("chat_store.json")
        """,
    ),
    # -- CK108 stores opened per request ------------------------------------------------------
    "open-store-per-request": (
        {"CK108"},
        """
        import chatkeep
        from fastapi import FastAPI
        app = FastAPI()
        @app.post("/chat")
        def chat(user_id: str):
            store = chatkeep.open_store()
            return chatkeep.Memory(user_id, store=store).messages()
        """,
    ),
    "drivers-per-request": (
        {"CK108"},
        """
        import sqlite3
        import psycopg
        import redis
        from fastapi import FastAPI
        app = FastAPI()
        @app.get("/n")
        def n():
            db = sqlite3.connect("app.db")
            r = redis.Redis()
            conn = psycopg.connect("dbname=test")
            return sqlite3.connect("x.db").execute("select 1").fetchone()
        """,
    ),
}

CLEAN: dict[str, str] = {
    "engine-per-request-over-a-durable-memory": """
        from fastapi import FastAPI
        from llama_index.core import VectorStoreIndex
        from chatkeep.adapters.llamaindex import ChatKeepMemory
        app = FastAPI()
        index = VectorStoreIndex.from_documents([])
        @app.post("/chat")
        def chat(user_id: str, text: str):
            memory = ChatKeepMemory.from_defaults(session_id=user_id, token_limit=3000)
            engine = index.as_chat_engine(chat_mode="context", memory=memory)
            return engine.chat(text).response
    """,
    "module-level-singletons": """
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        from langchain_core.chat_history import InMemoryChatMessageHistory
        import openai
        app = FastAPI()
        memory = ChatMemoryBuffer.from_defaults()
        history = InMemoryChatMessageHistory()
        client = openai.OpenAI()
        @app.post("/chat")
        def chat(text: str):
            history.add_user_message(text)
            return memory.get()
        """,
    "chatkeep-memory-per-request-is-fine": """
        import chatkeep
        from fastapi import FastAPI
        app = FastAPI()
        store = chatkeep.open_store()
        @app.post("/chat")
        def chat(user_id: str, text: str):
            memory = chatkeep.Memory(user_id, store=store)
            with memory.turn(text) as turn:
                turn.reply("ok")
            return memory.messages()
        """,
    "durable-llamaindex-chat-store": """
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer, Memory
        from llama_index.storage.chat_store.redis import RedisChatStore
        app = FastAPI()
        chat_store = RedisChatStore(redis_url="redis://localhost:6379")
        @app.post("/chat")
        def chat(user_id: str):
            a = ChatMemoryBuffer.from_defaults(chat_store=chat_store, chat_store_key=user_id)
            b = Memory.from_defaults(session_id=user_id, async_database_uri="postgresql+asyncpg://db")
            return a, b
        """,
    "durable-langchain-and-agents": """
        from agents import SQLiteSession
        from fastapi import FastAPI
        from langchain.memory import ConversationBufferMemory
        from langchain_community.chat_message_histories import RedisChatMessageHistory
        app = FastAPI()
        @app.post("/chat")
        async def chat(user_id: str):
            history = RedisChatMessageHistory(user_id, url="redis://localhost")
            memory = ConversationBufferMemory(chat_memory=history)
            session = SQLiteSession(user_id, "conversations.db")
            return memory, session
        """,
    "history-loaded-and-passed-in": """
        from fastapi import FastAPI
        from langchain.memory import ConversationBufferMemory
        from langchain_community.chat_message_histories import ChatMessageHistory
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        @app.post("/chat")
        def chat(user_id: str, text: str):
            rows = load_history_from_db(user_id)
            a = ChatMemoryBuffer.from_defaults(token_limit=3900, chat_history=rows)
            b = ConversationBufferMemory(chat_memory=ChatMessageHistory(messages=rows))
            return a, b
        """,
    "lazy-global-singleton": """
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        memory = None
        @app.post("/chat")
        def chat(text: str):
            global memory
            if memory is None:
                memory = ChatMemoryBuffer.from_defaults()
            return memory
        """,
    "per-user-dict-keyed-by-user": """
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        memories = {}
        @app.post("/chat")
        def chat(user_id: str):
            if user_id not in memories:
                memories[user_id] = ChatMemoryBuffer.from_defaults()
            return memories[user_id]
        """,
    "app-factory-closure-dict": """
        from flask import Flask
        from llama_index.core.memory import ChatMemoryBuffer
        def create_app():
            app = Flask(__name__)
            memories = {}
            @app.post("/chat/<user_id>")
            def chat(user_id):
                if user_id not in memories:
                    memories[user_id] = ChatMemoryBuffer.from_defaults()
                return "ok"
            return app
        """,
    "local-then-stored-per-user": """
        import chainlit as cl
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        memories = {}
        @app.post("/chat")
        def chat(user_id: str):
            memory = memories.get(user_id)
            if memory is None:
                memory = ChatMemoryBuffer.from_defaults()
                memories[user_id] = memory
            return memory
        @app.post("/chat2")
        def chat2(user_id: str):
            memory = ChatMemoryBuffer.from_defaults()
            app.state.memories.setdefault(user_id, memory)
        @cl.on_message
        async def on_message(message):
            memory = cl.user_session.get("memory")
            if memory is None:
                memory = ChatMemoryBuffer.from_defaults()
                cl.user_session.set("memory", memory)
        """,
    "cached-helper-and-lifespan-state": """
        from functools import lru_cache
        from fastapi import FastAPI, Request
        from llama_index.core import VectorStoreIndex
        app = FastAPI()
        @lru_cache
        def get_index():
            return VectorStoreIndex.from_documents([])
        @app.on_event("startup")
        def startup():
            app.state.engine = get_index().as_chat_engine()
        @app.post("/chat")
        def chat(request: Request, text: str):
            engine = get_index().as_query_engine
            return request.app.state.engine.chat(text)
        """,
    "websocket-memory-lives-with-the-connection": """
        from fastapi import FastAPI, WebSocket
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        @app.websocket("/ws")
        async def ws(websocket: WebSocket):
            await websocket.accept()
            memory = ChatMemoryBuffer.from_defaults()
            while True:
                memory.put(await websocket.receive_text())
        """,
    "memory-outside-any-handler": """
        from llama_index.core.memory import ChatMemoryBuffer
        def build(docs):
            memory = ChatMemoryBuffer.from_defaults()
            return memory
        """,
    "streamlit-session-state-guard": """
        import streamlit as st
        from llama_index.core.memory import ChatMemoryBuffer
        if "memory" not in st.session_state:
            st.session_state.memory = ChatMemoryBuffer.from_defaults()
        st.session_state["engine"] = st.session_state.get("engine") or make_engine()
        if prompt := st.chat_input():
            st.session_state.memory.put(prompt)
        """,
    "streamlit-helper-with-session-state-guard": """
        import streamlit as st
        from llama_index.core.memory import ChatMemoryBuffer
        def get_memory():
            if "memory" not in st.session_state:
                memory = ChatMemoryBuffer.from_defaults()
                st.session_state.memory = memory
            return st.session_state.memory
        memory = get_memory()
        """,
    "streamlit-cache-resource": """
        import streamlit as st
        import chatkeep
        from llama_index.core import VectorStoreIndex
        @st.cache_resource
        def get_index():
            return VectorStoreIndex.from_documents([])
        store = st.cache_resource(chatkeep.open_store)()
        index = get_index()
        memory = chatkeep.Memory("user-" + st.context.cookies.get("uid", "anon"), store=store)
        """,
    "query-engine-for-search-not-chat": """
        from fastapi import FastAPI
        app = FastAPI()
        @app.get("/search")
        def search(q: str):
            return str(query_engine.query(q))
        """,
    "query-with-history-passed-explicitly": """
        from fastapi import FastAPI
        app = FastAPI()
        @app.post("/chat")
        def chat(message: str, history: list[str]):
            return str(query_engine.query("\\n".join(history) + message))
        """,
    "agents-runner-with-session-or-history": """
        from agents import Agent, Runner, SQLiteSession
        from fastapi import FastAPI
        app = FastAPI()
        agent = Agent(name="assistant")
        @app.post("/chat")
        async def chat(user_id: str, text: str, previous: str):
            session = SQLiteSession(user_id, "conversations.db")
            a = await Runner.run(agent, text, session=session)
            b = await Runner.run(agent, text, previous_response_id=previous)
            c = await Runner.run(agent, load_items(user_id) + [{"role": "user", "content": text}])
            return a, b, c
        """,
    "session-key-from-the-caller": """
        import chatkeep
        from fastapi import FastAPI
        app = FastAPI()
        store = chatkeep.open_store()
        @app.post("/chat")
        def chat(user_id: str):
            return chatkeep.Memory(f"user-{user_id}", store=store).messages()
        """,
    "constant-key-outside-web-app": """
        import chatkeep
        SESSION = "demo"
        def main():
            with chatkeep.open_store() as store:
                chatkeep.Memory(SESSION, store=store).add("user", "hi")
        """,
    "in-process-state-without-reload": """
        import uvicorn
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        memory = ChatMemoryBuffer.from_defaults()
        histories = {}
        uvicorn.run(app, workers=1, reload=False)
        """,
    "cache-of-durable-handles-with-workers": """
        import uvicorn
        from agents import SQLiteSession
        from fastapi import FastAPI
        from llama_index.core.memory import ChatMemoryBuffer
        app = FastAPI()
        _sessions: dict[str, SQLiteSession] = {}
        memories = {}
        @app.post("/chat")
        def chat(session_id: str):
            if session_id not in _sessions:
                _sessions[session_id] = SQLiteSession(session_id, "agents.db")
            memories.setdefault(session_id, ChatMemoryBuffer.from_defaults(chat_store=redis_store))
            return _sessions[session_id]
        uvicorn.run(app, workers=4)
        """,
    "durable-state-with-workers": """
        import chatkeep
        import uvicorn
        from fastapi import FastAPI
        app = FastAPI()
        store = chatkeep.open_store("sqlite:///chat.db")
        CACHE = {}
        uvicorn.run("app:app", workers=4)
        """,
    "persisted-and-loaded": """
        import os
        from llama_index.core.storage.chat_store import SimpleChatStore
        if os.path.exists("chat.json"):
            chat_store = SimpleChatStore.from_persist_path("chat.json")
        else:
            chat_store = SimpleChatStore()
        def save():
            chat_store.persist(persist_path="chat.json")
        """,
    "loaded-here-persisted-through-an-attribute": """
        import os
        from llama_index.core.memory import ChatMemoryBuffer
        from llama_index.core.storage.chat_store import SimpleChatStore
        class Manager:
            def __init__(self, path):
                self.path = path
                self.chat_store = self._load()
            def _load(self):
                if os.path.exists(self.path):
                    return SimpleChatStore.from_persist_path(self.path)
                return SimpleChatStore()
            def save(self, memory: ChatMemoryBuffer):
                memory.chat_store.persist(self.path)
        """,
    "index-persist-is-not-a-chat-store": """
        from llama_index.core import VectorStoreIndex
        index = VectorStoreIndex.from_documents([])
        index.storage_context.persist(persist_dir="storage")
        """,
    "connections-closed": """
        import contextlib
        import sqlite3
        import chatkeep
        import redis
        from fastapi import FastAPI
        app = FastAPI()
        @app.get("/n")
        async def n():
            with chatkeep.open_store() as store:
                pass
            async with await chatkeep.open_async_store() as astore:
                pass
            with contextlib.closing(sqlite3.connect("a.db")) as db:
                pass
            r = redis.Redis()
            try:
                return r.ping()
            finally:
                r.close()
        def get_db():
            db = sqlite3.connect("a.db")
            try:
                yield db
            finally:
                db.close()
        """,
}


def codes(source: str) -> set[str]:
    return {d.code for d in check_source(textwrap.dedent(source), "snippet.py")}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_flagged(name: str) -> None:
    expected, source = FLAGGED[name]
    assert codes(source) == expected


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_near_miss_is_clean(name: str) -> None:
    found = check_source(textwrap.dedent(CLEAN[name]), "snippet.py")
    assert found == []


def test_every_rule_has_flagged_and_clean_examples() -> None:
    from chatkeep.doctor import RULES

    covered = set().union(*(c for c, _ in FLAGGED.values()))
    static = {code for code in RULES if not code.startswith("CK2")}  # CK2xx: test_store_check
    assert covered == static - {"CK001", "CK002"}  # tested with broken files / rules


def test_helper_is_reported_at_the_call_site_naming_it() -> None:
    (d,) = check_source(textwrap.dedent(FLAGGED["helper-one-level-deep"][1]), "app.py")
    assert (d.line, d.code) == (9, "CK101")
    assert d.message.startswith("get_memory(), called in request handler `chat`")
    assert "creates ChatMemoryBuffer.from_defaults() (line 6)" in d.message


def test_each_in_process_global_is_reported_once() -> None:
    found = check_source(textwrap.dedent(FLAGGED["dict-global-with-workers"][1]), "app.py")
    assert [(d.line, d.message.split(" keeps")[0]) for d in found] == [
        (7, "global `histories`"),
        (8, "global `memories`"),
    ]
    assert all("uvicorn.run(workers=4) (app.py:13)" in d.message for d in found)


def test_what_was_built_is_named() -> None:
    source = """
    from fastapi import FastAPI
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.llms.ollama import Ollama
    app = FastAPI()
    @app.get("/x")
    def x():
        return HuggingFaceEmbedding(model_name="m"), Ollama(model="llama3")
    """
    messages = [d.message for d in check_source(textwrap.dedent(source), "a.py")]
    assert [m.split(" in request")[0] for m in messages] == [
        "HuggingFaceEmbedding() builds an embedding model",
        "Ollama() builds an LLM client",
    ]


def test_positions_are_one_based() -> None:
    (d,) = check_source(
        "from fastapi import FastAPI\nfrom llama_index.core.memory import "
        "ChatMemoryBuffer\napp = FastAPI()\n@app.get('/')\ndef f():\n"
        "    m = ChatMemoryBuffer()\n",
        "a.py",
    )
    assert (d.line, d.col) == (6, 9)
