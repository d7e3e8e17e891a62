//! Fuel (`limits.fuel`, plus `limits.fuel_per_state` for each state of the
//! batch): what a call may compute. A guest that computes past it is
//! stopped and skipped as `out_of_fuel`, deterministically, whatever the
//! machine is doing. The host's work for a guest (each host call, and per
//! byte of what it reads or fills) is charged to the same fuel, so a guest
//! can't make the host work for it for free. (The host work a call tried in
//! a `Slice` may do: `slice.rs`.)

use presence_router_runtime::FailureKind;

use crate::support::{skipped_then_recovers, skipped_twice};

#[tokio::test]
async fn spin_runs_out_of_fuel() {
    skipped_twice(
        "HOSTILE_SPIN",
        "{}",
        "{fuel: 1000000, fuel_per_state: 0, timeout: 10s}",
        FailureKind::OutOfFuel,
        "ran out of fuel (budget 1000000)",
    )
    .await;
}

#[tokio::test]
async fn running_out_of_fuel_skips_the_router_for_that_call_only() {
    skipped_then_recovers(
        "{fuel: 1000000, fuel_per_state: 0, timeout: 10s}",
        "@spin:test",
        FailureKind::OutOfFuel,
        "`get-users-for-states` ran out of fuel (budget 1000000)",
    )
    .await;
}

#[tokio::test]
async fn a_log_flood_pays_fuel_for_what_the_host_reads() {
    // Each `log` of a 1 MiB message costs the guest a few instructions and
    // the host a 1 MiB UTF-8 check: the host's work is charged to the
    // guest's fuel (a byte a unit), so fuel stops it long before its time
    // budget (it used to be only the time budget, which needs a watchdog
    // tick to notice).
    skipped_twice(
        "HOSTILE_SLEEPER",
        "{via: log}",
        "{fuel: 5000000, fuel_per_state: 0, timeout: 10s}",
        FailureKind::OutOfFuel,
        "ran out of fuel",
    )
    .await;
}

#[tokio::test]
async fn a_memory_fill_loop_pays_fuel_per_byte() {
    // wasmtime 48 charges bulk memory operations per byte: a 16 MiB fill
    // costs more than the whole default budget, long before the time
    // budget is up.
    skipped_twice(
        "HOSTILE_SLEEPER",
        "{via: fill}",
        "{timeout: 10s}",
        FailureKind::OutOfFuel,
        "ran out of fuel",
    )
    .await;
}
