"""What routing one batch costs inside Synapse's Python process: the wasm
module (the example router as a component) against the same router in
Python (the docs' `ExamplePresenceRouter`), on Synapse's own
`UserPresenceState` objects.

    synapse-module/e2e/run.sh tests -q          # builds and installs the wheel
    target/toolchains/synapse-venv/bin/python synapse-module/bench.py

Both are timed as Synapse awaits them, without the hop to the thread pool
(`defer_to_thread`), which the wasm module adds and the Python router
doesn't: it is measured on its own, on Twisted's real thread pool.
"""

from __future__ import annotations

import json
import sys
import timeit
from pathlib import Path

import attr
from synapse.module_api import UserPresenceState
from twisted.internet import reactor, threads

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "e2e")]
from built_guests import CACHE_DIR, guest  # noqa: E402
from example_presence_router import ExamplePresenceRouter  # noqa: E402

from wasm_presence_router import _native  # noqa: E402

CONFIG = {"always_send_to_users": ["@watcher:x"], "blacklisted_users": ["@hidden:x"]}


class _NoApi:
    def register_presence_router_callbacks(self, **_: object) -> None:
        pass


def batch(n: int) -> list:
    return [
        attr.evolve(UserPresenceState.default(f"@user{i}:x"), state="online",
                    last_active_ts=1_700_000_000_000 + i, status_msg=f"status {i}")
        for i in range(n)
    ]


def awaited(coroutine):
    """Runs a coroutine that never waits, as Synapse's await would: without
    an event loop's own cost (asyncio.run's is 0.2 ms and more)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the router waited")


def per_call(f, repeat: int = 7) -> float:
    """Best-of-`repeat` seconds per call."""
    number, _ = timeit.Timer(f).autorange()
    return min(timeit.repeat(f, number=number, repeat=repeat)) / number


def thread_hop() -> float:
    """Seconds per `deferToThread` round trip of a no-op, on the reactor."""
    n = 2000
    result: dict = {}

    async def hops() -> None:
        start = reactor.seconds()
        for _ in range(n):
            await threads.deferToThread(lambda: None)
        result["each"] = (reactor.seconds() - start) / n

    def run() -> None:
        from twisted.internet.defer import ensureDeferred

        ensureDeferred(hops()).addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(run)
    reactor.run()
    return result["each"]


def main() -> None:
    routers = {"routers": [
        {"name": "example", "component": guest("example_router"), "config": CONFIG}]}
    wasm = _native.RouterSet.load(
        json.dumps(routers), source="bench", base_dir=".", cache_dir=CACHE_DIR)
    python = ExamplePresenceRouter(ExamplePresenceRouter.parse_config(CONFIG), _NoApi())

    print("| batch | wasm module | Python router | wasm / Python |")
    print("| ---: | ---: | ---: | ---: |")
    for n in (1, 10, 100, 1000):
        states = batch(n)
        # The same answer from both, or the comparison means nothing.
        routes, _, _ = wasm.get_users_for_states(states)
        assert routes == awaited(python.get_users_for_states(states))
        w = per_call(lambda: wasm.get_users_for_states(states))
        p = per_call(lambda: awaited(python.get_users_for_states(states)))
        print(f"| {n} | {w * 1e6:.1f} µs | {p * 1e6:.1f} µs | {w / p:.2f}× |")
    wasm.take_events()
    # Where the wasm module's time goes at 1,000 states: reading Synapse's
    # objects (a set with no routers), then the routers' call.
    states = batch(1000)
    nobody = _native.RouterSet.load('{"routers": []}', source="bench", base_dir=".")
    print(f"\n1,000 states read, no router called: "
          f"{per_call(lambda: nobody.get_users_for_states(states)) * 1e6:.1f} µs; "
          f"a set of them built in Python: {per_call(lambda: set(states)) * 1e6:.1f} µs")
    print(f"\nthread-pool hop (deferToThread round trip): {thread_hop() * 1e6:.1f} µs")


if __name__ == "__main__":
    main()
