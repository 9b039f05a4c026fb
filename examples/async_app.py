"""Async use: one store for the app's lifetime, a cheap AsyncMemory per request.

    python examples/async_app.py

Ten "requests" arrive at once, two users, five each. Turns on one session are serialized by
the session lease, so every question is followed by its own answer; the two users' turns run
side by side.
"""

from __future__ import annotations

import asyncio

import chatkeep


async def handle_request(store: chatkeep.AsyncStore, user: str, text: str) -> str:
    memory = chatkeep.AsyncMemory(f"user:{user}", store=store)  # per request: holds no state
    async with memory.turn(text) as turn:
        await asyncio.sleep(0.01)  # stands in for the LLM call
        answer = f"echo: {text} (I see {len(turn.messages)} messages)"
        turn.reply(answer)
    return answer


async def main() -> None:
    async with await chatkeep.open_async_store() as store:  # app start-up (lifespan)
        for user in ("ada", "bob"):
            await store.delete(f"user:{user}")
        await asyncio.gather(
            *(
                handle_request(store, user, f"question {i}")
                for i in range(5)
                for user in ("ada", "bob")
            )
        )
        for user in ("ada", "bob"):
            history = await chatkeep.AsyncMemory(f"user:{user}", store=store).history()
            print(f"{user}: {len(history)} messages")
            for m in history:
                print(f"  {m.seq:>2} {m.role:<9} {m.text}")


if __name__ == "__main__":
    asyncio.run(main())
