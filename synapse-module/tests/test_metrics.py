"""The module's Prometheus export (`wasm_presence_router/_metrics.py`)
without a Synapse process: the exposition of a stats snapshot, to the
byte; one collector per process whatever the number of modules; modules
held weakly; a module whose stats can't be read left out of the scrape,
never failing it.

The e2e test (`test_metrics_of_a_running_synapse_...` in e2e/test_e2e.py)
scrapes a real Synapse. Run by `synapse-module/e2e/run.sh`.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

import attr
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from synapse.module_api import UserPresenceState

from built_guests import CACHE_DIR, guest
from callback_answer import answer_of
from wasm_presence_router import WasmPresenceRouter, _metrics
from wasm_presence_router._metrics import RouterMetricsCollector

KINDS = ["out_of_fuel", "timeout", "memory", "trap", "invalid_answer"]


def callback_stats(calls: int, failures: Dict[str, int], skipped: int, entries: int,
                   duration: Tuple[List[int], float], fuel: Tuple[List[int], float]) -> dict:
    """A CallbackStats as `RouterSet.stats_json()` serializes it (small
    bucket lists: the collector takes the bounds it is given)."""
    return {
        "calls": calls,
        "failures": [[kind, failures.get(kind, 0)] for kind in KINDS],
        "skipped_suspended": skipped,
        "answer_entries": entries,
        "duration_seconds": {"bounds": [0.001, 0.01], "counts": duration[0],
                             "count": sum(duration[0]), "sum": duration[1]},
        "fuel_used_ratio": {"bounds": [0.5, 1.0], "counts": fuel[0],
                            "count": sum(fuel[0]), "sum": fuel[1]},
    }


def router_stats(name: str = "example", calls: int = 3, suspended: bool = True) -> dict:
    return {
        "router": name,
        "get_users_for_states": callback_stats(
            calls, {"timeout": 1}, 2, 5, ([1, 1, 1], 0.0125), ([2, 0, 0], 0.25)),
        "get_interested_users": callback_stats(
            1, {}, 0, 0, ([1, 0, 0], 0.0005), ([1, 0, 0], 0.125)),
        "suspended": suspended, "suspensions": 1,
        "warm_instances": 1, "live_instances": 2, "reloads": 3, "failed_reloads": 1,
        "signature_refusals": [["unsigned", 1], ["changed", 0], ["other_key", 0],
                               ["unknown_key", 0], ["unreadable", 0]],
        "log_bytes": 2048,
        "dropped": [["log_lines_per_call", 1], ["log_lines_per_second", 2],
                    ["send_calls_per_call", 0], ["send_users_per_call", 3],
                    ["send_users_per_second", 4]],
    }


def set_stats(*routers: dict, canaries: Optional[List[dict]] = None) -> str:
    return json.dumps({
        "routers": list(routers),
        "canaries": canaries or [],
        "slices": {"in_slice": 10, "slice_used_up": 1, "handed_off": 2},
        "set_reloads": {"ok": 4, "failed": 1},
    })


class FakeRouterSet:
    """What the collector reads of a module's `_native.RouterSet`."""

    def __init__(self, stats: Callable[[], str]):
        self.stats = stats

    def stats_json(self) -> str:
        return self.stats()


class FakeModule:
    def __init__(self, stats: Callable[[], str], sends_not_sent: Optional[Any] = None):
        self._routers = FakeRouterSet(stats)
        if sends_not_sent is not None:
            self.sends_not_sent = sends_not_sent


def private_collector() -> Tuple[RouterMetricsCollector, CollectorRegistry]:
    collector = RouterMetricsCollector()
    registry = CollectorRegistry()
    registry.register(collector)
    return collector, registry


def scrape(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(got: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in got, f"no {name}{labels} in {sorted(k for k in got if k[0] == name)}"
    return got[key]


EXPECTED = """\
# HELP wasm_presence_router_calls_total Calls a router ran, answered or failed.
# TYPE wasm_presence_router_calls_total counter
wasm_presence_router_calls_total{callback="get_users_for_states",router="example",server_name="hs.one"} 3.0
wasm_presence_router_calls_total{callback="get_interested_users",router="example",server_name="hs.one"} 1.0
# HELP wasm_presence_router_failures_total Failed calls of a router, per kind.
# TYPE wasm_presence_router_failures_total counter
wasm_presence_router_failures_total{callback="get_users_for_states",kind="out_of_fuel",router="example",server_name="hs.one"} 0.0
wasm_presence_router_failures_total{callback="get_users_for_states",kind="timeout",router="example",server_name="hs.one"} 1.0
wasm_presence_router_failures_total{callback="get_users_for_states",kind="memory",router="example",server_name="hs.one"} 0.0
wasm_presence_router_failures_total{callback="get_users_for_states",kind="trap",router="example",server_name="hs.one"} 0.0
wasm_presence_router_failures_total{callback="get_users_for_states",kind="invalid_answer",router="example",server_name="hs.one"} 0.0
wasm_presence_router_failures_total{callback="get_interested_users",kind="out_of_fuel",router="example",server_name="hs.one"} 0.0
wasm_presence_router_failures_total{callback="get_interested_users",kind="timeout",router="example",server_name="hs.one"} 0.0
wasm_presence_router_failures_total{callback="get_interested_users",kind="memory",router="example",server_name="hs.one"} 0.0
wasm_presence_router_failures_total{callback="get_interested_users",kind="trap",router="example",server_name="hs.one"} 0.0
wasm_presence_router_failures_total{callback="get_interested_users",kind="invalid_answer",router="example",server_name="hs.one"} 0.0
# HELP wasm_presence_router_skipped_suspended_total Calls that skipped a router because it was suspended.
# TYPE wasm_presence_router_skipped_suspended_total counter
wasm_presence_router_skipped_suspended_total{callback="get_users_for_states",router="example",server_name="hs.one"} 2.0
wasm_presence_router_skipped_suspended_total{callback="get_interested_users",router="example",server_name="hs.one"} 0.0
# HELP wasm_presence_router_answer_entries_total Entries of a router's answers.
# TYPE wasm_presence_router_answer_entries_total counter
wasm_presence_router_answer_entries_total{callback="get_users_for_states",router="example",server_name="hs.one"} 5.0
wasm_presence_router_answer_entries_total{callback="get_interested_users",router="example",server_name="hs.one"} 0.0
# HELP wasm_presence_router_call_duration_seconds Duration of a router's calls.
# TYPE wasm_presence_router_call_duration_seconds histogram
wasm_presence_router_call_duration_seconds_bucket{callback="get_users_for_states",le="0.001",router="example",server_name="hs.one"} 1.0
wasm_presence_router_call_duration_seconds_bucket{callback="get_users_for_states",le="0.01",router="example",server_name="hs.one"} 2.0
wasm_presence_router_call_duration_seconds_bucket{callback="get_users_for_states",le="+Inf",router="example",server_name="hs.one"} 3.0
wasm_presence_router_call_duration_seconds_count{callback="get_users_for_states",router="example",server_name="hs.one"} 3.0
wasm_presence_router_call_duration_seconds_sum{callback="get_users_for_states",router="example",server_name="hs.one"} 0.0125
wasm_presence_router_call_duration_seconds_bucket{callback="get_interested_users",le="0.001",router="example",server_name="hs.one"} 1.0
wasm_presence_router_call_duration_seconds_bucket{callback="get_interested_users",le="0.01",router="example",server_name="hs.one"} 1.0
wasm_presence_router_call_duration_seconds_bucket{callback="get_interested_users",le="+Inf",router="example",server_name="hs.one"} 1.0
wasm_presence_router_call_duration_seconds_count{callback="get_interested_users",router="example",server_name="hs.one"} 1.0
wasm_presence_router_call_duration_seconds_sum{callback="get_interested_users",router="example",server_name="hs.one"} 0.0005
# HELP wasm_presence_router_fuel_used_ratio Fuel a call used, as a fraction of its budget.
# TYPE wasm_presence_router_fuel_used_ratio histogram
wasm_presence_router_fuel_used_ratio_bucket{callback="get_users_for_states",le="0.5",router="example",server_name="hs.one"} 2.0
wasm_presence_router_fuel_used_ratio_bucket{callback="get_users_for_states",le="1.0",router="example",server_name="hs.one"} 2.0
wasm_presence_router_fuel_used_ratio_bucket{callback="get_users_for_states",le="+Inf",router="example",server_name="hs.one"} 2.0
wasm_presence_router_fuel_used_ratio_count{callback="get_users_for_states",router="example",server_name="hs.one"} 2.0
wasm_presence_router_fuel_used_ratio_sum{callback="get_users_for_states",router="example",server_name="hs.one"} 0.25
wasm_presence_router_fuel_used_ratio_bucket{callback="get_interested_users",le="0.5",router="example",server_name="hs.one"} 1.0
wasm_presence_router_fuel_used_ratio_bucket{callback="get_interested_users",le="1.0",router="example",server_name="hs.one"} 1.0
wasm_presence_router_fuel_used_ratio_bucket{callback="get_interested_users",le="+Inf",router="example",server_name="hs.one"} 1.0
wasm_presence_router_fuel_used_ratio_count{callback="get_interested_users",router="example",server_name="hs.one"} 1.0
wasm_presence_router_fuel_used_ratio_sum{callback="get_interested_users",router="example",server_name="hs.one"} 0.125
# HELP wasm_presence_router_suspensions_total Times a router was suspended.
# TYPE wasm_presence_router_suspensions_total counter
wasm_presence_router_suspensions_total{router="example",server_name="hs.one"} 1.0
# HELP wasm_presence_router_suspended Whether a router is suspended now (1), or how many of that name are.
# TYPE wasm_presence_router_suspended gauge
wasm_presence_router_suspended{router="example",server_name="hs.one"} 1.0
# HELP wasm_presence_router_instances A router's instances: warm (waiting in its pool) and live (warm or out on a call).
# TYPE wasm_presence_router_instances gauge
wasm_presence_router_instances{router="example",server_name="hs.one",state="warm"} 1.0
wasm_presence_router_instances{router="example",server_name="hs.one",state="live"} 2.0
# HELP wasm_presence_router_reloads_total New versions of a router swapped in (ok) or refused (failed).
# TYPE wasm_presence_router_reloads_total counter
wasm_presence_router_reloads_total{outcome="ok",router="example",server_name="hs.one"} 3.0
wasm_presence_router_reloads_total{outcome="failed",router="example",server_name="hs.one"} 1.0
# HELP wasm_presence_router_signature_refusals_total New versions of a router refused for their signature, per reason (of the failed reloads).
# TYPE wasm_presence_router_signature_refusals_total counter
wasm_presence_router_signature_refusals_total{reason="unsigned",router="example",server_name="hs.one"} 1.0
wasm_presence_router_signature_refusals_total{reason="changed",router="example",server_name="hs.one"} 0.0
wasm_presence_router_signature_refusals_total{reason="other_key",router="example",server_name="hs.one"} 0.0
wasm_presence_router_signature_refusals_total{reason="unknown_key",router="example",server_name="hs.one"} 0.0
wasm_presence_router_signature_refusals_total{reason="unreadable",router="example",server_name="hs.one"} 0.0
# HELP wasm_presence_router_log_bytes_total Bytes of a router's log lines logged (escaped).
# TYPE wasm_presence_router_log_bytes_total counter
wasm_presence_router_log_bytes_total{router="example",server_name="hs.one"} 2048.0
# HELP wasm_presence_router_dropped_total What a router asked of the host that a limit dropped: log lines, send calls, users sent to.
# TYPE wasm_presence_router_dropped_total counter
wasm_presence_router_dropped_total{limit="max_log_lines",router="example",server_name="hs.one",what="log_lines"} 1.0
wasm_presence_router_dropped_total{limit="log_bytes_per_second",router="example",server_name="hs.one",what="log_lines"} 2.0
wasm_presence_router_dropped_total{limit="max_send_calls",router="example",server_name="hs.one",what="send_calls"} 0.0
wasm_presence_router_dropped_total{limit="max_send_users",router="example",server_name="hs.one",what="send_users"} 3.0
wasm_presence_router_dropped_total{limit="send_users_per_second",router="example",server_name="hs.one",what="send_users"} 4.0
# HELP wasm_presence_router_slice_calls_total Module calls answered on the reactor within their slice (in_slice), whose slice a router used up (slice_used_up), and finished off the reactor (handed_off).
# TYPE wasm_presence_router_slice_calls_total counter
wasm_presence_router_slice_calls_total{server_name="hs.one",where="in_slice"} 10.0
wasm_presence_router_slice_calls_total{server_name="hs.one",where="slice_used_up"} 1.0
wasm_presence_router_slice_calls_total{server_name="hs.one",where="handed_off"} 2.0
# HELP wasm_presence_router_set_reloads_total Reloads of a module's router configuration, done (ok) or refused (failed).
# TYPE wasm_presence_router_set_reloads_total counter
wasm_presence_router_set_reloads_total{outcome="ok",server_name="hs.one"} 4.0
wasm_presence_router_set_reloads_total{outcome="failed",server_name="hs.one"} 1.0
# HELP wasm_presence_router_canary_calls_total A router's canary's shadow calls: answers that agreed with the live version's, diverged, calls that failed, and sampled calls skipped.
# TYPE wasm_presence_router_canary_calls_total counter
# HELP wasm_presence_router_canary_state Where a router's canary stands: 1 for its state (on_trial, promoted or rejected), 0 for the others.
# TYPE wasm_presence_router_canary_state gauge
# HELP wasm_presence_router_canary_fuel_ratio A canary's mean fuel per call against the live version's on the same calls.
# TYPE wasm_presence_router_canary_fuel_ratio gauge
# HELP wasm_presence_router_sends_not_sent_total Routers' send_local_online_presence_to asked on a process that doesn't write presence, not sent.
# TYPE wasm_presence_router_sends_not_sent_total counter
wasm_presence_router_sends_not_sent_total{server_name="hs.one"} 7.0
"""


def test_the_names_are_the_runtimes() -> None:
    """The runtime's `names` (what its `metrics` facade records, and what
    the CLI and docs call them) are the names exported here."""
    import re
    from pathlib import Path

    stats_rs = Path(__file__).resolve().parents[2] / "crates" / "runtime" / "src" / "stats.rs"
    names = dict(re.findall(r'pub const (\w+): &str = "([a-z_]+)";', stats_rs.read_text()))
    assert len(names) == 13, names
    for constant, name in names.items():
        assert getattr(_metrics, constant) == name, constant


def test_a_stats_snapshot_is_exposed_as_exactly_this_text() -> None:
    """Counters named as the runtime names them (`_total` once), the
    runtime's per-bucket counts made cumulative with `+Inf` equal to
    `_count`, every label Synapse's convention and the docs promise."""
    collector, registry = private_collector()
    module = FakeModule(lambda: set_stats(router_stats()), sends_not_sent=7)
    collector.add(module, "hs.one")
    assert scrape(registry) == EXPECTED


def test_a_canary_is_exposed_by_outcome_and_state_and_adds_up_per_router() -> None:
    collector, registry = private_collector()
    canary = {"router": "example", "agreed": 7, "diverged": 2, "failed": 1, "skipped": 3,
              "fuel_ratio": 1.25, "decision": None}
    rejected = {**canary, "decision": "rejected", "fuel_ratio": None}
    one = FakeModule(lambda: set_stats(router_stats(), canaries=[canary]))
    two = FakeModule(lambda: set_stats(router_stats(), canaries=[rejected]))
    collector.add(one, "hs.one")
    collector.add(two, "hs.two")
    got = samples(scrape(registry))
    for outcome, n in (("agreed", 7), ("diverged", 2), ("failed", 1), ("skipped", 3)):
        assert value(got, "wasm_presence_router_canary_calls_total", router="example",
                     outcome=outcome, server_name="hs.one") == n
    assert value(got, "wasm_presence_router_canary_state", router="example",
                 state="on_trial", server_name="hs.one") == 1
    assert value(got, "wasm_presence_router_canary_state", router="example",
                 state="rejected", server_name="hs.one") == 0
    assert value(got, "wasm_presence_router_canary_state", router="example",
                 state="rejected", server_name="hs.two") == 1
    assert value(got, "wasm_presence_router_canary_fuel_ratio", router="example",
                 server_name="hs.one") == 1.25
    assert ("wasm_presence_router_canary_fuel_ratio",
            frozenset({"router": "example", "server_name": "hs.two"}.items())) not in got
    # A canary whose decision is not a state is a module left out.
    broken = FakeModule(lambda: set_stats(router_stats(),
                                          canaries=[{**canary, "decision": "maybe"}]))
    collector.add(broken, "hs.three")
    assert not any(name.startswith("wasm_presence_router_canary")
                   and dict(labels).get("server_name") == "hs.three"
                   for name, labels in samples(scrape(registry)))


def test_an_empty_collector_exposes_no_series() -> None:
    _, registry = private_collector()
    text = scrape(registry)
    assert "# TYPE wasm_presence_router_calls_total counter" in text
    assert [line for line in text.splitlines() if not line.startswith("#")] == []


def test_routers_of_one_name_on_one_homeserver_add_up_and_a_shared_set_counts_once() -> None:
    """Two modules on one homeserver (`modules:` and the legacy slot) with a
    router of the same name make one series, their sum; a module sharing
    another's RouterSet (Synapse's test harness copies configurations) adds
    nothing; another homeserver's modules are its own series."""
    collector, registry = private_collector()
    first = FakeModule(lambda: set_stats(router_stats(calls=3)), sends_not_sent=1)
    second = FakeModule(lambda: set_stats(router_stats(calls=4, suspended=False),
                                          router_stats("other", calls=9)), sends_not_sent=2)
    sharing = FakeModule(lambda: "never read")
    sharing._routers = first._routers
    elsewhere = FakeModule(lambda: set_stats(router_stats(calls=5)))  # no sends_not_sent
    for module, server in ((first, "a"), (second, "a"), (sharing, "a"), (elsewhere, "b")):
        collector.add(module, server)
    got = samples(scrape(registry))
    states = "get_users_for_states"
    assert value(got, "wasm_presence_router_calls_total",
                 router="example", callback=states, server_name="a") == 7
    assert value(got, "wasm_presence_router_calls_total",
                 router="other", callback=states, server_name="a") == 9
    assert value(got, "wasm_presence_router_calls_total",
                 router="example", callback=states, server_name="b") == 5
    assert value(got, "wasm_presence_router_call_duration_seconds_bucket",
                 router="example", callback=states, server_name="a", le="0.01") == 4
    assert value(got, "wasm_presence_router_call_duration_seconds_sum",
                 router="example", callback=states, server_name="a") == 0.025
    # One of the two `example`s is suspended.
    assert value(got, "wasm_presence_router_suspended", router="example", server_name="a") == 1
    assert value(got, "wasm_presence_router_instances",
                 router="example", state="live", server_name="a") == 4
    assert value(got, "wasm_presence_router_slice_calls_total",
                 where="in_slice", server_name="a") == 20
    assert value(got, "wasm_presence_router_sends_not_sent_total", server_name="a") == 3
    assert value(got, "wasm_presence_router_sends_not_sent_total", server_name="b") == 0


@pytest.mark.parametrize("broken", [
    "raises", "not json", "missing key", "negative count", "counts and bounds disagree",
    "not an int sends_not_sent",
])
def test_a_module_whose_stats_cannot_be_read_is_left_out_with_one_warning(
        broken: str, caplog: pytest.LogCaptureFixture) -> None:
    collector, registry = private_collector()
    good = FakeModule(lambda: set_stats(router_stats("good")))
    calls = {"n": 0}

    def bad_stats() -> str:
        calls["n"] += 1
        if broken == "raises":
            raise RuntimeError("the extension is gone")
        if broken == "not json":
            return "{"
        stats = json.loads(set_stats(router_stats("bad")))
        if broken == "missing key":
            del stats["routers"][0]["get_interested_users"]
        elif broken == "negative count":
            stats["routers"][0]["get_users_for_states"]["calls"] = -1
        elif broken == "counts and bounds disagree":
            stats["routers"][0]["get_users_for_states"]["duration_seconds"]["counts"].pop()
        return json.dumps(stats)

    bad = FakeModule(bad_stats, sends_not_sent="lots" if broken.startswith("not an int") else 5)
    collector.add(bad, "hs")
    collector.add(good, "hs")
    caplog.set_level(logging.DEBUG, logger="wasm_presence_router")
    for _ in range(3):
        got = samples(scrape(registry))
        assert value(got, "wasm_presence_router_calls_total", router="good",
                     callback="get_users_for_states", server_name="hs") == 3
    assert calls["n"] == 3
    names = {labels for name, labels in got if name == "wasm_presence_router_calls_total"}
    if broken.startswith("not an int"):
        # A stray attribute counts 0; the routers are read.
        assert ("router", "bad") in {pair for labels in names for pair in labels}
        assert value(got, "wasm_presence_router_sends_not_sent_total", server_name="hs") == 0
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        return
    assert ("router", "bad") not in {pair for labels in names for pair in labels}
    assert value(got, "wasm_presence_router_sends_not_sent_total", server_name="hs") == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "can't be read, left out of the scrape" in warnings[0].getMessage()
    assert "on hs" in warnings[0].getMessage()


def test_a_module_that_reads_again_is_back_and_warned_about_again_if_it_breaks_again(
        caplog: pytest.LogCaptureFixture) -> None:
    collector, registry = private_collector()
    state = {"broken": True}

    def stats() -> str:
        if state["broken"]:
            raise RuntimeError("not now")
        return set_stats(router_stats())

    module = FakeModule(stats)  # held: the collector holds it weakly
    collector.add(module, "hs")
    caplog.set_level(logging.WARNING, logger="wasm_presence_router")
    scrape(registry)
    scrape(registry)
    state["broken"] = False
    assert "router=\"example\"" in scrape(registry)
    state["broken"] = True
    assert "router=\"example\"" not in scrape(registry)
    assert len(caplog.records) == 2


def test_a_garbage_collected_module_disappears_from_the_scrape() -> None:
    collector, registry = private_collector()
    kept = FakeModule(lambda: set_stats(router_stats("kept")))
    dropped = FakeModule(lambda: set_stats(router_stats("dropped")))
    collector.add(kept, "hs")
    collector.add(dropped, "hs")
    assert 'router="dropped"' in scrape(registry)
    del dropped
    gc.collect()
    text = scrape(registry)
    assert 'router="dropped"' not in text
    assert 'router="kept"' in text


# --------------------------------------------------------------------------
# The real module and extension, on prometheus_client's default registry
# --------------------------------------------------------------------------


class FakeModuleApi:
    """The ModuleApi methods a module uses while routing on this thread
    (scheduling does nothing: nothing here waits for it)."""

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name
        self.callbacks: Dict[str, Callable] = {}

    def register_presence_router_callbacks(self, **callbacks: Callable) -> None:
        self.callbacks = callbacks

    async def defer_to_thread(self, f: Callable, *args: Any) -> Any:
        return f(*args)

    def delayed_background_call(self, *args: Any, **kwargs: Any) -> None:
        pass

    def looping_background_call(self, *args: Any, **kwargs: Any) -> None:
        pass


def load(server_name: str) -> Tuple[WasmPresenceRouter, FakeModuleApi]:
    config = WasmPresenceRouter.parse_config({
        "routers": [{"name": "example", "component": guest("example_router"),
                     "config": {"always_send_to_users": ["@w:x"]}}],
        "cache_dir": CACHE_DIR,
    })
    api = FakeModuleApi(server_name)
    return WasmPresenceRouter(config, api), api


def route(api: FakeModuleApi, *user_ids: str) -> None:
    states = [attr.evolve(UserPresenceState.default(u), state="online") for u in user_ids]
    answer_of(api.callbacks["get_users_for_states"](iter(states)))


def our_collectors(registry: CollectorRegistry) -> List[Any]:
    # prometheus_client keeps its collectors in a private dict: no public
    # way to list them.
    return [c for c in registry._collector_to_names if isinstance(c, RouterMetricsCollector)]


def test_modules_register_one_collector_on_the_default_registry_and_report_real_counts(
        caplog: pytest.LogCaptureFixture) -> None:
    """Two modules (two homeservers in one process, as Synapse's test
    harness makes them): one collector on the registry Synapse serves, and
    each homeserver's calls under its own `server_name`, exactly as many as
    were made, from the extension's own `stats_json()`."""
    one, one_api = load("one.test")
    two, two_api = load("two.test")
    assert our_collectors(REGISTRY) == [_metrics._COLLECTOR]
    route(one_api, "@a:x")
    route(one_api, "@a:x", "@b:x")
    route(two_api, "@c:x")
    answer_of(one_api.callbacks["get_interested_users"]("@w:x"))
    caplog.set_level(logging.WARNING, logger="wasm_presence_router")
    got = samples(scrape(REGISTRY))
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert our_collectors(REGISTRY) == [_metrics._COLLECTOR]
    for server, states_calls, interest_calls in (("one.test", 2, 1), ("two.test", 1, 0)):
        for callback, calls in (("get_users_for_states", states_calls),
                                ("get_interested_users", interest_calls)):
            labels = {"router": "example", "callback": callback, "server_name": server}
            assert value(got, "wasm_presence_router_calls_total", **labels) == calls
            assert value(got, "wasm_presence_router_call_duration_seconds_count",
                         **labels) == calls
            assert value(got, "wasm_presence_router_fuel_used_ratio_count", **labels) == calls
            for kind in KINDS:
                assert value(got, "wasm_presence_router_failures_total",
                             kind=kind, **labels) == 0
        assert value(got, "wasm_presence_router_slice_calls_total",
                     where="in_slice", server_name=server) + value(
            got, "wasm_presence_router_slice_calls_total",
            where="handed_off", server_name=server) == states_calls + interest_calls
        assert value(got, "wasm_presence_router_suspended",
                     router="example", server_name=server) == 0
    # The example answers one route, to @w:x, of every state: an entry for
    # the route and one per index, (1 + 1) + (1 + 2).
    assert value(got, "wasm_presence_router_answer_entries_total", router="example",
                 callback="get_users_for_states", server_name="one.test") == 5
    del one, one_api, two, two_api
    gc.collect()
    assert 'server_name="one.test"' not in scrape(REGISTRY)
