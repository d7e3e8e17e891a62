"""What a hostile but valid router beside the example router costs Synapse's
reactor and the example router's answers, on a real Twisted reactor with
Synapse's own `UserPresenceState`, each call awaited through the module's
registered callback the way Synapse awaits it, in one run.

    synapse-module/e2e/setup.sh                  # the venv with Synapse
    target/toolchains/synapse-venv/bin/maturin build --release \\
        -m synapse-module/Cargo.toml --out target/wheels/release
    target/toolchains/synapse-venv/bin/python -m pip install --force-reinstall \\
        --no-deps target/wheels/release/wasm_presence_router-*.whl
    target/toolchains/synapse-venv/bin/python benches/synapse/attacks.py

It prints:

1. the reactor thread's CPU time per call, the example router alone and
   with each attacker beside it, and the difference (the target: at most
   2 ms per call on average, whatever the attacker answers);
2. one-state batches at 40 a second for 10 seconds with the slow attacker
   (300,000 routes aliasing one user, tens of milliseconds of lifting per
   call on a worker, valid under limits its operator raised) beside the
   example router: batch latency p50/p99/max, batches answered without
   the example router's routes (target: none), and whether the attacker was
   suspended (target: yes; p99 at most 250 ms).
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path
from typing import Any, List

import attr
from synapse.module_api import UserPresenceState
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, ensureDeferred

sys.path[:0] = [str(Path(__file__).resolve().parent),
                str(Path(__file__).resolve().parents[2] / "synapse-module")]
from calls import BenchApi  # noqa: E402
from built_guests import CACHE_DIR, guest  # noqa: E402

from wasm_presence_router import WasmPresenceRouter  # noqa: E402

EXAMPLE = {"name": "example", "component": "example_router",
           "config": {"always_send_to_users": ["@w:x"]}}


def module(*routers: dict) -> BenchApi:
    api = BenchApi()
    resolved = [{**r, "component": guest(r["component"])} for r in routers]
    config = WasmPresenceRouter.parse_config({"routers": resolved, "cache_dir": CACHE_DIR})
    WasmPresenceRouter(config, api)
    return api


def batch(n: int, tag: str = "") -> List[UserPresenceState]:
    return [attr.evolve(UserPresenceState.default(f"@u{i}{tag}:x"), state="online")
            for i in range(n)]


def ms(seconds: float) -> str:
    if abs(seconds) < 1e-3:
        return f"{seconds * 1e6:,.1f} µs"
    return f"{seconds * 1e3:,.2f} ms"


async def reactor_cpu(api: BenchApi, states: List[UserPresenceState], calls: int) -> float:
    """The reactor thread's CPU time per call, calls one after another
    (waiting for the workers is not the reactor's CPU)."""
    callback = api.callbacks["get_users_for_states"]
    await callback(states)
    gc.collect()
    cpu = time.thread_time()
    for _ in range(calls):
        await callback(states)
    return (time.thread_time() - cpu) / calls


ATTACKERS = [
    ("60,000 entries of distinct sets per call (300 users × 199 states)", 200,
     {"name": "costly", "component": "hostile_costly",
      "config": {"mode": "distinct-routes", "n": 300}}),
    ("13,800 entries of distinct sets per call, within the default bound", 200,
     {"name": "costly", "component": "hostile_costly",
      "config": {"mode": "distinct-routes", "n": 69}}),
    ("136 users each routed a different half of the batch, within the default bound", 200,
     {"name": "costly", "component": "hostile_costly",
      "config": {"mode": "half-routes", "n": 136}}),
    ("500 users routed the one state (valid, in the slice)", 1,
     {"name": "costly", "component": "hostile_costly",
      "config": {"mode": "distinct-routes", "n": 500}}),
    ("300,000 routes aliasing one user, bound raised by its operator", 1,
     {"name": "slicer", "component": "hostile_slicer",
      "config": {"mode": "routes", "n": 300_000},
      "limits": {"answer_entries_per_state": 1_000_000}}),
    ("64 log lines of 1 KiB of control characters per call", 1,
     {"name": "costly", "component": "hostile_costly",
      "config": {"mode": "control-logs", "k": 64}}),
    ("1,000 new users sent presence per call", 1,
     {"name": "costly", "component": "hostile_costly",
      "config": {"mode": "sends", "n": 1000}}),
]


async def cpu_per_call() -> None:
    print("| attacker beside the example router | batch | reactor CPU per call: "
          "example alone | with the attacker | added |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, size, attacker in ATTACKERS:
        states = batch(size)
        calls = 200 if size == 1 else 50
        alone = await reactor_cpu(module(EXAMPLE), states, calls)
        beside = await reactor_cpu(module(EXAMPLE, attacker), states, calls)
        print(f"| {label} | {size} | {ms(alone)} | {ms(beside)} | {ms(beside - alone)} |")


async def latency_under_the_slow_attacker(rate: int = 40, seconds: int = 10) -> None:
    slicer = {"name": "slicer", "component": "hostile_slicer",
              "config": {"mode": "routes", "n": 300_000},
              "limits": {"answer_entries_per_state": 1_000_000}}
    api = module(slicer, EXAMPLE)
    callback = api.callbacks["get_users_for_states"]
    native = callback.__self__._routers
    latencies: List[float] = []
    without_example = 0
    waiting: List[Deferred] = []

    async def one(i: int) -> None:
        nonlocal without_example
        states = batch(1, tag=f"_{i}")
        start = time.perf_counter()
        routes = await callback(states)
        latencies.append(time.perf_counter() - start)
        if routes.get("@w:x") != set(states):
            without_example += 1

    total = rate * seconds
    for i in range(total):
        waiting.append(ensureDeferred(one(i)))
        await task.deferLater(reactor, 1 / rate, lambda: None)
    for d in waiting:
        await d
    latencies.sort()
    stats = {r["router"]: r for r in json.loads(native.stats_json())["routers"]}
    slicer_stats = stats["slicer"]
    failures = dict(slicer_stats["get_users_for_states"]["failures"])
    print(f"\n| one-state batches at {rate}/s for {seconds} s, the slow attacker beside the "
          f"example router | value |")
    print("| --- | ---: |")
    print(f"| batches | {total} |")
    print(f"| batch latency p50 | {ms(latencies[len(latencies) // 2])} |")
    print(f"| batch latency p99 | {ms(latencies[int(len(latencies) * 0.99)])} |")
    print(f"| batch latency max | {ms(latencies[-1])} |")
    print(f"| batches without the example router's routes | {without_example} |")
    print(f"| attacker suspensions | {slicer_stats['suspensions']} |")
    print(f"| attacker calls answered / failed (timeout) / skipped while suspended | "
          f"{slicer_stats['get_users_for_states']['calls'] - sum(failures.values())} / "
          f"{failures.get('timeout', 0)} / "
          f"{slicer_stats['get_users_for_states']['skipped_suspended']} |")
    print(f"| jobs left waiting | {native.pending_jobs()} |")


async def main() -> None:
    await cpu_per_call()
    await latency_under_the_slow_attacker()


def run() -> None:
    def done(result: Any) -> None:
        reactor.stop()
        return result

    reactor.callWhenRunning(lambda: ensureDeferred(main()).addBoth(done))
    reactor.run()


if __name__ == "__main__":
    run()
