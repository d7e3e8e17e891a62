"""The Synapse module without a Synapse process: its translation of answers,
its config errors, its logging, its scheduling of sends, where calls run
(on the calling thread within a slice; the rest with the GIL released), and
that it survives Synapse daemonizing (a fork).

Synapse's own types are used (`UserPresenceState`, `ConfigError`,
`PRESENCE_ALL_USERS`); the `ModuleApi` is a recording fake with the methods
the module uses. Run by `synapse-module/e2e/run.sh`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import select
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import attr
import pytest
from synapse.module_api import PRESENCE_ALL_USERS, UserPresenceState
from synapse.module_api.errors import ConfigError
from twisted.internet.defer import CancelledError, Deferred

from built_guests import CACHE_DIR, guest
from callback_answer import answer_of
from wasm_presence_router import WasmPresenceRouter, _native


class FakeModuleApi:
    """Records what the module asks of Synapse's ModuleApi."""

    def __init__(self) -> None:
        self.callbacks: Dict[str, Callable] = {}
        self.delayed: List[Tuple[float, Callable, tuple, Optional[str]]] = []
        self.sent: List[List[str]] = []
        self.thread_calls = 0
        self.looping: List[Tuple[Callable, float, tuple, Optional[str], bool]] = []

    def register_presence_router_callbacks(self, **callbacks: Callable) -> None:
        assert not self.callbacks, "registered twice"
        self.callbacks = callbacks

    async def defer_to_thread(self, f: Callable, *args: Any) -> Any:
        self.thread_calls += 1
        return f(*args)

    def delayed_background_call(self, msec: float, f: Callable, *args: Any,
                                desc: Optional[str] = None) -> None:
        self.delayed.append((msec, f, args, desc))

    def looping_background_call(self, f: Callable, msec: float, *args: Any,
                                desc: Optional[str] = None,
                                run_on_all_instances: bool = False) -> None:
        self.looping.append((f, msec, args, desc, run_on_all_instances))

    async def send_local_online_presence_to(self, users: List[str]) -> None:
        self.sent.append(list(users))


def load(routers: List[dict], **module_keys: Any) -> Tuple[WasmPresenceRouter, FakeModuleApi]:
    config = WasmPresenceRouter.parse_config(
        {"routers": routers, "cache_dir": CACHE_DIR, **module_keys})
    api = FakeModuleApi()
    return WasmPresenceRouter(config, api), api


def example(**config: Any) -> dict:
    return {"name": "example", "component": guest("example_router"), "config": config}


def users_for_states(api: FakeModuleApi, states: List[UserPresenceState]) -> Dict[str, set]:
    return answer_of(api.callbacks["get_users_for_states"](iter(states)))


def interested_users(api: FakeModuleApi, user_id: str) -> Any:
    return answer_of(api.callbacks["get_interested_users"](user_id))


def request(name: str) -> Any:
    """Synapse's logging context of a request: what it serves in it is that
    request's."""
    from synapse.logging.context import LoggingContext

    return LoggingContext(name=name, server_name="test")


def state(user_id: str, presence: str = "online", **fields: Any) -> UserPresenceState:
    return attr.evolve(UserPresenceState.default(user_id), state=presence, **fields)


def test_routes_hold_the_batchs_own_objects_whichever_thread_answers() -> None:
    router, api = load([example(always_send_to_users=["@w:x"], blacklisted_users=["@h:x"])])
    batch = [state("@a:x", status_msg="hi"), state("@h:x"), state("@b:x", "unavailable")]
    routes = users_for_states(api, batch)
    assert set(routes) == {"@w:x"}
    # The same objects, not equal copies: Synapse sends what it gave.
    assert sorted(id(s) for s in routes["@w:x"]) == sorted(id(s) for s in (batch[0], batch[2]))
    assert interested_users(api, "@w:x") == PRESENCE_ALL_USERS
    assert interested_users(api, "@a:x") == set()
    # Each call was answered within its slice on the calling thread, or
    # (should the system have left this thread waiting past the slice's
    # 5 ms) finished on a thread: never both, never neither.
    in_slice, _, handed_off = router._routers.counters()
    assert in_slice + handed_off == 3
    assert api.thread_calls == handed_off


def test_a_batch_too_big_for_the_reactor_is_finished_on_a_thread_with_the_same_answer() -> None:
    router, api = load([example(always_send_to_users=["@w:x"], blacklisted_users=["@h:x"])])
    batch = [state(f"@u{i}:x") for i in range(500)] + [state("@h:x")]
    routes = users_for_states(api, batch)
    assert routes == {"@w:x": set(batch[:500])}
    assert api.thread_calls == 1
    assert router._routers.counters() == (0, 0, 1)


def test_a_spinning_router_holds_the_calling_thread_for_one_slice_then_not_at_all(
        caplog: pytest.LogCaptureFixture) -> None:
    """Synapse calls on its reactor. A router that computes without end is
    stopped at the end of its slice (200,000 fuel, a fraction of a
    millisecond), and the call is finished elsewhere, where the router's own
    limits fail it. For a while after, calls of that size are not tried on
    the reactor at all."""
    router, api = load([{"name": "spin", "component": guest("hostile_spin"),
                         "limits": {"timeout": "50ms"}},
                        example(always_send_to_users=["@w:x"])])
    native = router._routers
    batch = [state("@a:x")]
    # CPU time of this thread: what the reactor would have spent, whatever
    # else the machine is doing.
    spent = time.thread_time()
    pending = native.route_states(batch)
    spent = time.thread_time() - spent
    assert isinstance(pending, _native.Pending)
    assert native.counters() == (0, 1, 1)
    # A slice is 200,000 fuel: well under a millisecond of CPU. 50 ms is the
    # router's own timeout, which it would have spent on the reactor.
    assert spent < 0.025, spent
    answer = native.run_job(pending.job)
    assert answer.routes == {"@w:x": set(batch)}
    assert any(m.startswith("router `spin` skipped for this call")
               for _, m in answer.events), answer.events
    # The next call of that size leaves the spinner's part to a thread
    # without trying it on this one (the example router still answers here).
    spent = time.thread_time()
    pending = native.route_states(batch)
    assert time.thread_time() - spent < 0.025
    assert isinstance(pending, _native.Pending)
    assert native.counters() == (0, 1, 2)
    answer = native.run_job(pending.job)
    assert answer.routes == {"@w:x": set(batch)}


def test_a_call_answered_on_the_reactor_is_an_awaitable_already_done_and_a_finished_one_a_started_deferred(
) -> None:
    """Synapse awaits a callback's answer through `delay_cancellation`,
    which wraps a coroutine in Deferreds: a call the reactor answered
    returns an awaitable already done instead (no Deferred), and a call
    finished on a thread the Deferred of its coroutine, already started
    (its job handed on), which Synapse protects as any module's."""
    from synapse.util.async_helpers import delay_cancellation

    router, api = load([example(always_send_to_users=["@w:x"])])
    small, big = [state("@a:x")], [state(f"@u{i}:x") for i in range(500)]
    answered = api.callbacks["get_users_for_states"](small)
    assert not asyncio.iscoroutine(answered) and inspect.isawaitable(answered)
    # Synapse's own helper hands it back as it is, and awaiting it answers.
    assert delay_cancellation(answered) is answered
    assert answer_of(answered) == {"@w:x": set(small)}
    interest = api.callbacks["get_interested_users"]("@a:x")
    assert not asyncio.iscoroutine(interest) and answer_of(interest) == set()
    # A call finished on a thread: started once called, awaited or not.
    finished = api.callbacks["get_users_for_states"](big)
    assert isinstance(finished, Deferred) and api.thread_calls == 1
    assert answer_of(finished) == {"@w:x": set(big)}
    assert router._routers.counters() == (2, 0, 1)


def test_a_plain_answer_is_handed_over_done_and_its_user_ids_are_made_once() -> None:
    """An answer with nothing sent or reported is the callback's answer to
    Synapse as it is (`Done`, holding the `dict` or `set` Synapse takes);
    its user IDs are the same `str` objects call after call."""
    router, _ = load([example(always_send_to_users=["@w:x", "@v:x"])])
    native = router._routers
    first, second = native.route_states([state("@a:x")]), native.route_states([state("@b:x")])
    assert isinstance(first, _native.Done) and isinstance(second, _native.Done)
    first, second = answer_of(first), answer_of(second)
    assert type(first) is dict and first.keys() == second.keys() == {"@w:x", "@v:x"}
    assert {id(user) for user in first} == {id(user) for user in second}
    # Users routed the same states share one set.
    assert first["@w:x"] is first["@v:x"]
    assert answer_of(native.route_interest("@a:x")) == set()
    everyone = native.route_interest("@w:x")
    assert isinstance(everyone, _native.InterestAnswer) and everyone.all_users


def test_a_user_answered_all_users_has_an_entry_in_the_answers_of_that_request() -> None:
    # The scripted router answers "all users" for @w:test but routes nothing
    # to it: Synapse's ALL_USERS path, which routes everyone's presence in
    # the same request, would raise KeyError without the entry.
    _, api = load([{"name": "scripted", "component": guest("scripted"),
                    "config": {"interested": {"@w:test": "all"}}}])
    assert users_for_states(api, [state("@a:test")]) == {}
    with request("sync of @w:test"):
        assert interested_users(api, "@w:test") == PRESENCE_ALL_USERS
        assert users_for_states(api, [state("@a:test")]) == {"@w:test": set()}
        assert users_for_states(api, []) == {"@w:test": set()}
    # Other requests (every other presence batch) carry no entry for them.
    with request("a presence batch"):
        assert users_for_states(api, [state("@a:test")]) == {}
    assert users_for_states(api, [state("@a:test")]) == {}


def test_all_users_entries_cost_each_batch_nothing_however_many_users_sync() -> None:
    """Every syncing user answered "all users" used to be an entry in every
    presence batch's answer (up to 65,536 `setdefault`s per batch on the
    reactor). Now a batch outside those users' requests has none."""
    router, api = load([{"name": "scripted", "component": guest("scripted"),
                         "config": {"interested": {f"@w{i}:test": "all"
                                                   for i in range(2000)}}}])
    for i in range(2000):
        with request(f"sync of @w{i}:test"):
            assert interested_users(api, f"@w{i}:test") == PRESENCE_ALL_USERS
    with request("a presence batch"):
        assert users_for_states(api, [state("@a:test")]) == {}
    # One request asking for one user after another (Synapse's application
    # service path), routing right after each: every one has its entry.
    with request("appservice presence"):
        for i in range(300):
            assert interested_users(api, f"@w{i}:test") == PRESENCE_ALL_USERS
            assert f"@w{i}:test" in users_for_states(api, [state("@a:test")])
    # The requests remembered are bounded, and each request's users.
    assert all(len(users) <= router.ALL_USERS_PER_REQUEST
               for users in router._all_users_by_request.values())
    router.ALL_USERS_REQUESTS = 2
    for i in range(5):
        with request(f"sync {i}"):
            interested_users(api, "@w1:test")
    assert len(router._all_users_by_request) <= 2


def test_sends_are_scheduled_on_the_reactor_after_the_call() -> None:
    _, api = load([{"name": "peer", "component": guest("synapse_test_router"), "config": {
        "users_who_should_receive_all_presence": ["@p:x"],
        "send_on_status_msg": {"status_msg": "resend", "users": ["@w:x", "@p:x"]},
    }}])
    batch = [state("@c:x", status_msg="resend", last_active_ts=5)]
    assert users_for_states(api, batch) == {"@p:x": set(batch)}
    # Not sent during the callback: scheduled for the next reactor turn.
    assert api.sent == []
    [(msec, f, args, desc)] = api.delayed
    assert msec == 0 and desc == "wasm_presence_router_send_local_online_presence_to"
    asyncio.run(f(*args))
    assert api.sent == [["@w:x", "@p:x"]]


def test_a_failing_router_is_logged_under_the_module_logger_and_the_others_answer(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wasm_presence_router")
    _, api = load([{"name": "panic", "component": guest("hostile_panic")},
                   example(always_send_to_users=["@w:x"])])
    batch = [state("@a:x")]
    routes = users_for_states(api, batch)
    assert routes == {"@w:x": set(batch)}
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("wasm_presence_router", logging.WARNING,
            "router `panic`: hostile panic on a batch of 1 states") in records
    skipped = [m for _, _, m in records if m.startswith("router `panic` skipped for this call (trap)")]
    assert len(skipped) == 1, records


@pytest.mark.parametrize("callback,argument,nothing", [
    ("get_users_for_states", [], {}), ("get_interested_users", "@w:x", set())])
def test_a_cancelled_request_is_passed_on_and_an_unexpected_error_is_not(
        callback: str, argument: Any, nothing: Any, caplog: pytest.LogCaptureFixture) -> None:
    # A router that sleeps longer than its slice in both callbacks: every
    # call is finished on Synapse's thread pool.
    _, api = load([{"name": "sleeper", "component": guest("hostile_sleeper"),
                    "config": {"via": "sleep", "ms": 50,
                               "in": ["get-users-for-states", "get-interested-users"]}}])

    async def cancelled(*_: Any) -> None:
        raise CancelledError()

    api.defer_to_thread = cancelled  # type: ignore[method-assign]
    with pytest.raises(CancelledError):
        answer_of(api.callbacks[callback](argument))
    assert caplog.records == []

    async def broken(*_: Any) -> None:
        raise RuntimeError("the thread pool is gone")

    api.defer_to_thread = broken  # type: ignore[method-assign]
    # Synapse would skip the module (and its ALL_USERS path would miss
    # entries): the failure is logged and an empty answer given instead.
    assert answer_of(api.callbacks[callback](argument)) == nothing
    assert "the thread pool is gone" in caplog.text


def test_a_guest_log_line_keeps_its_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wasm_presence_router")
    _, api = load([{"name": "scripted", "component": guest("scripted")}])
    users_for_states(api, [state("@send:test")])
    assert ("wasm_presence_router", logging.INFO,
            "router `scripted`: sent presence to two users") in [
        (r.name, r.levelno, r.getMessage()) for r in caplog.records]


def test_a_malformed_state_is_left_out_with_a_warning_and_the_rest_routed(
        caplog: pytest.LogCaptureFixture) -> None:
    _, api = load([example(always_send_to_users=["@w:x"])])
    good = state("@a:x")
    bad = attr.evolve(state("@b:x"), last_active_ts=None)
    routes = users_for_states(api, [bad, good])
    assert routes == {"@w:x": {good}}
    assert ("presence state 0 of the batch was not routed: "
            "`last_active_ts` is NoneType, not an integer (user @b:x)") in caplog.messages

    class NoStatus:
        user_id, state, last_active_ts = "@c:x", "online", 1
        last_federation_update_ts = last_user_sync_ts = 0
        currently_active = False

    # A state without a field.
    caplog.clear()
    assert users_for_states(api, [good, NoStatus()]) == {"@w:x": {good}}
    assert ("presence state 1 of the batch was not routed: it has no `status_msg` (user @c:x)"
            in caplog.messages)


@pytest.mark.parametrize("config,path,message", [
    ({"routers": [{"component": "x.wasm", "limits": {"memory": "lots"}}]},
     ("routers", "<item 0>", "limits", "memory"), "expected a size"),
    ({"routers": [{"component": "/nonexistent/x.wasm"}]},
     ("routers", "<item 0>", "component"), "router `x`: cannot load /nonexistent/x.wasm"),
    ({"routers": [{"name": "ex", "component": "EXAMPLE", "config": {"blacklisted_users": 3}}]},
     ("routers", "<item 0>", "config"), "router `ex` refused its configuration: blacklisted_users"),
    ({"routers": [], "cache": "yes"}, ("cache",), "expected true or false"),
    ({"routers": [], "cache": False, "cache_dir": "/tmp"}, ("cache_dir",), "contradict"),
    ({"routes": []}, ("routes",), "unknown field `routes`"),
])
def test_a_bad_config_is_a_config_error_with_the_path_of_the_bad_key(
        config: dict, path: tuple, message: str) -> None:
    for router in config.get("routers", []):
        if router["component"] == "EXAMPLE":
            router["component"] = guest("example_router")
    with pytest.raises(ConfigError) as raised:
        WasmPresenceRouter.parse_config(config)
    assert tuple(raised.value.path or ()) == path
    assert message in raised.value.msg, raised.value.msg


def test_an_unusable_cache_directory_is_logged_and_the_routers_still_load(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    _, api = load([example(always_send_to_users=["@w:x"])], cache_dir=str(blocker / "cache"))
    assert interested_users(api, "@w:x") == PRESENCE_ALL_USERS
    # The runtime's own warning (from Rust's `tracing`), under the module's
    # logger.
    [warning] = [r for r in caplog.records if r.getMessage().startswith(
        f"compiled-component cache {blocker / 'cache'} unusable, compiling instead")]
    assert (warning.name, warning.levelno) == ("wasm_presence_router", logging.WARNING)


def test_wasm_runs_with_the_gil_released() -> None:
    """While one thread waits on a router that burns its whole 3 s time budget,
    another thread runs Python. With the GIL held through the call, the
    other thread could only run once the call was over, 3 s in."""
    _, api = load([{"name": "sleeper", "component": guest("hostile_sleeper"),
                    "limits": {"timeout": "3s", "fuel": 10**12}}])
    marks: Dict[str, float] = {}
    started = threading.Event()

    def call() -> None:
        marks["call_start"] = time.monotonic()
        started.set()
        users_for_states(api, [state("@a:x")])
        marks["call_end"] = time.monotonic()

    caller = threading.Thread(target=call)
    caller.start()
    started.wait()
    time.sleep(0.1)
    marks["python_ran"] = time.monotonic()
    caller.join()
    since_start = {k: round(v - marks["call_start"], 3) for k, v in marks.items()}
    assert since_start["call_end"] >= 3.0, since_start
    # 0.1 s in, give or take the scheduler: nowhere near the 3 s.
    assert since_start["python_ran"] < 2.0, since_start


def test_a_relative_component_path_is_resolved_once_by_parse_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Synapse reads its configuration in one working directory; a
    daemonizing Synapse then changes it (to `/`) and loads the routers again
    in `__init__`. Both loads must find the same files."""
    component = Path(guest("example_router"))
    monkeypatch.chdir(component.parent)
    relative_cache_dir = os.path.relpath(CACHE_DIR)
    config = WasmPresenceRouter.parse_config({
        "routers": [{"name": "example", "component": component.name,
                     "config": {"always_send_to_users": ["@w:x"]}}],
        "cache_dir": relative_cache_dir,
    })
    [router] = json.loads(config.routers_json)["routers"]
    assert router["component"] == str(component)
    assert config.cache_dir == str(component.parent / relative_cache_dir)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # As after Synapse forked: `__init__` loads the routers again.
    config.loaded_by_pid = -1
    api = FakeModuleApi()
    WasmPresenceRouter(config, api)
    assert config.loaded_by_pid == os.getpid()
    batch = [state("@a:x")]
    assert users_for_states(api, batch) == {"@w:x": set(batch)}


def test_after_a_fork_the_module_loads_again_and_routes() -> None:
    """Synapse daemonizes after reading its config: the child must not use
    the parent's compiler threads or time-budget watchdog. The cache is off, so
    the child really compiles (a wait on the parent's thread pool would
    hang it: the parent kills it after 60 s)."""
    config = WasmPresenceRouter.parse_config(
        {"routers": [example(always_send_to_users=["@w:x"])], "cache": False})
    parents = config.routers
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            api = FakeModuleApi()
            WasmPresenceRouter(config, api)
            batch = [state("@a:x")]
            fresh = config.routers is not parents
            ok = users_for_states(api, batch) == {"@w:x": set(batch)}
            os.write(write_end, f"fresh={fresh} routed={ok}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 60)
        answer = os.read(read_end, 100).decode() if ready else "timed out"
    finally:
        os.close(read_end)
        if not ready:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert answer == "fresh=True routed=True"


def test_a_deep_copied_config_loads_a_working_module() -> None:
    # Synapse's own test harness deep-copies module configurations.
    import copy
    config = WasmPresenceRouter.parse_config(
        {"routers": [example(always_send_to_users=["@w:x"])], "cache_dir": CACHE_DIR})
    copied = copy.deepcopy(config)
    assert copied is not config and copied.routers is config.routers
    api = FakeModuleApi()
    WasmPresenceRouter(copied, api)
    assert set(users_for_states(api, [state("@a:x")])) == {"@w:x"}


def test_the_module_api_is_taken_as_synapse_passes_it() -> None:
    config = WasmPresenceRouter.parse_config(
        {"routers": [example(always_send_to_users=["@w:x"])], "cache_dir": CACHE_DIR})
    for construct in (
        lambda api: WasmPresenceRouter(config, api),             # Synapse's module loader
        lambda api: WasmPresenceRouter(config=config, api=api),  # its unit-test harness
        lambda api: WasmPresenceRouter(config=config, module_api=api),  # the legacy slot
    ):
        api = FakeModuleApi()
        construct(api)
        assert set(users_for_states(api, [state("@a:x")])) == {"@w:x"}
    with pytest.raises(TypeError):
        WasmPresenceRouter(config)
    with pytest.raises(TypeError):
        WasmPresenceRouter(config, FakeModuleApi(), module_api=FakeModuleApi())


def test_each_calls_log_lines_come_back_with_that_call() -> None:
    # Two threads route at once; each call's lines are its own, whichever
    # finishes first (they used to be drained by the next call to finish).
    config = WasmPresenceRouter.parse_config({"routers": [
        {"name": "scripted", "component": guest("scripted"), "config": {"log_calls": True}}],
        "cache_dir": CACHE_DIR})
    native = config.routers
    native.take_events()
    results: Dict[str, List[str]] = {}

    def route(user: str) -> None:
        lines: List[str] = []
        for _ in range(50):
            # A state that can't be read names its user in this call's lines.
            malformed = attr.evolve(state(user), last_active_ts=None)
            events = native.get_users_for_states([malformed, state("@ok:x")]).events
            lines.append(" | ".join(message for _, message in events))
        results[user] = lines

    threads = [threading.Thread(target=route, args=(user,)) for user in ("@one:x", "@two:x")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for user, other in (("@one:x", "@two:x"), ("@two:x", "@one:x")):
        assert len(results[user]) == 50
        for call in results[user]:
            assert user in call and other not in call, call
            assert call.count("router `scripted`: get-users-for-states with 1 states") == 1, call
    assert native.take_events() == []


REAL_REACTOR_SCRIPT = r'''
import json, os, sys, threading
import attr
from synapse.module_api import UserPresenceState
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from wasm_presence_router import WasmPresenceRouter

class Api:
    class _Hs:
        @staticmethod
        def get_reactor():
            return reactor
    _hs = _Hs()
    thread_calls = 0
    def register_presence_router_callbacks(self, **callbacks):
        self.callbacks = callbacks
    async def defer_to_thread(self, f, *args):
        Api.thread_calls += 1
        return f(*args)
    def delayed_background_call(self, *args, **kwargs):
        pass
    def looping_background_call(self, *args, **kwargs):
        pass

config = WasmPresenceRouter.parse_config(json.loads(sys.argv[1]))
api = Api()
router = WasmPresenceRouter(config, api)
batch = [attr.evolve(UserPresenceState.default(f"@u{i}:x"), state="online") for i in range(500)]
out = {}

async def main():
    # Too big for the reactor: finished by the module's worker threads.
    routes = await api.callbacks["get_users_for_states"](batch)
    out["routed"] = routes == {"@w:x": set(batch)}
    out["thread_calls"] = Api.thread_calls
    out["pending_jobs"] = router._routers.pending_jobs()
    out["counters"] = router._routers.counters()
    # A thread names itself once it runs: one the system has not run yet
    # still has its parent's name. Wait for both (however busy the machine).
    import time
    deadline = time.monotonic() + 60
    while True:
        out["workers"] = sorted(
            name for name in (thread_name(t) for t in os.listdir("/proc/self/task"))
            if name.startswith("pr-offload"))
        if len(out["workers"]) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

def thread_name(task):
    try:
        return open(f"/proc/self/task/{task}/comm").read().strip()
    except OSError:  # the thread ended meanwhile
        return ""

def run():
    d = ensureDeferred(main())
    d.addErrback(lambda f: out.setdefault("error", f.getTraceback()))
    d.addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(run)
reactor.run()
print(json.dumps(out))
'''


def test_on_a_real_reactor_big_batches_are_finished_by_the_modules_own_threads() -> None:
    """Where Synapse's reactor is the process's real one, a call too big for
    the reactor goes to the module's worker threads (not Synapse's thread
    pool), and the reactor is woken through their socket to answer it."""
    import subprocess
    import sys
    config = {"routers": [example(always_send_to_users=["@w:x"])], "cache_dir": CACHE_DIR}
    here = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", REAL_REACTOR_SCRIPT, json.dumps(config)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here / "e2e")])})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in out, out["error"]
    assert out == {"routed": True, "thread_calls": 0, "pending_jobs": 0,
                   "counters": [0, 0, 1], "workers": ["pr-offload-0", "pr-offload-1"]}
