#!/usr/bin/env python3
"""Times the documentation's Python presence router on the same batches as
the criterion benchmarks, and prints ns per state for wasm, native Rust and
CPython side by side, with the ratios.

Run the criterion benchmarks first (their estimates are read from
target/criterion), then this script:

    cargo bench -p presence-router-benches --bench routing
    python3 benches/synapse/python_router.py [--plot benches/ns-per-state.png]

The router is `ExamplePresenceRouter` from Synapse's documentation
(shared/seeds/presence_router_module.md), with the same configuration and
batches as `benches/routing.rs`: two users who get everything, two
blacklisted users, and one state in ten from a blacklisted user. The
documentation reads `update.state_key`, which `UserPresenceState` does not
have; `user_id` is what it means.
"""

import argparse
import json
import pathlib
import sys
import timeit
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Set

BATCH_SIZES = [1, 10, 100, 1000, 10000]
ROOT = pathlib.Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class UserPresenceState:
    """Synapse's UserPresenceState: immutable, compared and hashed on all fields."""

    user_id: str
    state: str
    last_active_ts: int
    last_federation_update_ts: int
    last_user_sync_ts: int
    status_msg: Optional[str]
    currently_active: bool


class PresenceRouterConfig:
    def __init__(self):
        self.always_send_to_users = []
        self.blacklisted_users = []


class ExamplePresenceRouter:
    """The documentation's example, as written there."""

    def __init__(self, config: PresenceRouterConfig):
        self._config = config

    @staticmethod
    def parse_config(config_dict: dict) -> PresenceRouterConfig:
        config = PresenceRouterConfig()
        config.always_send_to_users = config_dict.get("always_send_to_users")
        config.blacklisted_users = config_dict.get("blacklisted_users")
        return config

    async def get_users_for_states(
        self, state_updates: Iterable[UserPresenceState]
    ) -> Dict[str, Set[UserPresenceState]]:
        destination_users = {}
        desired_updates = set()
        for update in state_updates:
            if update.user_id not in self._config.blacklisted_users:
                desired_updates.add(update)
        for user_id in self._config.always_send_to_users:
            destination_users[user_id] = desired_updates
        return destination_users


def batch(n: int):
    """The batches of benches/routing.rs."""
    return [
        UserPresenceState(
            user_id="@mallory:example.com" if i % 10 == 0 else f"@user{i}:example.com",
            state="online",
            last_active_ts=1_700_000_000_000 + i,
            last_federation_update_ts=0,
            last_user_sync_ts=0,
            status_msg=None,
            currently_active=i % 2 == 0,
        )
        for i in range(n)
    ]


def run_coroutine(coroutine):
    """Drives a coroutine that never awaits, without an event loop's overhead
    (Synapse awaits the router inside Twisted; this measures the router)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the router awaited something")


def python_ns_per_state(n: int) -> float:
    router = ExamplePresenceRouter(
        ExamplePresenceRouter.parse_config(
            {
                "always_send_to_users": ["@alice:example.com", "@bob:example.com"],
                "blacklisted_users": ["@mallory:example.com", "@eve:example.org"],
            }
        )
    )
    states = batch(n)
    call = lambda: run_coroutine(router.get_users_for_states(states))  # noqa: E731
    number = max(1, 200_000 // n)
    best = min(timeit.repeat(call, number=number, repeat=7))
    return best / number / n * 1e9


def criterion_ns_per_state(kind: str, n: int) -> Optional[float]:
    estimates = ROOT / "target" / "criterion" / "users_for_states" / kind / str(n) / "new" / "estimates.json"
    try:
        with open(estimates) as f:
            figures = json.load(f)
    except (OSError, ValueError):
        return None
    # The estimate criterion prints: the slope where it sampled linearly.
    estimate = figures.get("slope") or figures.get("mean")
    return estimate["point_estimate"] / n if estimate else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plot", type=pathlib.Path, help="write a PNG of ns per state against batch size")
    args = parser.parse_args()

    rows = []
    for n in BATCH_SIZES:
        rows.append((n, criterion_ns_per_state("wasm", n), criterion_ns_per_state("native", n), python_ns_per_state(n)))
    if any(wasm is None for _, wasm, _, _ in rows):
        print("no criterion figures: run `cargo bench -p presence-router-benches --bench routing` first", file=sys.stderr)
        return 1

    print(f"CPython {sys.version.split()[0]}; wasm and native from target/criterion (same machine, same batches)")
    print(f"{'batch':>6} {'wasm ns/state':>14} {'native':>8} {'python':>8} {'wasm/native':>12} {'python/wasm':>12}")
    for n, wasm, native, python in rows:
        print(f"{n:>6} {wasm:>14.1f} {native:>8.1f} {python:>8.1f} {wasm / native:>11.1f}x {python / wasm:>11.2f}x")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        sizes = [n for n, *_ in rows]
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label, column, style in (("wasm (runtime)", 1, "o-"), ("native Rust", 2, "s-"), ("CPython 3.11", 3, "^-")):
            ax.plot(sizes, [row[column] for row in rows], style, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("states per batch")
        ax.set_ylabel("ns per state")
        ax.set_title("get-users-for-states, the example router")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
