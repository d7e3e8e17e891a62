"""What a presence router costs inside Synapse's Python process: the wasm
module (the example router as a component) against the same router in
Python (the docs' `ExamplePresenceRouter`), on Synapse's own
`UserPresenceState` objects, each awaited through its registered callback
the way Synapse awaits it, on a real Twisted reactor, in one run.

    synapse-module/e2e/setup.sh                  # the venv with Synapse
    target/toolchains/synapse-venv/bin/maturin build --release \\
        -m synapse-module/Cargo.toml --out target/wheels/release
    target/toolchains/synapse-venv/bin/python -m pip install --force-reinstall \\
        --no-deps target/wheels/release/wasm_presence_router-*.whl
    target/toolchains/synapse-venv/bin/python benches/synapse/calls.py

It prints, as markdown tables with the ratios of the issue's targets:

1. latency per call (best of several rounds of many calls) and the reactor
   thread's CPU time per call, for one-state `get_users_for_states` and
   `get_interested_users` and batches of 100, 1,000 and 10,000 states: each
   callback awaited directly, then the same through Synapse's own
   `PresenceRouter` (what Synapse runs per call: its coroutine, its
   `delay_cancellation` around the module's answer, its merge);
2. the p50/p99 latency of one-state calls while other Python work keeps the
   reactor busy;
3. what a spinning (hostile) router costs the reactor: the CPU time of the
   call that finds out, and of the calls after it;
4. the Twisted thread-pool hop (`deferToThread`) the module no longer pays
   for small calls;
5. what a canary on trial costs the reactor per call: none, one that agrees
   on every call (each call drawn), one that spins on every call (its
   shadow calls on its own thread, skipped once its queue is full).

The Python router's answers and the wasm module's are checked equal first.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List

import attr
from synapse.events.presence_router import PresenceRouter
from synapse.module_api import UserPresenceState
from twisted.internet import reactor, task, threads
from twisted.internet.defer import ensureDeferred

MODULE = Path(__file__).resolve().parents[2] / "synapse-module"
sys.path[:0] = [str(MODULE), str(MODULE / "e2e")]
from built_guests import CACHE_DIR, guest  # noqa: E402
from example_presence_router import ExamplePresenceRouter  # noqa: E402

from wasm_presence_router import WasmPresenceRouter, _native  # noqa: E402

CONFIG = {"always_send_to_users": ["@watcher:x", "@auditor:x"],
          "blacklisted_users": ["@hidden:x"]}


class BenchApi:
    """The part of Synapse's ModuleApi the routers use, on the real reactor
    (the wasm module finds it where Synapse keeps it, `api._hs`)."""

    class _Homeserver:
        @staticmethod
        def get_reactor() -> Any:
            return reactor

    _hs = _Homeserver()

    def __init__(self) -> None:
        self.callbacks: Dict[str, Callable[..., Awaitable[Any]]] = {}

    def register_presence_router_callbacks(self, **callbacks: Any) -> None:
        self.callbacks = callbacks

    async def defer_to_thread(self, f: Callable[..., Any], *args: Any) -> Any:
        return await threads.deferToThread(f, *args)

    def delayed_background_call(self, *_: Any, **__: Any) -> None:
        pass


def python_router() -> BenchApi:
    api = BenchApi()
    router = ExamplePresenceRouter(ExamplePresenceRouter.parse_config(CONFIG), api)
    api.callbacks = {"get_users_for_states": router.get_users_for_states,
                     "get_interested_users": router.get_interested_users}
    return api


def wasm_module(router: dict) -> BenchApi:
    api = BenchApi()
    config = WasmPresenceRouter.parse_config({"routers": [router], "cache_dir": CACHE_DIR})
    WasmPresenceRouter(config, api)
    return api


def through_synapse(api: BenchApi) -> BenchApi:
    """The router behind Synapse's own `PresenceRouter`, as Synapse calls
    it."""
    router = PresenceRouter(None)  # type: ignore[arg-type]  # it reads no homeserver
    router.register_presence_router_callbacks(**api.callbacks)
    synapse = BenchApi()
    synapse.callbacks = {"get_users_for_states": router.get_users_for_states,
                         "get_interested_users": router.get_interested_users}
    return synapse


def batch(n: int) -> List[UserPresenceState]:
    return [
        attr.evolve(UserPresenceState.default(f"@user{i}:x"), state="online",
                    last_active_ts=1_700_000_000_000 + i, status_msg=f"status {i}")
        for i in range(n)
    ]


async def timed(call: Callable[[], Awaitable[Any]], calls: int, rounds: int = 5) -> tuple:
    """(seconds per call, reactor CPU seconds per call): the best round of
    `calls` awaited calls each, on the reactor."""
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        gc.collect()
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(calls):
            await call()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        best = min(best, (wall / calls, cpu / calls))
    return best


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


async def costs(python: BenchApi, wasm: BenchApi, how: str) -> None:
    print(f"\n{how}:\n")
    print("| call | wasm module | Python router | latency ratio | reactor CPU: wasm | Python "
          "| reactor CPU ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    cases: List[tuple] = []
    for n in (1, 100, 1000, 10000):
        states = batch(n)
        cases.append((f"`get_users_for_states`, {n:,} state{'s' if n > 1 else ''}",
                      "get_users_for_states", states, max(20, 20000 // n)))
    cases.insert(1, ("`get_interested_users`", "get_interested_users", "@user7:x", 20000))
    cases.insert(2, ("`get_interested_users`, an ALL_USERS user", "get_interested_users",
                     "@watcher:x", 20000))
    for label, callback, argument, calls in cases:
        w_cb, p_cb = wasm.callbacks[callback], python.callbacks[callback]
        # The same answer from both, or the comparison means nothing.
        assert await w_cb(argument) == await p_cb(argument), label
        w = await timed(lambda: w_cb(argument), calls)
        p = await timed(lambda: p_cb(argument), calls)
        print(f"| {label} | {us(w[0])} | {us(p[0])} | {w[0] / p[0]:.2f}× | {us(w[1])} "
              f"| {us(p[1])} | {w[1] / p[1]:.2f}× |")


async def busy_reactor(python: BenchApi, wasm: BenchApi) -> None:
    """One-state calls every millisecond while chunks of 2 ms of Python work
    keep the reactor busy."""
    busy = {"on": True}

    def chunk() -> None:
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass
        if busy["on"]:
            reactor.callLater(0, chunk)

    one = batch(1)
    print("\n| under a busy reactor, one-state `get_users_for_states` | p50 | p99 | max |")
    print("| --- | ---: | ---: | ---: |")
    results = {}
    reactor.callLater(0, chunk)
    for name, api in (("wasm module", wasm), ("Python router", python)):
        callback = api.callbacks["get_users_for_states"]
        latencies = []
        for _ in range(2000):
            start = time.perf_counter()
            await callback(one)
            latencies.append(time.perf_counter() - start)
            await task.deferLater(reactor, 0.001, lambda: None)
        latencies.sort()
        results[name] = latencies
        print(f"| {name} | {us(latencies[len(latencies) // 2])} "
              f"| {us(latencies[int(len(latencies) * 0.99)])} | {us(latencies[-1])} |")
    busy["on"] = False
    ratio = (results["wasm module"][int(2000 * 0.99)]
             / results["Python router"][int(2000 * 0.99)])
    print(f"\np99 ratio wasm / Python under a busy reactor: {ratio:.2f}×")


async def hostile() -> None:
    """What a router that spins costs the reactor: the call that finds out
    (its slice, then handing the call off), and the calls after it (handed
    off at once), in CPU time of the reactor thread."""
    api = wasm_module({"name": "spin", "component": guest("hostile_spin"),
                       "limits": {"timeout": "50ms"}})
    callback = api.callbacks["get_users_for_states"]
    native = callback.__self__._routers
    one = batch(1)
    # Start the worker threads first: a one-time cost, not the slice's.
    await callback(one)
    api = wasm_module({"name": "spin", "component": guest("hostile_spin"),
                       "limits": {"timeout": "50ms"}})
    native = api.callbacks["get_users_for_states"].__self__._routers
    cpu = []
    for _ in range(5):
        start = time.thread_time()
        pending = native.route_states(one)
        cpu.append(time.thread_time() - start)
        assert pending.__class__ is _native.Pending
        native.run_job(pending.job)
    print(f"\nA spinning router: the reactor's CPU time for the call that used its slice "
          f"up {us(cpu[0])}, then for each of the next four {', '.join(us(c) for c in cpu[1:])} "
          f"(handed off without trying; the spinner's own 50 ms timeout runs elsewhere)")


async def thread_hop() -> None:
    n = 2000
    start = time.perf_counter()
    for _ in range(n):
        await threads.deferToThread(lambda: None)
    print(f"\nTwisted thread-pool hop (deferToThread round trip of a no-op): "
          f"{us((time.perf_counter() - start) / n)}")


async def canaries(tmp: Path) -> None:
    """The reactor's CPU time per one-state call with a canary on trial,
    against none: the reactor only copies a drawn call for the canary's
    thread."""
    rebuilt = tmp / "example-rebuilt.wasm"
    body = bytes([len(b"rebuilt")]) + b"rebuilt" + b"x"
    rebuilt.write_bytes(Path(guest("example_router")).read_bytes() + bytes([0, len(body)]) + body)
    live = {"name": "example", "component": guest("example_router"), "config": CONFIG}
    on_trial = {"promote_after": 10**12, "max_divergent": 10**12, "max_failures": 10**12}
    variants = [
        ("no canary", wasm_module(live)),
        ("a canary that agrees, every call drawn",
         wasm_module({**live, "canary": {"component": str(rebuilt), **on_trial}})),
        ("a canary that agrees, a tenth of calls drawn",
         wasm_module({**live, "canary": {"component": str(rebuilt), "sample": 0.1,
                                         **on_trial}})),
        ("a canary that spins, every call drawn",
         wasm_module({**live, "canary": {"component": guest("hostile_spin"), "config": {},
                                         "limits": {"timeout": "50ms"}, **on_trial}})),
        ("a canary that spins, rejected at its first call",
         wasm_module({**live, "canary": {"component": guest("hostile_spin"), "config": {},
                                         "limits": {"timeout": "50ms"}}})),
    ]
    one = batch(1)
    print("\n| reactor CPU per one-state call | `get_users_for_states` | ratio "
          "| `get_interested_users` | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = None
    for label, api in variants:
        states_cb = api.callbacks["get_users_for_states"]
        interest_cb = api.callbacks["get_interested_users"]
        assert await states_cb(one) == await variants[0][1].callbacks[
            "get_users_for_states"](one), label
        s = (await timed(lambda: states_cb(one), 20000))[1]
        i = (await timed(lambda: interest_cb("@user7:x"), 20000))[1]
        if base is None:
            base = (s, i)
        print(f"| {label} | {us(s)} | {s / base[0]:.2f}× | {us(i)} | {i / base[1]:.2f}× |")


async def main() -> None:
    python = python_router()
    wasm = wasm_module({"name": "example", "component": guest("example_router"),
                        "config": CONFIG})
    await costs(python, wasm, "Each callback awaited directly")
    await costs(through_synapse(python), through_synapse(wasm),
                "Through Synapse's own `PresenceRouter`")
    await busy_reactor(python, wasm)
    await hostile()
    await thread_hop()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        await canaries(Path(tmp))


def run() -> None:
    outcome: Dict[str, Any] = {}

    def start() -> None:
        d = ensureDeferred(main())
        d.addErrback(lambda f: outcome.setdefault("failure", f))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run()
    if "failure" in outcome:
        outcome["failure"].raiseException()


if __name__ == "__main__":
    print(f"# {' '.join(sys.argv)} on {sys.platform}, Python {sys.version.split()[0]}, "
          f"load average {open('/proc/loadavg').read().split()[0]}\n")
    run()
