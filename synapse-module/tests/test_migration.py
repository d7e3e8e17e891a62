"""Migrating from a Python presence router (`_migration.py`), in process: the
Python router serves, Synapse-style, while its wasm port is tried on the
calls it draws; promoted, the port answers and the Python router is no
longer called. What the port's side does never costs the live answer."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Dict, List, Set, Union

import attr
import pytest
from synapse.module_api import PRESENCE_ALL_USERS, UserPresenceState
from synapse.module_api.errors import ConfigError

from built_guests import CACHE_DIR, guest
from callback_answer import answer_of
from wasm_presence_router import WasmPresenceRouter
from wasm_presence_router._migration import _positions

CONFIG = {"always_send_to_users": ["@w:x"], "blacklisted_users": ["@bad:x"]}


class TinyRouter:
    """The docs' example router, the way the e2e's is written, small; the
    calls it serves are counted."""

    calls: List[str] = []

    def __init__(self, config: dict, api: Any):
        self.config = config
        api.register_presence_router_callbacks(
            get_users_for_states=self.get_users_for_states,
            get_interested_users=self.get_interested_users)

    @staticmethod
    def parse_config(config: dict) -> dict:
        return config

    async def get_users_for_states(self, states: Any) -> Dict[str, Set[UserPresenceState]]:
        TinyRouter.calls.append("states")
        routed = {s for s in states if s.user_id not in self.config["blacklisted_users"]}
        return {user: set(routed) for user in self.config["always_send_to_users"]}

    async def get_interested_users(self, user_id: str) -> Union[Set[str], str]:
        TinyRouter.calls.append("interest")
        if user_id in self.config["always_send_to_users"]:
            return PRESENCE_ALL_USERS
        return set()


class StrayRouter(TinyRouter):
    """Routes a state that is not of the batch: no port could answer that."""

    async def get_users_for_states(self, states: Any) -> Dict[str, Set[UserPresenceState]]:
        return {"@w:x": {state("@stranger:x")}}


class ApiForMany:
    """A ModuleApi that takes several modules' callbacks, as Synapse does."""

    def __init__(self) -> None:
        self.registered: List[Dict[str, Callable]] = []

    def register_presence_router_callbacks(self, **callbacks: Callable) -> None:
        self.registered.append(callbacks)

    async def defer_to_thread(self, f: Callable, *args: Any) -> Any:
        return f(*args)

    def delayed_background_call(self, *_: Any, **__: Any) -> None:
        pass

    def states(self, batch: List[UserPresenceState]) -> Dict[str, Set[UserPresenceState]]:
        """What Synapse makes of every registered router's answer."""
        merged: Dict[str, Set[UserPresenceState]] = {}
        for callbacks in self.registered:
            for user, routed in answer_of(callbacks["get_users_for_states"](batch)).items():
                merged.setdefault(user, set()).update(routed)
        return merged


def state(user_id: str, presence: str = "online") -> UserPresenceState:
    return attr.evolve(UserPresenceState.default(user_id), state=presence)


def migrating(router_class: str, **canary: Any) -> tuple:
    config = WasmPresenceRouter.parse_config({
        "routers": [{"name": "example",
                     "python": {"module": f"test_migration.{router_class}", "config": CONFIG},
                     "canary": {"component": guest("example_router"), "config": CONFIG,
                                **canary}}],
        "cache_dir": CACHE_DIR,
    })
    api = ApiForMany()
    return WasmPresenceRouter(config, api), api


def until_decided(module: WasmPresenceRouter) -> None:
    """Applies the decisions until the port's is: its calls run on its own
    thread, each bounded by its limits."""
    deadline = time.monotonic() + 120
    while module._python_routers[0].decided is None:
        assert time.monotonic() < deadline, module._canaries.describe()
        asyncio.run(module._canaries.apply_decisions())
        time.sleep(0.05)


def test_the_python_router_serves_until_its_port_is_promoted_then_the_port_does() -> None:
    TinyRouter.calls = []
    module, api = migrating("TinyRouter", promote_after=3)
    batch = [state("@a:x"), state("@bad:x")]
    for _ in range(3):
        assert api.states(batch) == {"@w:x": {batch[0]}}
    assert TinyRouter.calls == ["states"] * 3
    until_decided(module)
    [described] = module._canaries.describe()
    assert (described["router"], described["decision"], described["agreed"]) == (
        "example", "promoted", 3)
    # The port answers now, alike; the Python router is not called.
    assert api.states(batch) == {"@w:x": {batch[0]}}
    assert TinyRouter.calls == ["states"] * 3
    assert [name for name, *_ in module._routers.routers()] == ["example"]


def test_a_python_answer_no_port_could_give_is_not_compared_and_still_served() -> None:
    module, api = migrating("StrayRouter", promote_after=3)
    batch = [state("@a:x")]
    for _ in range(3):
        assert {s.user_id for s in api.states(batch)["@w:x"]} == {"@stranger:x"}
    [described] = module._canaries.describe()
    assert (described["calls"], described["skipped"], described["decision"]) == (
        0, 3, "on_trial")


def test_positions_are_the_batchs_whatever_object_the_python_router_gave() -> None:
    batch = [state("@a:x"), state("@b:x"), state("@a:x")]
    # The very objects, or equal ones; the first of equal states.
    assert _positions(batch, {"@w:x": {batch[1]}, "@v:x": [state("@a:x")]}) == {
        "@w:x": [1], "@v:x": [0]}
    assert _positions(batch, {"@w:x": [batch[2]]}) == {"@w:x": [2]}
    assert _positions(batch, {"@w:x": [state("@c:x")]}) is None
    assert _positions(batch, {}) == {}


@pytest.mark.parametrize("entry, path, message", [
    ({"name": "example", "python": {"module": "test_migration.TinyRouter"}},
     ("routers", "<item 0>", "canary"), "give it a `canary:`"),
    ({"name": "example", "python": "TinyRouter", "canary": {}},
     ("routers", "<item 0>", "python"), "`module`"),
    ({"name": "example", "python": {"module": "test_migration.TinyRouter"},
      "canary": {"component": "x.wasm"}, "component": "y.wasm"},
     ("routers", "<item 0>", "component"), "unknown key `component`"),
    ({"python": {"module": "test_migration.TinyRouter"}, "canary": {}},
     ("routers", "<item 0>", "name"), "needs a `name`"),
])
def test_a_bad_python_router_entry_names_its_key(entry: dict, path: tuple, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        WasmPresenceRouter.parse_config({"routers": [entry], "cache_dir": CACHE_DIR})
    assert refused.value.path == path, refused.value
    assert message in refused.value.msg, refused.value


def test_a_port_without_its_component_names_the_key() -> None:
    with pytest.raises(ConfigError) as refused:
        WasmPresenceRouter.parse_config({
            "routers": [{"name": "example",
                         "python": {"module": "test_migration.TinyRouter", "config": CONFIG},
                         "canary": {"promote_after": 3}}],
            "cache_dir": CACHE_DIR})
    assert refused.value.path == ("routers", "<item 0>", "canary", "component"), refused.value


def test_a_state_the_port_cannot_read_is_not_compared_and_said(caplog) -> None:
    module, api = migrating("TinyRouter", promote_after=3)

    @attr.s(frozen=True, auto_attribs=True)
    class NoStatus:
        """A state without Synapse's fields: the Python router routes it."""
        user_id: str

    with caplog.at_level(logging.WARNING, logger="wasm_presence_router"):
        api.states([NoStatus("@a:x")])
        asyncio.run(module._canaries.apply_decisions())
    [described] = module._canaries.describe()
    assert (described["calls"], described["skipped"]) == (0, 1), described
    assert "presence state 0 of the batch was not routed" in caplog.text, caplog.text
