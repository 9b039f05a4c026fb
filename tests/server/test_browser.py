"""The web inspector in headless Chromium against a real ``chatkeep serve`` process.

Uses Debian's ``chromium`` (never ``playwright install``). Without it the test is skipped,
except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.helpers import ROOT, serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"


def _chromium_or_skip() -> str:
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    message = "chromium is not installed (apt-get install -y chromium); .ci/run installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _launch(pw: Any, executable: str) -> Any:
    return pw.chromium.launch(
        executable_path=executable,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )


@pytest.mark.slow
def test_chat_in_the_browser_survives_a_reload(tmp_path: Path) -> None:
    executable = _chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    with serve(tmp_path) as (base, _), sync_api.sync_playwright() as pw:
        browser = _launch(pw, executable)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 860})
            page.goto(f"{base}/#session=ada-browser")
            page.wait_for_selector("#provider")
            assert "offline responder" in page.inner_text("#provider")
            for i, text in enumerate(
                [
                    "Hi! My name is Ada and I am testing chatkeep.",
                    "I am building a support bot for a bakery.",
                    "What did I tell you so far? And what is my name?",
                ]
            ):
                page.fill("#message", text)
                page.press("#message", "Enter")
                page.wait_for_function(
                    f"document.getElementById('status').textContent"
                    f".includes('stored as #{2 * i + 1} and #{2 * i + 2}')",
                    timeout=20_000,
                )
            page.wait_for_function("document.querySelectorAll('#transcript .msg').length === 6")
            assert "You told me your name is Ada." in page.inner_text("#transcript")
            assert page.locator("#keybox").is_hidden()  # keyless on loopback
            assert page.locator("#window-list li").count() >= 2

            page.reload()
            page.wait_for_function("document.querySelectorAll('#transcript .msg').length === 6")
            transcript = page.inner_text("#transcript")
            assert "My name is Ada" in transcript and "You told me your name is Ada" in transcript
            assert "/ 3000 tokens" in page.inner_text("#window-facts")
            assert page.locator("#transcript .msg.out").count() == 0
            page.fill("#token-limit", "120")  # a smaller budget: older messages fall out
            page.press("#token-limit", "Enter")
            page.wait_for_function("document.querySelectorAll('#transcript .msg.out').length > 0")
            assert "/ 120 tokens" in page.inner_text("#window-facts")
            in_window = page.locator("#window-list li:not(:first-child)").count()  # 1st: prompt
            out_of_window = page.locator("#transcript .msg.out").count()
            assert in_window >= 2 and out_of_window >= 1 and in_window + out_of_window == 6
            assert page.locator("#session-list li.active").inner_text().startswith("ada-browser")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "server-ui.png"), full_page=True)
        finally:
            browser.close()


@pytest.mark.slow
def test_the_page_asks_for_a_key_when_keys_exist(tmp_path: Path) -> None:
    executable = _chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    from chatkeep.server.keys import KeyFile

    key, _ = KeyFile(tmp_path / "keys.json").create("acme")
    with serve(tmp_path) as (base, _), sync_api.sync_playwright() as pw:
        browser = _launch(pw, executable)
        try:
            page = browser.new_page()
            page.goto(base)
            page.wait_for_selector("#keybox", state="visible")
            assert "API key is required" in page.inner_text("#status")
            page.fill("#apikey", key)
            page.click("#savekey")
            page.wait_for_selector("#provider")
            assert "tenant: acme" in page.inner_text("#meta")
            assert page.locator("#keybox").is_hidden()
        finally:
            browser.close()


@pytest.mark.slow
def test_a_turn_whose_response_is_lost_is_retried_once_and_stored_once(tmp_path: Path) -> None:
    """The server stores the turn but the browser never sees the answer (the connection is reset
    after the response was produced). The page retries with the same Idempotency-Key, the server
    replays the stored turn, and the session holds the turn once."""
    executable = _chromium_or_skip()
    sync_api = pytest.importorskip("playwright.sync_api")
    keys: list[str | None] = []

    def lose_the_first_answer(route: Any) -> None:
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.fetch()  # the server runs and stores the turn...
            route.abort("connectionreset")  # ...and the answer never reaches the page
        else:
            route.continue_()

    with serve(tmp_path) as (base, _), sync_api.sync_playwright() as pw:
        browser = _launch(pw, executable)
        try:
            page = browser.new_page()
            page.route("**/v1/chat", lose_the_first_answer)
            page.goto(f"{base}/#session=lost-answer")
            page.wait_for_selector("#provider")
            page.fill("#message", "Hi! My name is Grace.")
            page.press("#message", "Enter")
            page.wait_for_function(
                "document.getElementById('status').textContent.includes('stored as #1 and #2')",
                timeout=20_000,
            )
        finally:
            browser.close()
        stored = httpx.get(f"{base}/v1/sessions/lost-answer/messages", timeout=10).json()
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    assert [m["role"] for m in stored["items"]] == ["user", "assistant"], stored
