"""Request bodies (pydantic), and JSON views of chatkeep's types for responses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from chatkeep.types import JSONObject, Message, SessionInfo, StoredMessage, Summary, Window


class MessageIn(BaseModel):
    """A message as OpenAI Chat Completions writes it, plus chatkeep's optional fields."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="system | user | assistant | tool | developer")
    content: str | list[dict[str, Any]] | None = ""
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: str | None = Field(None, description="ISO 8601; default: now (UTC)")
    format: str | None = None
    payload: dict[str, Any] | None = None

    def to_message(self) -> Message:
        return Message.from_dict(self.model_dump(exclude_none=True))


class AppendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[MessageIn] = Field(min_length=1, max_length=1000)


class SummaryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    covers_through_seq: int = Field(ge=0)


class ChatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str = Field(description="the conversation (any printable text, 1-256 chars)")
    message: str = Field(min_length=1, description="the user's message")
    token_limit: int | None = Field(None, ge=1, le=1_000_000, description="window budget")
    stream: bool = Field(False, description="reply as server-sent events")


def stored(m: StoredMessage) -> JSONObject:
    return m.to_dict()


def summary_json(s: Summary | None) -> JSONObject | None:
    if s is None:
        return None
    return {
        "text": s.text,
        "covers_through_seq": s.covers_through_seq,
        "tokens": s.tokens,
        "updated_at": s.updated_at.isoformat(),
    }


def info_json(i: SessionInfo) -> JSONObject:
    out = i.to_dict()
    del out["tenant"]  # the caller's own, always
    return out


def window_json(
    session_id: str, w: Window, system_prompt: str | None, system_prompt_tokens: int
) -> JSONObject:
    """The window as the inspector shows it: what is in, what it costs, what was left out."""
    return {
        "session_id": session_id,
        "budget": w.budget,
        "tokens": w.tokens,  # includes the system prompt (reserved)
        "over_budget": w.over_budget,
        "dropped": w.dropped,
        "last_seq": w.last_seq,
        "system_prompt": (
            {"text": system_prompt, "tokens": system_prompt_tokens} if system_prompt else None
        ),
        "summary": summary_json(w.summary),
        "system": [stored(m) for m in w.system],
        "messages": [stored(m) for m in w.messages],
        "in_window": [m.seq for m in w.all_messages],
    }
