"""LLM providers: any OpenAI-compatible endpoint, or the offline responder.

``OpenAICompatible`` talks to OpenAI, Ollama, vLLM, llama.cpp's server or anything else that
speaks the Chat Completions wire protocol (``base_url``, ``model``, key), through the ``openai``
client, with or without streaming. With no endpoint configured the server uses
``OfflineResponder``: no network, deterministic, every reply starts with ``[offline responder]``,
and it answers from the window it was given, so a fresh machine shows memory at work ("you told
me your name is Ada").
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, Protocol

from chatkeep.types import JSONObject

OFFLINE_LABEL = "[offline responder]"


class LLMError(Exception):
    """The LLM endpoint failed (network, status, bad reply)."""


class Provider(Protocol):
    name: str
    model: str
    offline: bool

    async def complete(self, messages: list[JSONObject]) -> str: ...
    def stream(self, messages: list[JSONObject]) -> AsyncIterator[str]: ...
    async def aclose(self) -> None: ...


def describe(provider: Provider) -> dict[str, Any]:
    return {"name": provider.name, "model": provider.model, "offline": provider.offline}


# "my name is ada" / "My name is Ada Lovelace": a first word, and a second one if capitalised.
_NAME = re.compile(r"(?i:\bmy name is) ([^\W\d_][\w'-]*(?: [A-Z][\w'-]+)?)")
_RECALL = re.compile(
    r"\b(what did i (say|tell|ask|write)|what('s| is) my name|who am i|do you remember)\b", re.I
)


def _text(message: JSONObject) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _quote(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return f"\u201c{text if len(text) <= limit else text[: limit - 1] + '…'}\u201d"


class OfflineResponder:
    """A deterministic stand-in for an LLM that recalls what the window holds."""

    name = "offline"
    model = "offline-responder"
    offline = True

    def reply(self, messages: list[JSONObject]) -> str:
        users = [_text(m) for m in messages if m.get("role") == "user"]
        current = users[-1] if users else ""
        earlier = users[:-1]
        names = [n for u in users for n in _NAME.findall(u)]
        summary = next(
            (
                _text(m)
                for m in messages
                if m.get("role") == "system" and _text(m).startswith("Summary of the earlier")
            ),
            None,
        )
        parts = [OFFLINE_LABEL]
        said_name = _NAME.search(current)
        if said_name:
            parts.append(f"Nice to meet you, {said_name.group(1)}. I will remember that.")
        elif _RECALL.search(current):
            if names:
                parts.append(f"You told me your name is {names[-1]}.")
            if earlier:
                listed = "; ".join(_quote(u, 60) for u in earlier[-3:])
                parts.append(f"Earlier you said: {listed}")
            if not names and not earlier:
                parts.append("I have nothing earlier from you in my window.")
        else:
            parts.append(f"You said {_quote(current)}")
            if names:
                parts.append(f"I remember your name is {names[-1]}.")
        parts.append(
            f"My window holds {len(messages)} messages, {len(earlier)} earlier from you"
            + (", plus a summary." if summary else ".")
        )
        return " ".join(parts)

    async def complete(self, messages: list[JSONObject]) -> str:
        return self.reply(messages)

    async def stream(self, messages: list[JSONObject]) -> AsyncIterator[str]:
        words = self.reply(messages).split(" ")
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word

    async def aclose(self) -> None:
        return None


class OpenAICompatible:
    """Chat Completions through the ``openai`` client (``base_url``, ``model``, key)."""

    name = "openai-compatible"
    offline = False

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout: float = 60) -> None:
        from openai import AsyncOpenAI

        self.model = model
        self.base_url = base_url
        # Local servers (Ollama, llama.cpp) accept any key; the client insists on one.
        self._client = AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout, max_retries=1
        )

    async def complete(self, messages: list[JSONObject]) -> str:
        import openai

        try:
            out = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
            )
        except openai.OpenAIError as exc:
            raise LLMError(f"the LLM endpoint failed: {exc}") from exc
        if not out.choices:
            raise LLMError("the LLM endpoint returned no choices")
        return out.choices[0].message.content or ""

    async def stream(self, messages: list[JSONObject]) -> AsyncIterator[str]:
        import openai

        try:
            chunks = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
            )
            async for chunk in chunks:  # type: ignore[union-attr]
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.OpenAIError as exc:
            raise LLMError(f"the LLM endpoint failed: {exc}") from exc

    async def aclose(self) -> None:
        await self._client.close()


def make_provider(base_url: str, model: str, api_key: str, timeout: float) -> Provider:
    if base_url:
        return OpenAICompatible(base_url, model, api_key, timeout)
    return OfflineResponder()
