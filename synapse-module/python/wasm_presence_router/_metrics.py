"""The routers' figures on Synapse's ``/_synapse/metrics``.

Synapse serves prometheus_client's default ``REGISTRY``. One collector is
registered there per process, the first time a module is made, and reads
every live module's ``RouterSet.stats_json()`` at scrape time: counting
stays in the runtime's atomics (a few relaxed additions per call), and a
scrape costs one snapshot per module, not a Python call per routed batch.

Synapse's unit-test harness makes many homeservers in one process, and one
Synapse may load the module twice (``modules:`` and the legacy slot):
modules are held weakly, each one's series carry its homeserver's
``server_name`` label (Synapse's convention, ``SERVER_NAME_LABEL``), and the
series of routers of the same name on the same homeserver are added up, so
a scrape never holds the same series twice.

The names are the runtime's (``crates/runtime/src/stats.rs``, ``names``);
``docs/synapse.md`` ("Metrics") lists them, and
``docs/grafana-dashboard.json`` is a dashboard over them.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from typing import Any, Dict, Iterable, List, Optional, Tuple

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
try:
    from prometheus_client.registry import Collector
except ImportError:  # prometheus_client before 0.14: a collector is any object with collect()
    Collector = object  # type: ignore[misc,assignment]
from prometheus_client.utils import floatToGoString

logger = logging.getLogger(__name__)

# Synapse's `synapse.metrics.SERVER_NAME_LABEL`, spelt out: importing
# synapse.metrics here would start Synapse's own collectors in a process
# that only loads the module (its tests, the benchmarks).
SERVER_NAME_LABEL = "server_name"

# `names::*` of crates/runtime/src/stats.rs, then the module's own.
CALLS = "wasm_presence_router_calls_total"
FAILURES = "wasm_presence_router_failures_total"
SKIPPED_SUSPENDED = "wasm_presence_router_skipped_suspended_total"
SUSPENSIONS = "wasm_presence_router_suspensions_total"
SUSPENDED = "wasm_presence_router_suspended"
CALL_DURATION = "wasm_presence_router_call_duration_seconds"
FUEL_USED_RATIO = "wasm_presence_router_fuel_used_ratio"
ANSWER_ENTRIES = "wasm_presence_router_answer_entries_total"
INSTANCES = "wasm_presence_router_instances"
RELOADS = "wasm_presence_router_reloads_total"
DROPPED = "wasm_presence_router_dropped_total"
LOG_BYTES = "wasm_presence_router_log_bytes_total"
SIGNATURE_REFUSALS = "wasm_presence_router_signature_refusals_total"
SLICE_CALLS = "wasm_presence_router_slice_calls_total"
SET_RELOADS = "wasm_presence_router_set_reloads_total"
SENDS_NOT_SENT = "wasm_presence_router_sends_not_sent_total"
CANARY_CALLS = "wasm_presence_router_canary_calls_total"
CANARY_STATE = "wasm_presence_router_canary_state"
CANARY_FUEL_RATIO = "wasm_presence_router_canary_fuel_ratio"

CALLBACKS = ("get_users_for_states", "get_interested_users")
# `slices` of stats_json, in the order of `RouterSet.counters()`.
SLICE_WHERE = ("in_slice", "slice_used_up", "handed_off")
RELOAD_OUTCOMES = ("ok", "failed")
# `SignatureRefusal::REASONS` of crates/runtime/src/signature.rs.
SIGNATURE_REASONS = ("unsigned", "changed", "other_key", "unknown_key", "unreadable")
# What a canary's shadow calls came to, and where its trial stands.
CANARY_OUTCOMES = ("agreed", "diverged", "failed", "skipped")
CANARY_STATES = ("on_trial", "promoted", "rejected")

_ROUTER = ["router", SERVER_NAME_LABEL]
_CALLBACK = ["router", "callback", SERVER_NAME_LABEL]


class _Histogram:
    """A histogram of the runtime: per-bucket counts (not cumulative), the
    last one above every bound."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: List[float], counts: List[int], total: float):
        self.bounds = bounds
        self.counts = counts
        self.total = total

    @classmethod
    def parse(cls, value: Any, what: str) -> "_Histogram":
        bounds = [_number(b, f"{what}.bounds") for b in _list(value["bounds"], f"{what}.bounds")]
        counts = [_count(c, f"{what}.counts") for c in _list(value["counts"], f"{what}.counts")]
        if len(counts) != len(bounds) + 1:
            raise ValueError(f"{what}: {len(counts)} counts for {len(bounds)} bounds")
        if any(a >= b for a, b in zip(bounds, bounds[1:])):
            raise ValueError(f"{what}: bounds not ascending: {bounds}")
        return cls(bounds, counts, _number(value["sum"], f"{what}.sum"))

    def add(self, other: "_Histogram") -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.total += other.total

    def buckets(self) -> List[Tuple[str, float]]:
        """Prometheus' cumulative buckets, `+Inf` last (equal to the count)."""
        cumulative: List[Tuple[str, float]] = []
        seen = 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts):
            seen += count
            cumulative.append((floatToGoString(bound), seen))
        return cumulative


class _Callback:
    __slots__ = ("calls", "failures", "skipped_suspended", "answer_entries", "duration", "fuel")

    def __init__(self, value: Any, what: str):
        self.calls = _count(value["calls"], f"{what}.calls")
        self.failures: Dict[str, int] = {}
        for pair in _list(value["failures"], f"{what}.failures"):
            kind, n = _list(pair, f"{what}.failures")
            if not isinstance(kind, str):
                raise ValueError(f"{what}.failures: kind {kind!r} is not a string")
            self.failures[kind] = self.failures.get(kind, 0) + _count(n, f"{what}.failures")
        self.skipped_suspended = _count(value["skipped_suspended"], f"{what}.skipped_suspended")
        self.answer_entries = _count(value["answer_entries"], f"{what}.answer_entries")
        self.duration = _Histogram.parse(value["duration_seconds"], f"{what}.duration_seconds")
        self.fuel = _Histogram.parse(value["fuel_used_ratio"], f"{what}.fuel_used_ratio")

    def compatible(self, other: "_Callback") -> bool:
        return (self.duration.bounds == other.duration.bounds
                and self.fuel.bounds == other.fuel.bounds)

    def add(self, other: "_Callback") -> None:
        self.calls += other.calls
        for kind, n in other.failures.items():
            self.failures[kind] = self.failures.get(kind, 0) + n
        self.skipped_suspended += other.skipped_suspended
        self.answer_entries += other.answer_entries
        self.duration.add(other.duration)
        self.fuel.add(other.fuel)


# `stats::Dropped` of crates/runtime/src/stats.rs: what a limit dropped, as
# (what, limit) labels.
DROPPED_LABELS = {
    "log_lines_per_call": ("log_lines", "max_log_lines"),
    "log_lines_per_second": ("log_lines", "log_bytes_per_second"),
    "send_calls_per_call": ("send_calls", "max_send_calls"),
    "send_users_per_call": ("send_users", "max_send_users"),
    "send_users_per_second": ("send_users", "send_users_per_second"),
}


class _Router:
    __slots__ = ("callbacks", "suspended", "suspensions", "warm", "live", "reloads",
                 "failed_reloads", "signature_refusals", "log_bytes", "dropped")

    def __init__(self, value: Any, what: str):
        self.callbacks = {cb: _Callback(value[cb], f"{what}.{cb}") for cb in CALLBACKS}
        suspended = value["suspended"]
        if not isinstance(suspended, bool):
            raise ValueError(f"{what}.suspended: {suspended!r} is not a boolean")
        self.suspended = int(suspended)
        self.suspensions = _count(value["suspensions"], f"{what}.suspensions")
        self.warm = _count(value["warm_instances"], f"{what}.warm_instances")
        self.live = _count(value["live_instances"], f"{what}.live_instances")
        self.reloads = _count(value["reloads"], f"{what}.reloads")
        self.failed_reloads = _count(value["failed_reloads"], f"{what}.failed_reloads")
        self.signature_refusals: Dict[str, int] = {}
        for entry in _list(value["signature_refusals"], f"{what}.signature_refusals"):
            reason, n = entry
            if reason in SIGNATURE_REASONS:
                self.signature_refusals[reason] = _count(
                    n, f"{what}.signature_refusals.{reason}")
        self.log_bytes = _count(value["log_bytes"], f"{what}.log_bytes")
        self.dropped: Dict[str, int] = {}
        for entry in _list(value["dropped"], f"{what}.dropped"):
            name, n = entry
            if name in DROPPED_LABELS:
                self.dropped[name] = _count(n, f"{what}.dropped.{name}")

    def compatible(self, other: "_Router") -> bool:
        return all(self.callbacks[cb].compatible(other.callbacks[cb]) for cb in CALLBACKS)

    def add(self, other: "_Router") -> None:
        for cb in CALLBACKS:
            self.callbacks[cb].add(other.callbacks[cb])
        # Routers of one name in two modules: how many of them are
        # suspended, and their instances together.
        self.suspended += other.suspended
        self.suspensions += other.suspensions
        self.warm += other.warm
        self.live += other.live
        self.reloads += other.reloads
        self.failed_reloads += other.failed_reloads
        for reason, n in other.signature_refusals.items():
            self.signature_refusals[reason] = self.signature_refusals.get(reason, 0) + n
        self.log_bytes += other.log_bytes
        for name, n in other.dropped.items():
            self.dropped[name] = self.dropped.get(name, 0) + n


class _Canary:
    """One router's canary: its shadow calls per outcome, its state."""

    __slots__ = ("outcomes", "state", "fuel_ratio")

    def __init__(self, value: Any, what: str):
        self.outcomes = [_count(value[o], f"{what}.{o}") for o in CANARY_OUTCOMES]
        decision = value["decision"]
        state = "on_trial" if decision is None else decision
        if state not in CANARY_STATES:
            raise ValueError(f"{what}.decision: {decision!r}")
        self.state = state
        ratio = value["fuel_ratio"]
        self.fuel_ratio = None if ratio is None else _number(ratio, f"{what}.fuel_ratio")

    def add(self, other: "_Canary") -> None:
        self.outcomes = [a + b for a, b in zip(self.outcomes, other.outcomes)]


class _Set:
    """One RouterSet's `stats_json()`, checked."""

    __slots__ = ("routers", "canaries", "slices", "set_reloads")

    def __init__(self, text: str):
        value = json.loads(text)
        self.routers: Dict[str, _Router] = {}
        for i, router in enumerate(_list(value["routers"], "routers")):
            name = router["router"]
            if not isinstance(name, str):
                raise ValueError(f"routers[{i}].router: {name!r} is not a string")
            if name in self.routers:
                raise ValueError(f"routers[{i}]: router `{name}` twice")
            self.routers[name] = _Router(router, f"routers[{i}] (`{name}`)")
        self.canaries: Dict[str, _Canary] = {}
        for i, canary in enumerate(_list(value["canaries"], "canaries")):
            name = canary["router"]
            if not isinstance(name, str) or name in self.canaries:
                raise ValueError(f"canaries[{i}].router: {name!r}")
            self.canaries[name] = _Canary(canary, f"canaries[{i}] (`{name}`)")
        self.slices = [_count(value["slices"][w], f"slices.{w}") for w in SLICE_WHERE]
        self.set_reloads = [_count(value["set_reloads"][o], f"set_reloads.{o}")
                            for o in RELOAD_OUTCOMES]


class _Server:
    """What the modules of one homeserver come to."""

    def __init__(self) -> None:
        self.routers: Dict[str, _Router] = {}
        self.canaries: Dict[str, _Canary] = {}
        self.slices = [0] * len(SLICE_WHERE)
        self.set_reloads = [0] * len(RELOAD_OUTCOMES)
        self.sends_not_sent = 0
        # RouterSets already counted: modules may share one (Synapse's test
        # harness copies a parsed configuration, and the copy shares its
        # loaded routers).
        self.sets: set = set()

    def compatible(self, stats: _Set) -> bool:
        return all(self.routers[name].compatible(router)
                   for name, router in stats.routers.items() if name in self.routers)

    def add(self, stats: _Set) -> None:
        for name, router in stats.routers.items():
            if name in self.routers:
                self.routers[name].add(router)
            else:
                self.routers[name] = router
        for name, canary in stats.canaries.items():
            if name in self.canaries:
                self.canaries[name].add(canary)
            else:
                self.canaries[name] = canary
        self.slices = [a + b for a, b in zip(self.slices, stats.slices)]
        self.set_reloads = [a + b for a, b in zip(self.set_reloads, stats.set_reloads)]


def _list(value: Any, what: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{what}: {value!r} is not a list")
    return value


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{what}: {value!r} is not a count")
    return value


def _number(value: Any, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{what}: {value!r} is not a number")
    return float(value)


class _Entry:
    __slots__ = ("server_name", "warned")

    def __init__(self, server_name: str):
        self.server_name = server_name
        # Whether a warning was logged since its stats were last read: a
        # module that can't be read is skipped with one warning, not one
        # per scrape.
        self.warned = False


class RouterMetricsCollector(Collector):
    """A prometheus_client collector over the modules it was given (held
    weakly). ``collect`` never raises: a module whose stats can't be read
    is left out of that scrape."""

    def __init__(self) -> None:
        # Scrapes may run on another thread than the one making modules
        # (Synapse's `metrics` listener serves from its own thread).
        self._lock = threading.Lock()
        self._modules: "weakref.WeakKeyDictionary[Any, _Entry]" = weakref.WeakKeyDictionary()

    def add(self, module: Any, server_name: str) -> None:
        with self._lock:
            self._modules[module] = _Entry(server_name)

    def describe(self) -> Iterable[Any]:
        # The names, with no samples: registering the collector twice, or
        # beside another with these names, fails at once.
        return list(self._families().values())

    def collect(self) -> Iterable[Any]:
        servers = self._read()
        f = self._families()
        for server_name, server in servers.items():
            for name, router in server.routers.items():
                for cb, stats in router.callbacks.items():
                    labels = [name, cb, server_name]
                    f[CALLS].add_metric(labels, stats.calls)
                    for kind, n in stats.failures.items():
                        f[FAILURES].add_metric([name, cb, kind, server_name], n)
                    f[SKIPPED_SUSPENDED].add_metric(labels, stats.skipped_suspended)
                    f[ANSWER_ENTRIES].add_metric(labels, stats.answer_entries)
                    f[CALL_DURATION].add_metric(
                        labels, stats.duration.buckets(), stats.duration.total)
                    f[FUEL_USED_RATIO].add_metric(labels, stats.fuel.buckets(), stats.fuel.total)
                f[SUSPENSIONS].add_metric([name, server_name], router.suspensions)
                f[SUSPENDED].add_metric([name, server_name], router.suspended)
                f[INSTANCES].add_metric([name, "warm", server_name], router.warm)
                f[INSTANCES].add_metric([name, "live", server_name], router.live)
                f[RELOADS].add_metric([name, "ok", server_name], router.reloads)
                f[RELOADS].add_metric([name, "failed", server_name], router.failed_reloads)
                for reason, n in router.signature_refusals.items():
                    f[SIGNATURE_REFUSALS].add_metric([name, reason, server_name], n)
                f[LOG_BYTES].add_metric([name, server_name], router.log_bytes)
                for dropped, n in router.dropped.items():
                    what, limit = DROPPED_LABELS[dropped]
                    f[DROPPED].add_metric([name, what, limit, server_name], n)
            for name, canary in server.canaries.items():
                for outcome, n in zip(CANARY_OUTCOMES, canary.outcomes):
                    f[CANARY_CALLS].add_metric([name, outcome, server_name], n)
                for state in CANARY_STATES:
                    f[CANARY_STATE].add_metric([name, state, server_name],
                                               1 if canary.state == state else 0)
                if canary.fuel_ratio is not None:
                    f[CANARY_FUEL_RATIO].add_metric([name, server_name], canary.fuel_ratio)
            for where, n in zip(SLICE_WHERE, server.slices):
                f[SLICE_CALLS].add_metric([where, server_name], n)
            for outcome, n in zip(RELOAD_OUTCOMES, server.set_reloads):
                f[SET_RELOADS].add_metric([outcome, server_name], n)
            f[SENDS_NOT_SENT].add_metric([server_name], server.sends_not_sent)
        return list(f.values())

    def _read(self) -> Dict[str, _Server]:
        with self._lock:
            modules = list(self._modules.items())
        servers: Dict[str, _Server] = {}
        for module, entry in modules:
            server = servers.setdefault(entry.server_name, _Server())
            try:
                routers = module._routers
                stats: Optional[_Set] = None
                if id(routers) not in server.sets:
                    stats = _Set(routers.stats_json())
                    if not server.compatible(stats):
                        raise ValueError("histogram bounds differ from another module's")
                not_sent = getattr(module, "sends_not_sent", 0)
                if not isinstance(not_sent, int):
                    not_sent = 0
            except Exception as e:
                # Never into the scrape: it would fail every other metric
                # of the process with it.
                level = logging.DEBUG if entry.warned else logging.WARNING
                entry.warned = True
                logger.log(level, "metrics: the routers of a module on %s can't be read, "
                           "left out of the scrape: %s: %s",
                           entry.server_name or "(no server_name)", type(e).__name__, e)
                continue
            entry.warned = False
            server.sends_not_sent += not_sent
            if stats is not None:
                server.sets.add(id(routers))
                server.add(stats)
        return servers

    @staticmethod
    def _families() -> Dict[str, Any]:
        """Every family, empty, in exposition order."""
        kind = ["router", "callback", "kind", SERVER_NAME_LABEL]
        families = [
            CounterMetricFamily(CALLS, "Calls a router ran, answered or failed.",
                                labels=_CALLBACK),
            CounterMetricFamily(FAILURES, "Failed calls of a router, per kind.", labels=kind),
            CounterMetricFamily(SKIPPED_SUSPENDED, "Calls that skipped a router because it "
                                "was suspended.", labels=_CALLBACK),
            CounterMetricFamily(ANSWER_ENTRIES, "Entries of a router's answers.",
                                labels=_CALLBACK),
            HistogramMetricFamily(CALL_DURATION, "Duration of a router's calls.",
                                  labels=_CALLBACK),
            HistogramMetricFamily(FUEL_USED_RATIO, "Fuel a call used, as a fraction of its "
                                  "budget.", labels=_CALLBACK),
            CounterMetricFamily(SUSPENSIONS, "Times a router was suspended.", labels=_ROUTER),
            GaugeMetricFamily(SUSPENDED, "Whether a router is suspended now (1), or how "
                              "many of that name are.", labels=_ROUTER),
            GaugeMetricFamily(INSTANCES, "A router's instances: warm (waiting in its pool) "
                              "and live (warm or out on a call).",
                              labels=["router", "state", SERVER_NAME_LABEL]),
            CounterMetricFamily(RELOADS, "New versions of a router swapped in (ok) or "
                                "refused (failed).",
                                labels=["router", "outcome", SERVER_NAME_LABEL]),
            CounterMetricFamily(SIGNATURE_REFUSALS, "New versions of a router refused for "
                                "their signature, per reason (of the failed reloads).",
                                labels=["router", "reason", SERVER_NAME_LABEL]),
            CounterMetricFamily(LOG_BYTES, "Bytes of a router's log lines logged (escaped).",
                                labels=_ROUTER),
            CounterMetricFamily(DROPPED, "What a router asked of the host that a limit "
                                "dropped: log lines, send calls, users sent to.",
                                labels=["router", "what", "limit", SERVER_NAME_LABEL]),
            CounterMetricFamily(SLICE_CALLS, "Module calls answered on the reactor within "
                                "their slice (in_slice), whose slice a router used up "
                                "(slice_used_up), and finished off the reactor (handed_off).",
                                labels=["where", SERVER_NAME_LABEL]),
            CounterMetricFamily(SET_RELOADS, "Reloads of a module's router configuration, "
                                "done (ok) or refused (failed).",
                                labels=["outcome", SERVER_NAME_LABEL]),
            CounterMetricFamily(CANARY_CALLS, "A router's canary's shadow calls: answers "
                                "that agreed with the live version's, diverged, calls that "
                                "failed, and sampled calls skipped.",
                                labels=["router", "outcome", SERVER_NAME_LABEL]),
            GaugeMetricFamily(CANARY_STATE, "Where a router's canary stands: 1 for its "
                              "state (on_trial, promoted or rejected), 0 for the others.",
                              labels=["router", "state", SERVER_NAME_LABEL]),
            GaugeMetricFamily(CANARY_FUEL_RATIO, "A canary's mean fuel per call against "
                              "the live version's on the same calls.", labels=_ROUTER),
            CounterMetricFamily(SENDS_NOT_SENT, "Routers' send_local_online_presence_to "
                                "asked on a process that doesn't write presence, not sent.",
                                labels=[SERVER_NAME_LABEL]),
        ]
        # A counter family drops `_total` from its name (its sample adds it).
        return {family.name + ("_total" if family.type == "counter" else ""): family
                for family in families}


_COLLECTOR = RouterMetricsCollector()
_registered_on: Optional[CollectorRegistry] = None
_register_lock = threading.Lock()


def register_module(module: Any, server_name: str,
                    registry: CollectorRegistry = REGISTRY) -> None:
    """Adds a module's routers to the process's collector, which is
    registered on ``registry`` the first time. Never raises: metrics are
    no reason to stop Synapse."""
    global _registered_on
    with _register_lock:
        if _registered_on is None:
            try:
                registry.register(_COLLECTOR)
            except ValueError as e:
                # Another collector already has these names (a second copy
                # of this package in the process?): keep running unmeasured.
                logger.warning("metrics: the routers' metrics can't be registered: %s", e)
                return
            _registered_on = registry
    _COLLECTOR.add(module, server_name)
