"""What the module does for a router's answer is the router's to pay for.

A router that stays inside its fuel can still ask the host for work: an
answer that takes long to turn into Python sets, answers slow to lift that
fill the worker threads, log lines, sends. Each test here plays one such
router beside the example router and checks that the cost is bounded and
charged to it, never to the reactor or to the other router. Every figure is
CPU time of the calling thread (the reactor's), a count, or a bound that
grows with the time the test took: nothing depends on how busy the machine
is.
"""

from __future__ import annotations

import json
import logging
import select
import time
from typing import Any, Dict, List

import attr
import pytest
from synapse.module_api import UserPresenceState

from built_guests import guest
from test_module import load, users_for_states
from wasm_presence_router import WasmPresenceRouter, _native


def state(user_id: str) -> UserPresenceState:
    return attr.evolve(UserPresenceState.default(user_id), state="online")


def example() -> dict:
    return {"name": "example", "component": guest("example_router"),
            "config": {"always_send_to_users": ["@w:x"]}}


def costly(mode: str, limits: Dict[str, Any] = {}, **config: Any) -> dict:
    return {"name": "costly", "component": guest("hostile_costly"),
            "config": {"mode": mode, **config}, "limits": limits}


class Reactor:
    """Calls the module's native side as Synapse's reactor does: each call
    on this thread, the parts left unfinished on the module's worker
    threads, their answers taken here once the workers' socket is readable.
    `cpu` is this thread's CPU time spent on the calls, what the reactor
    paid (waiting for the workers is not counted: the reactor serves other
    requests meanwhile)."""

    def __init__(self, router: WasmPresenceRouter):
        self.native = router._routers
        self.cpu = 0.0

    def route(self, states: List[UserPresenceState]) -> Dict[str, set]:
        (answer,) = self.route_many([states])
        return answer

    def route_many(self, batches: List[List[UserPresenceState]]) -> List[Dict[str, set]]:
        """Routes the batches one after another without waiting for any,
        as a busy reactor does; then waits for all of them."""
        answers: Dict[int, Dict[str, set]] = {}
        jobs: Dict[int, int] = {}
        for i, states in enumerate(batches):
            start = time.thread_time()
            outcome = self.native.route_states(states)
            if isinstance(outcome, _native.Pending):
                self.native.submit(outcome.job)
                jobs[outcome.job] = i
            else:
                answers[i] = (outcome.value if isinstance(outcome, _native.Done)
                              else outcome.routes)
            self.cpu += time.thread_time() - start
        fd = self.native.offload_fileno() if jobs else -1
        while jobs:
            select.select([fd], [], [], 60)
            start = time.thread_time()
            for job, answer in self.native.take_finished():
                assert not isinstance(answer, BaseException), answer
                answers[jobs.pop(job)] = answer.routes
            self.cpu += time.thread_time() - start
        return [answers[i] for i in range(len(batches))]

    def stats(self, router: str) -> Dict[str, Any]:
        figures = json.loads(self.native.stats_json())
        return next(r for r in figures["routers"] if r["router"] == router)


def mean_reactor_cpu(routers: List[dict], batch: List[UserPresenceState], calls: int) -> float:
    router, _ = load(routers)
    reactor = Reactor(router)
    reactor.route(batch)  # warm up: worker threads started, caches filled
    reactor.cpu = 0.0
    for _ in range(calls):
        reactor.route(batch)
    return reactor.cpu / calls


def test_an_answer_costly_to_convert_adds_at_most_2_ms_of_reactor_cpu_per_call() -> None:
    """~300 users, each routed every state of a 200-state batch but one: a
    few thousand fuel, but 60,000 UserPresenceStates to hash into Python
    sets on the reactor, every call (10 to 13 ms of it before)."""
    batch = [state(f"@u{i}:x") for i in range(200)]
    alone = mean_reactor_cpu([example()], batch, calls=40)
    beside = mean_reactor_cpu([example(), costly("distinct-routes", n=290)], batch, calls=40)
    assert beside - alone <= 0.002, (alone, beside)


def test_an_answer_within_the_routers_bound_costs_the_reactor_little() -> None:
    """The largest answer the default bound lets through for a 200-state
    batch (1,024 + 64 per state = 13,824 entries), all distinct sets: what
    a router that stays valid can make the reactor convert per call."""
    batch = [state(f"@u{i}:x") for i in range(200)]
    alone = mean_reactor_cpu([example()], batch, calls=40)
    beside = mean_reactor_cpu([example(), costly("distinct-routes", n=69)], batch, calls=40)
    assert beside - alone <= 0.002, (alone, beside)


def test_answers_costly_to_hand_on_cost_the_reactor_at_most_2_ms_per_call_on_average() -> None:
    """~140 users, each routed a different half of a 200-state batch: valid
    under the answer bound, finished off the reactor (too many entries for
    a slice), and each set as costly to build from the whole batch's set as
    from nothing. Handing an answer on is paid for from the router's
    credit, earned per call: after its burst it is refused."""
    batch = [state(f"@u{i}:x") for i in range(200)]
    alone = mean_reactor_cpu([example()], batch, calls=80)
    beside = mean_reactor_cpu([example(), costly("half-routes", n=136)], batch, calls=80)
    assert beside - alone <= 0.002, (alone, beside)


def test_a_router_naming_new_users_every_call_costs_the_reactor_little_more() -> None:
    """The module keeps the answers' user IDs as Python strings, in one
    cache of at most 4,096 shared by every router: a router naming 500
    users never named before in every answer churns it (each a `str` made
    and kept, the cache emptied every few calls). Against the same router
    naming the same 500 users every call, that costs the reactor under
    2 ms per call, and the answers are whole."""
    batch = [state(f"@a{i}:x") for i in range(2)]
    same = mean_reactor_cpu([costly("distinct-routes", n=500)], batch, calls=100)
    new = mean_reactor_cpu([costly("new-users", n=500)], batch, calls=100)
    assert new - same <= 0.002, (same, new)
    router, _ = load([costly("new-users", n=500)])
    reactor = Reactor(router)
    for _ in range(10):
        [routes] = reactor.route_many([batch])
        assert len(routes) == 500 and all(user.startswith("@n") for user in routes)


def test_a_router_slow_to_answer_never_delays_or_drops_another_and_is_suspended() -> None:
    """300,000 routes aliasing one user and one index: a few dozen fuel, but
    tens of milliseconds of lifting on a worker each call, valid (its
    operator raised its answer bound). Beside it, the example router is
    answered on the reactor every time, never behind the slow router's
    calls; the slow router's calls, more than the workers can take, fail
    (its own queue is full, or it waited past its budget, or it used more
    than its share of the workers) until the failure policy suspends it."""
    slicer = {"name": "slicer", "component": guest("hostile_slicer"),
              "config": {"mode": "routes", "n": 300_000},
              "limits": {"answer_entries_per_state": 1_000_000, "timeout": "1s"}}
    router, _ = load([slicer, example()])
    reactor = Reactor(router)
    batches = [[state(f"@u{i}:x")] for i in range(120)]
    answers = reactor.route_many(batches)
    for i, routes in enumerate(answers):
        assert routes.get("@w:x") == set(batches[i]), (i, routes.keys())
    slicer_stats = reactor.stats("slicer")
    assert slicer_stats["suspensions"] >= 1, slicer_stats
    # The example router answered every call itself, none of them failed.
    example_stats = reactor.stats("example")
    states = example_stats["get_users_for_states"]
    assert states["calls"] == 120 and sum(n for _, n in states["failures"]) == 0, states
    # Nothing is left waiting.
    assert reactor.native.pending_jobs() == 0


def test_a_slow_router_never_makes_another_fail_for_the_workers_it_holds() -> None:
    """Batches over 200 states go to the worker threads for every router:
    a spinner's parts (its whole fuel each) hold a worker for as long as
    they run, yet the example router's parts are never failed for waiting,
    and one worker is always left for them."""
    router, _ = load([{"name": "spin", "component": guest("hostile_spin")}, example()])
    reactor = Reactor(router)
    batches = [[state(f"@u{i}_{j}:x") for j in range(201)] for i in range(8)]
    answers = reactor.route_many(batches)
    for i, routes in enumerate(answers):
        assert routes.get("@w:x") == set(batches[i]), (i, sorted(routes))
    states = reactor.stats("example")["get_users_for_states"]
    assert sum(n for _, n in states["failures"]) == 0, states


def test_an_interest_call_whose_first_pending_router_answers_all_users_is_answered() -> None:
    """Two routers with no warm instance (both trapped on the call before):
    both parts go to the workers; the first answers "all users", which
    makes the second's part unneeded while it may still be queued."""
    # One instance each: a trap leaves none warm.
    scripted = {"component": guest("scripted"), "limits": {"max_instances": 1}}
    router, _ = load([{**scripted, "name": "first",
                       "config": {"interested": {"@w:test": "all"}}},
                      {**scripted, "name": "second", "config": {}}])
    native = router._routers
    fd = native.offload_fileno()
    for round in range(20):
        # Both trap (the scripted router's `panic` command): no warm
        # instance is left for the call after.
        trapped = native.route_interest("@panic:test")
        if isinstance(trapped, _native.Pending):
            native.submit(trapped.job)
            select.select([fd], [], [], 30)
            native.take_finished()
        pending = native.route_interest("@w:test")
        assert isinstance(pending, _native.Pending), round
        native.submit(pending.job)
        answers: List[Any] = []
        while not answers:
            ready, _, _ = select.select([fd], [], [], 30)
            assert ready, f"round {round}: the job was never answered"
            answers = [a for job, a in native.take_finished() if job == pending.job]
        assert answers[0].all_users, round
    assert native.pending_jobs() == 0


def test_log_lines_are_held_to_64_kib_a_second_per_router_once_escaped(
        caplog: pytest.LogCaptureFixture) -> None:
    """64 lines of 1 KiB of control characters per call, six times as long
    once escaped: megabytes of log a second at a few calls a second."""
    router, api = load([example(), costly("control-logs", k=64)])
    caplog.set_level(logging.DEBUG, logger="wasm_presence_router")
    started = time.monotonic()
    for i in range(100):
        users_for_states(api, [state(f"@u{i}:x")])
    took = time.monotonic() - started
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("router `costly`: ")]
    logged = sum(len(line.encode()) for line in lines)
    # The router's own lines: one second's burst, then 64 KiB a second.
    budget = 64 * 1024 * (1 + took)
    assert logged <= budget + 64 * 200, (logged, budget, took)
    # Each line is capped once escaped (1 KiB, plus the note of what was cut).
    assert max(len(line.encode()) for line in lines) <= 1024 + 64, max(map(len, lines))
    dropped = dict(Reactor(router).stats("costly")["dropped"])
    assert dropped["log_lines_per_second"] > 0, dropped


def test_sends_are_held_to_their_cap_per_call_and_their_rate() -> None:
    """1,000 new user IDs per call, every call: each would be a database
    write or a federation send in Synapse."""
    router, api = load([example(), costly("sends", n=1000)])
    started = time.monotonic()
    for i in range(30):
        users_for_states(api, [state(f"@u{i}:x")])
    took = time.monotonic() - started
    scheduled = [args[0] for _, _, args, _ in api.delayed]
    assert all(len(users) <= 100 for users in scheduled), [len(u) for u in scheduled]
    # A burst of one call's 100, then 20 a second.
    total = sum(len(users) for users in scheduled)
    assert total <= 100 + 20 * took + 1, (total, took)
    dropped = dict(Reactor(router).stats("costly")["dropped"])
    assert dropped["send_users_per_call"] == 30 * (1000 - 100), dropped
    assert dropped["send_users_per_call"] + dropped["send_users_per_second"] + total \
        == 30 * 1000, (dropped, total)


def test_a_call_naming_more_users_than_its_answer_may_have_fails() -> None:
    """6,000 users in one call's sends, more than a one-state call's answer
    may have (1,088 entries): the call fails as it arrives, nothing is sent,
    and the failure policy suspends the router."""
    router, api = load([example(), costly("sends", n=6000)])
    for i in range(10):
        assert users_for_states(api, [state(f"@u{i}:x")]) == {"@w:x": {state(f"@u{i}:x")}}
    assert api.delayed == []
    stats = Reactor(router).stats("costly")
    assert dict(stats["get_users_for_states"]["failures"])["invalid_answer"] == 5, stats
    assert stats["suspensions"] == 1, stats
