"""Guest text is data, never terminal control or a forged log line (issue
11): what a router logs, prints, panics with or refuses its configuration
with reaches Synapse's log under `wasm_presence_router`, and its
`ConfigError`, with every control character escaped visibly (`\\n` as a
backslash and an `n`, ESC as `\\u{1b}`) and cut at 1 KiB.

The forger (`tests/guests/hostile-forger`) logs "ok", a newline and a line
dressed as Synapse's own; prints a carriage return and ANSI sequences to
stdout; writes a C1 control to stderr; with `panic: true` it then panics
with controls in the message, and with `refuse: true` it refuses its
configuration with an ANSI "clear screen", a newline and 8 MB of text. Run by
`synapse-module/e2e/run.sh`, like test_module.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict, List

import attr
import pytest
from synapse.module_api import UserPresenceState
from synapse.module_api.errors import ConfigError

from built_guests import CACHE_DIR, guest
from callback_answer import answer_of
from wasm_presence_router import WasmPresenceRouter

# The forger's log line, as it must reach the log: on one line.
FORGED_LOG_ESCAPED = "ok\\n2026-11-30T00:00:00Z WARN presence_router: FORGED host line"


class FakeModuleApi:
    """The methods of Synapse's ModuleApi the module uses (see
    test_module.py)."""

    def __init__(self) -> None:
        self.callbacks: Dict[str, Callable] = {}

    def register_presence_router_callbacks(self, **callbacks: Callable) -> None:
        self.callbacks = callbacks

    async def defer_to_thread(self, f: Callable, *args: Any) -> Any:
        return f(*args)

    def delayed_background_call(self, msec: float, f: Callable, *args: Any,
                                desc: Any = None) -> None:
        pass

    async def send_local_online_presence_to(self, users: List[str]) -> None:
        pass


def controls(text: str) -> List[str]:
    """The control characters of `text`: C0 (with newline, carriage return
    and tab), DEL and C1."""
    return [c for c in text if ord(c) < 0x20 or ord(c) == 0x7F or 0x80 <= ord(c) <= 0x9F]


def state(user_id: str) -> UserPresenceState:
    return attr.evolve(UserPresenceState.default(user_id), state="online")


def module_records(caplog: pytest.LogCaptureFixture) -> List[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("wasm_presence_router")]


def test_a_forgers_log_lines_output_and_panic_reach_the_log_escaped(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wasm_presence_router")
    config = WasmPresenceRouter.parse_config({"routers": [
        {"name": "forger", "component": guest("hostile_forger"),
         "failure_policy": {"suspend_after": 0}},
        {"name": "forger_panic", "component": guest("hostile_forger"),
         "config": {"panic": True}, "failure_policy": {"suspend_after": 0}},
        {"name": "example", "component": guest("example_router"),
         "config": {"always_send_to_users": ["@w:x"]}},
    ], "cache_dir": CACHE_DIR})
    api = FakeModuleApi()
    WasmPresenceRouter(config, api)
    batch = [state("@a:x")]
    for _ in range(2):
        routes = answer_of(api.callbacks["get_users_for_states"](iter(batch)))
        assert routes == {"@w:x": set(batch)}
    records = module_records(caplog)
    messages = [r.getMessage() for r in records]
    for message in messages:
        assert controls(message) == [], repr(message)
    # Not vacuous: the forger's text did reach the log, escaped.
    assert any(FORGED_LOG_ESCAPED in m for m in messages), messages
    assert any("\\u{1b}[2J" in m for m in messages), messages
    assert any("\\u{9b}31m" in m for m in messages), messages
    assert any("skipped" in m and "FORGED panic" in m for m in messages), messages


def test_a_refusal_that_forges_and_floods_is_an_escaped_short_config_error() -> None:
    with pytest.raises(ConfigError) as raised:
        WasmPresenceRouter.parse_config({"routers": [
            {"name": "forger", "component": guest("hostile_forger"),
             "config": {"refuse": True}, "limits": {"fuel": 10**9}},
        ], "cache_dir": CACHE_DIR})
    message = raised.value.msg
    shown = message[:300]
    assert controls(message) == [], repr(shown)
    assert len(message.encode()) < 4096, (len(message), shown)
    assert "more bytes cut" in message, shown
    assert "\\u{1b}[2J\\nFORGED: xxx" in message, shown
    assert "forger" in message, shown
