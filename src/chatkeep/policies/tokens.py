"""How many tokens one message costs in a prompt. Counted once, when the message is written."""

from __future__ import annotations

import json

from chatkeep.tokenizers import Tokenizer
from chatkeep.types import Message

#: Per-message framing (role markers, separators) in chat-format prompts; OpenAI's own
#: counting recipe uses 3 plus 1 for a name.
MESSAGE_OVERHEAD = 3
NAME_OVERHEAD = 1
#: What a non-text content part (an image, audio, a file) is charged: OpenAI's low-detail
#: image cost. Base64 payloads are never tokenized as text.
NON_TEXT_PART_TOKENS = 85


def message_tokens(tokenizer: Tokenizer, message: Message) -> int:
    """Tokens ``message`` adds to a prompt: its text, name, tool calls and framing."""
    total = MESSAGE_OVERHEAD
    content = message.content
    if isinstance(content, str):
        total += tokenizer.count(content)
    else:
        for part in content:
            text = part.get("text")
            if isinstance(text, str):
                total += tokenizer.count(text)
            else:
                total += NON_TEXT_PART_TOKENS
    if message.name:
        total += NAME_OVERHEAD + tokenizer.count(message.name)
    if message.tool_calls:
        for call in message.tool_calls:
            fn = call.get("function")
            if isinstance(fn, dict):
                total += tokenizer.count(str(fn.get("name", "")))
                args = fn.get("arguments", "")
                total += tokenizer.count(args if isinstance(args, str) else json.dumps(args))
            else:
                total += tokenizer.count(json.dumps(call, ensure_ascii=False))
            total += MESSAGE_OVERHEAD
    if message.tool_call_id:
        total += tokenizer.count(message.tool_call_id)
    return total


def text_tokens(tokenizer: Tokenizer, text: str) -> int:
    """Tokens of a free text block placed in a prompt as its own message (e.g. a summary)."""
    return MESSAGE_OVERHEAD + tokenizer.count(text)
