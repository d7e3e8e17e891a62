"""Load benchmark: a REAL Synapse under presence load, with no presence
router, with the docs' Python presence router, and with the wasm module.

    # once: a release build of the module (e2e/run.sh puts a dev build on
    # the venv's path, which an installed wheel takes precedence over), then
    # the benchmark
    target/toolchains/synapse-venv/bin/maturin build --release \\
        -m synapse-module/Cargo.toml --out target/wheels/release
    target/toolchains/synapse-venv/bin/python -m pip install --force-reinstall \\
        --no-deps target/wheels/release/wasm_presence_router-*.whl
    target/toolchains/synapse-venv/bin/python benches/synapse/load.py [--rounds 4]

    # or, without touching the venv (from which `e2e/run.sh` uninstalls any
    # wheel): Synapse imports the module from the unpacked wheel
    target/toolchains/synapse-venv/bin/python benches/synapse/load.py \\
        --wheel target/wheels/release/wasm_presence_router-*.whl

    # a smoke run: 200 updates, 1 round, ~2 minutes (the default: ~20)
    target/toolchains/synapse-venv/bin/python benches/synapse/load.py --quick

Options: --rounds N (4), --updates N (2400), --rate N (40 updates/s),
--sync-rate N (5 prompt syncs/s), --poll-interval MS (0), --idle-seconds S
(10), --configs none,python,wasm, --wheel PATH, --quick. The guests must be built
(`cargo build -p presence-router-tests`; `built_guests.py` finds them).

Configurations (each run is a fresh Synapse process on 127.0.0.1 with a
fresh SQLite database in a temporary directory, started as
`e2e/test_e2e.py` starts it, and stopped at the end, also on Ctrl-C):

* ``none``: no presence router;
* ``python``: the docs' ``ExamplePresenceRouter``
  (``e2e/example_presence_router.py``) in ``modules:``;
* ``wasm``: ``wasm_presence_router.WasmPresenceRouter`` in ``modules:``
  running the example router component (``examples/routers/rust``), the same
  router compiled to WebAssembly.

Both routers are configured with ``always_send_to_users: [@watcher1,
@watcher2]`` and ``blacklisted_users: [@u000]``. The configurations run
alternately (none, python, wasm, none, python, wasm, ...) for ``--rounds``
rounds, so that drift in the machine's load spreads over all of them; the
table shows the median of the rounds.

Scenario (per run):

* 200 users ``u000``..``u199`` in 20 public rooms of 10 (user i is in room
  i // 10 only); ``u000`` is blacklisted. Two watchers, ``watcher1`` and
  ``watcher2``, in no room at all: whatever presence they get, they get
  through the router.
* Long-polling ``/sync`` clients (``timeout=30000``, ``set_presence=offline``
  so that syncing never changes anyone's presence): the 2 watchers and one
  member of each room (20). Each returns as soon as there is presence for
  it, and the next starts at once, as a Matrix client's does, so the
  watchers sync about as often as updates arrive: each of their syncs
  makes Synapse call ``get_interested_users`` (answer: all users) and
  ``get_users_for_states`` on the updates since their last sync. So how
  many syncs Synapse serves depends on how fast it answers: a slower
  configuration serves fewer, larger ones (the table's "long polls / s").
  ``--poll-interval`` spaces each client's syncs, which takes most of that
  feedback out.
  Each update also goes through ``get_users_for_states`` when Synapse
  works out whom to notify (and again for federation, which has no remote
  destination here).
* Warm-up (not measured): each user PUTs ``online`` once, at the same rate.
* Load phase (measured): ``--updates`` ``PUT /presence/{userId}/status``,
  round-robin over the 200 users, rooms interleaved (u000, u010, ...,
  u190, u001, ...: at 40/s each room gets an update every 0.5 s, not ten
  in a burst every 5 s), each user alternating ``unavailable`` /
  ``online`` with a new status message each time, sent open-loop at
  ``--rate`` per second (a slow answer does not delay the next send).
  Meanwhile a separate client issues prompt syncs (``timeout=0``, each
  with its own ``since`` token) at ``--sync-rate`` per second, alternately
  as a watcher and as a room member (8 members, of rooms 0-7).
* After the last update, a 2 s tail (the last updates reach the syncs),
  then every client stops.
* Idle: 3 s to settle, then ``--idle-seconds`` with no traffic at all.

Checks (a run that fails one stops the benchmark): every request succeeds
(no rate limiting: the e2e config's generous ``rc_*`` limits), the module
was loaded, no router callback failed in Synapse's log, the room members'
long polls got their room-mates' presence, and with a router each watcher
got presence from users it shares no room with (at least one; the table's
"watchers saw" is the smallest count of distinct users either watcher got
presence from during the run, 199 = everyone but the blacklisted user) and
never the blacklisted user's; with no router they got none.

The figures, per configuration (median of the rounds):

* CPU s / 1k updates: CPU time (user + system, all threads, those the
  wasm module runs its calls on included) of the Synapse process
  during the load phase and its tail, from ``/proc/<pid>/stat``, per 1,000
  updates. It includes everything Synapse does under this load: the PUTs,
  the long polls, the prompt syncs, logging, SQLite. The benchmark
  client's own CPU is not in it (it is printed per run, to show the client
  keeps up: it shares the machine).
* PUT p50/p99: latency of the presence PUTs of the load phase, in ms.
* sync p50/p99: latency of the prompt ``/sync?timeout=0`` requests started
  during the load phase (all of them; "watcher sync" only the watchers'),
  in ms. Long polls are not timed: their waiting is not latency.
* idle CPU: Synapse's CPU over the idle period, as a share of one core.
* long polls / s: long-poll syncs answered per second of the load phase.
* Below the table: wasm / Python CPU per 1k updates, and the same ratio of
  what each router adds above the no-router run; how much of the CPU was
  Synapse's main thread (the Twisted reactor: request handling, Synapse's
  presence logic, the Python router, the wasm module's Python side and
  whatever wasm calls it answers there; SQLite queries run on the
  database pool's threads, and the module may hand calls to other
  threads); how busy the rest of the machine was during
  each load phase (other processes, from /proc/stat: on a shared machine,
  a run beside a busy neighbour is suspect); and every round's CPU
  figure, to show the spread.

Per-run figures go to stderr as the runs complete; the header and the
table go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Dict, List, Optional, Tuple
from urllib.parse import quote

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "synapse-module"
sys.path[:0] = [str(MODULE), str(MODULE / "e2e")]
# The e2e test's homeserver config (relaxed rate limits, no federation,
# far-away presence timeouts), process handling (process group,
# PR_SET_PDEATHSIG, SIGTERM then SIGKILL) and the wasm module entry (with
# the shared compiled-component cache, built_guests.CACHE_DIR), reused as
# they are.
from built_guests import guest  # noqa: E402
from test_e2e import (  # noqa: E402
    PASSWORD,
    SHARED_SECRET,
    SynapseProcess,
    assert_no_callback_failures,
    synapse_env,
    uid,
    wasm_module,
)

# --------------------------------------------------------------------------
# Scenario
# --------------------------------------------------------------------------

N_ROOMS = 20
PER_ROOM = 10
USERS = [f"u{i:03d}" for i in range(N_ROOMS * PER_ROOM)]
ROOMS = [USERS[r * PER_ROOM:(r + 1) * PER_ROOM] for r in range(N_ROOMS)]
# The order users send updates in: rooms interleaved (u000, u010, ..., u190,
# u001, ...), so that each room's members get an update every 1/(rate/20)
# s rather than ten in a burst every 200/rate s.
SEND_ORDER = [room[k] for k in range(PER_ROOM) for room in ROOMS]
WATCHERS = ["watcher1", "watcher2"]
BLACKLISTED = USERS[0]
# One long-polling member per room (not the blacklisted one: its room's
# second user), and the members the prompt-sync sampler syncs as.
LONG_POLL_MEMBERS = [room[1] for room in ROOMS]
SAMPLED_MEMBERS = [room[2] for room in ROOMS[:8]]

ROUTER_CONFIG = {
    "always_send_to_users": [uid(w) for w in WATCHERS],
    "blacklisted_users": [uid(BLACKLISTED)],
}

CONFIGS: Dict[str, Tuple[str, Callable[[], List[dict]]]] = {
    "none": ("no router", lambda: []),
    "python": ("Python router", lambda: [
        {"module": "example_presence_router.ExamplePresenceRouter", "config": ROUTER_CONFIG},
    ]),
    "wasm": ("wasm router", lambda: [
        wasm_module({"name": "example", "component": guest("example_router"),
                     "config": ROUTER_CONFIG}),
    ]),
}

# Beside the e2e config: cheap password hashing, or registering 202 users
# would take a minute of bcrypt (12 rounds by default) per run.
EXTRA_CONFIG = {"bcrypt_rounds": 4}

LONG_POLL_MS = 30_000
TAIL_S = 2.0  # after the last update's answer, before the CPU reading
SETTLE_S = 3.0  # after the clients stop, before the idle period
SETUP_CONCURRENCY = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")

SYNC = "/_matrix/client/v3/sync"


def auth(token: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def proc_cpu_seconds(pid: int, tid: Optional[int] = None) -> float:
    """utime + stime of the whole process (every thread, live or exited), or
    of its thread `tid` only."""
    with open(f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat") as f:
        stat = f.read()
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent not idle (every process), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is in user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def percentile(values: List[float], p: int) -> float:
    """The p-th percentile (1 <= p <= 99), interpolated between samples."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


class BenchError(RuntimeError):
    pass


def check(ok: bool, what: str) -> None:
    if not ok:
        raise BenchError(what)


# --------------------------------------------------------------------------
# Client side (asyncio + httpx: one thread, open-loop sends)
# --------------------------------------------------------------------------


@dataclass
class Poller:
    """A long-polling /sync client and the presence senders it got."""

    name: str
    token: str
    since: str
    senders: Dict[str, int] = field(default_factory=dict)
    syncs: int = 0


@dataclass
class Sample:
    started: float  # loop time
    ms: float
    watcher: bool


async def timed(request: Awaitable[httpx.Response], label: str,
                errors: List[str]) -> Optional[Tuple[httpx.Response, float]]:
    """A request's response and its latency in ms, if it succeeded; else
    why not, in `errors` (which the run checks is empty)."""
    t = time.perf_counter()
    try:
        r = await request
    except httpx.TransportError as e:
        errors.append(f"{label}: {e!r}")
        return None
    ms = (time.perf_counter() - t) * 1000
    if r.status_code != 200:
        errors.append(f"{label}: {r.status_code} {r.text[:200]}")
        return None
    return r, ms


async def register(http: httpx.AsyncClient, localpart: str) -> str:
    """Shared-secret admin registration; returns the new user's access token
    (the answer carries one: no separate login, no second bcrypt)."""
    r = await http.get("/_synapse/admin/v1/register")
    check(r.status_code == 200, f"register nonce: {r.status_code} {r.text}")
    nonce = r.json()["nonce"]
    mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
    for part in (nonce, localpart, PASSWORD):
        mac.update(part.encode() + b"\x00")
    mac.update(b"notadmin")
    r = await http.post("/_synapse/admin/v1/register", json={
        "nonce": nonce, "username": localpart, "password": PASSWORD,
        "admin": False, "mac": mac.hexdigest(),
    })
    check(r.status_code == 200, f"register {localpart}: {r.status_code} {r.text}")
    return r.json()["access_token"]


async def bounded(concurrency: int, coros) -> list:
    sem = asyncio.Semaphore(concurrency)

    async def one(coro):
        async with sem:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def make_room(http: httpx.AsyncClient, tokens: Dict[str, str], members: List[str]) -> None:
    creator, *joiners = members
    r = await http.post("/_matrix/client/v3/createRoom", headers=auth(tokens[creator]),
                        json={"preset": "public_chat"})
    check(r.status_code == 200, f"createRoom by {creator}: {r.status_code} {r.text}")
    room_id = r.json()["room_id"]
    for name in joiners:  # one room's joins in sequence: they'd queue in Synapse anyway
        r = await http.post(f"/_matrix/client/v3/join/{quote(room_id)}",
                            headers=auth(tokens[name]), json={})
        check(r.status_code == 200, f"join {name}: {r.status_code} {r.text}")


async def first_sync(http: httpx.AsyncClient, token: str) -> str:
    r = await http.get(SYNC, headers=auth(token),
                       params={"timeout": "0", "set_presence": "offline"})
    check(r.status_code == 200, f"initial sync: {r.status_code} {r.text}")
    return r.json()["next_batch"]


def presence_senders(body: dict) -> List[str]:
    return [ev["sender"] for ev in body.get("presence", {}).get("events", [])
            if ev.get("type") == "m.presence"]


async def long_poll(http: httpx.AsyncClient, poller: Poller, interval_s: float,
                    errors: List[str]) -> None:
    """Syncs until cancelled, each sync waiting up to LONG_POLL_MS, the next
    one starting at least `interval_s` after the previous one started (0: at
    once, as Matrix clients do)."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            r = await http.get(SYNC, headers=auth(poller.token), timeout=LONG_POLL_MS / 1000 + 30,
                               params={"timeout": str(LONG_POLL_MS), "since": poller.since,
                                       "set_presence": "offline"})
        except httpx.TransportError as e:
            errors.append(f"long poll {poller.name}: {e!r}")
            await asyncio.sleep(1)
            continue
        if r.status_code != 200:
            errors.append(f"long poll {poller.name}: {r.status_code} {r.text[:200]}")
            await asyncio.sleep(1)
            continue
        body = r.json()
        poller.since = body["next_batch"]
        poller.syncs += 1
        for sender in presence_senders(body):
            poller.senders[sender] = poller.senders.get(sender, 0) + 1
        wait = started + interval_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)


async def prompt_syncs(http: httpx.AsyncClient, samplers: List[Tuple[str, str, bool]],
                       rate: float, samples: List[Sample], errors: List[str]) -> None:
    """Starts a /sync?timeout=0 every 1/rate s (open loop) until cancelled,
    cycling over `samplers` (name, token, is_watcher), each with its own
    since token."""
    loop = asyncio.get_running_loop()
    since: Dict[str, str] = {}
    for name, token, _ in samplers:
        since[name] = await first_sync(http, token)
    inflight: set = set()

    async def one(name: str, token: str, watcher: bool) -> None:
        started = loop.time()
        done = await timed(http.get(SYNC, headers=auth(token), params={
            "timeout": "0", "since": since[name], "set_presence": "offline"}),
            f"prompt sync {name}", errors)
        if done is None:
            return
        r, ms = done
        since[name] = r.json()["next_batch"]
        samples.append(Sample(started, ms, watcher))

    t0 = loop.time()
    i = 0
    try:
        while True:
            delay = t0 + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(*samplers[i % len(samplers)]))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            i += 1
    finally:
        for task in list(inflight):
            task.cancel()


async def send_updates(http: httpx.AsyncClient, tokens: Dict[str, str], first: int, count: int,
                       rate: float, latencies_ms: List[float], errors: List[str]) -> float:
    """PUTs presence updates number first..first+count-1, open loop at `rate`
    per second; returns the achieved send rate. Update n is for user
    SEND_ORDER[n % 200], that user's (n // 200)-th: online for even,
    unavailable for odd, with a new status message every time."""
    loop = asyncio.get_running_loop()

    async def put(n: int) -> None:
        name = SEND_ORDER[n % len(SEND_ORDER)]
        k = n // len(USERS)
        state = "online" if k % 2 == 0 else "unavailable"
        done = await timed(
            http.put(f"/_matrix/client/v3/presence/{quote(uid(name))}/status",
                     headers=auth(tokens[name]),
                     json={"presence": state, "status_msg": f"{state} #{k}"}),
            f"PUT {name}", errors)
        if done is not None:
            latencies_ms.append(done[1])

    tasks = []
    t0 = loop.time()
    for i in range(count):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(put(first + i)))
    sent_in = loop.time() - t0
    await asyncio.gather(*tasks)
    return (count - 1) / sent_in if count > 1 and sent_in > 0 else float(rate)


# --------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------


@dataclass
class RunResult:
    config: str
    cpu_per_1k: float
    reactor_per_1k: float  # of which Synapse's main thread (the reactor)
    others_pct: float  # other processes' CPU during the load phase, % of a core
    put_p50: float
    put_p99: float
    sync_p50: float
    sync_p99: float
    wsync_p50: float
    wsync_p99: float
    idle_pct: float
    watchers_saw: int
    achieved_rate: float
    client_cpu_pct: float
    polls_per_s: float
    setup_s: float


async def drive(hs: SynapseProcess, config: str, args: argparse.Namespace) -> RunResult:
    pid = hs.proc.pid
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    # Separate connection pools: long polls hold connections for up to 30 s
    # and must not make the PUTs or the prompt syncs wait for one.
    clients = [httpx.AsyncClient(base_url=hs.base_url, timeout=60.0, limits=limits)
               for _ in range(3)]
    http, poll_http, sample_http = clients
    errors: List[str] = []
    tasks: List[asyncio.Task] = []
    try:
        t_setup = time.monotonic()
        names = USERS + WATCHERS
        tokens = dict(zip(names, await bounded(
            SETUP_CONCURRENCY, [register(http, n) for n in names])))
        await bounded(SETUP_CONCURRENCY, [make_room(http, tokens, room) for room in ROOMS])
        pollers = [Poller(n, tokens[n], await first_sync(http, tokens[n]))
                   for n in WATCHERS + LONG_POLL_MEMBERS]
        setup_s = time.monotonic() - t_setup

        samplers = []
        for i, member in enumerate(SAMPLED_MEMBERS):
            # alternately a watcher and a member
            samplers.append((f"{WATCHERS[i % 2]}#{i}", tokens[WATCHERS[i % 2]], True))
            samplers.append((member, tokens[member], False))
        samples: List[Sample] = []
        tasks = [asyncio.create_task(long_poll(poll_http, p, args.poll_interval / 1000, errors))
                 for p in pollers]
        tasks.append(asyncio.create_task(
            prompt_syncs(sample_http, samplers, args.sync_rate, samples, errors)))

        # Warm-up: every user goes online once; Synapse's caches, the
        # routers and the syncs reach their steady state.
        await send_updates(http, tokens, 0, len(USERS), args.rate, [], errors)
        check(not errors, f"warm-up: {errors[:5]}")

        loop = asyncio.get_running_loop()
        put_ms: List[float] = []
        syncs_before = sum(p.syncs for p in pollers)
        cpu0, client0, t0 = proc_cpu_seconds(pid), os.times(), loop.time()
        main0, busy0 = proc_cpu_seconds(pid, pid), machine_busy_seconds()
        achieved = await send_updates(http, tokens, len(USERS), args.updates, args.rate,
                                      put_ms, errors)
        await asyncio.sleep(TAIL_S)
        cpu1, client1, t1 = proc_cpu_seconds(pid), os.times(), loop.time()
        main1, busy1 = proc_cpu_seconds(pid, pid), machine_busy_seconds()
        polls = sum(p.syncs for p in pollers) - syncs_before
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks = []
        for c in clients:  # closes every connection: no traffic from here on
            await c.aclose()

        check(not errors, f"{len(errors)} failed requests, e.g. {errors[:5]}")
        check(len(put_ms) == args.updates, f"{len(put_ms)} of {args.updates} PUTs timed")
        loaded = [p for p in pollers if p.name in LONG_POLL_MEMBERS]
        check(all(len(set(p.senders) - {uid(p.name)}) > 0 for p in loaded),
              "a room member's long poll got no room-mate's presence")
        watched = {w.name: set(w.senders) for w in pollers if w.name in WATCHERS}
        watchers_saw = min(len(s) for s in watched.values())
        if config == "none":
            check(watchers_saw == 0 and all(not s for s in watched.values()),
                  f"watchers got presence with no router: {watched}")
        else:
            # The routed path: watchers are in no room, so whatever they got
            # came through the router; the blacklisted user's never.
            check(watchers_saw > 0, f"a watcher got no presence through the {config} router")
            check(all(uid(BLACKLISTED) not in s for s in watched.values()),
                  "a watcher got the blacklisted user's presence")

        await asyncio.sleep(SETTLE_S)
        cpu2, t2 = proc_cpu_seconds(pid), loop.time()
        await asyncio.sleep(args.idle_seconds)
        cpu3, t3 = proc_cpu_seconds(pid), loop.time()

        window = [s for s in samples if t0 <= s.started <= t1]
        all_ms = [s.ms for s in window]
        w_ms = [s.ms for s in window if s.watcher]
        client_cpu = (client1.user + client1.system) - (client0.user + client0.system)
        return RunResult(
            config=config,
            cpu_per_1k=(cpu1 - cpu0) / args.updates * 1000,
            reactor_per_1k=(main1 - main0) / args.updates * 1000,
            # neither Synapse nor this client: the machine is shared
            others_pct=((busy1 - busy0) - (cpu1 - cpu0) - client_cpu) / (t1 - t0) * 100,
            put_p50=percentile(put_ms, 50), put_p99=percentile(put_ms, 99),
            sync_p50=percentile(all_ms, 50), sync_p99=percentile(all_ms, 99),
            wsync_p50=percentile(w_ms, 50), wsync_p99=percentile(w_ms, 99),
            idle_pct=(cpu3 - cpu2) / (t3 - t2) * 100,
            watchers_saw=watchers_saw,
            achieved_rate=achieved,
            client_cpu_pct=client_cpu / (t1 - t0) * 100,
            polls_per_s=polls / (t1 - t0),
            setup_s=setup_s,
        )
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for c in clients:
            await c.aclose()


def run_once(config: str, args: argparse.Namespace) -> RunResult:
    modules = CONFIGS[config][1]()
    with tempfile.TemporaryDirectory(prefix=f"synapse-loadbench-{config}-") as d:
        hs = SynapseProcess(Path(d), modules)
        cfg = yaml.safe_load(hs.config_path.read_text())
        cfg.update(EXTRA_CONFIG)
        hs.config_path.write_text(yaml.safe_dump(cfg))
        try:
            hs.start()
            if config == "wasm":
                check("router `example` loaded from" in hs.log_text(),
                      "the wasm module did not load its router")
            result = asyncio.run(drive(hs, config, args))
            assert_no_callback_failures(hs.log_text())
            return result
        except (BenchError, AssertionError):
            print(hs.log_tail(40), file=sys.stderr)
            raise
        finally:
            hs.stop()


# --------------------------------------------------------------------------
# The module Synapse will import, and the report
# --------------------------------------------------------------------------


def native_library() -> Tuple[str, str]:
    """(path, sha256 prefix) of the module's native library as Synapse's
    environment imports it (PYTHONPATH included)."""
    out = subprocess.run(
        [sys.executable, "-c",
         "import wasm_presence_router._native as n; print(n.__file__)"],
        env=synapse_env(), capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, f"cannot import wasm_presence_router: {out.stderr}")
    path = out.stdout.strip().splitlines()[-1]
    return path, hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def release_wheel_hashes() -> Dict[str, str]:
    """sha256 prefix of the native library in each wheel under
    target/wheels/release -> the wheel's name."""
    found = {}
    for whl in sorted((REPO / "target" / "wheels" / "release").glob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            for name in z.namelist():
                if "/_native" in name and name.endswith(".so"):
                    found[hashlib.sha256(z.read(name)).hexdigest()[:12]] = whl.name
    return found


def use_wheel(wheel: str, into: Path) -> None:
    """Unpacks `wheel` and puts it first on Synapse's PYTHONPATH: the runs
    use it whatever `e2e/run.sh` puts on the venv's path meanwhile."""
    with zipfile.ZipFile(wheel) as z:
        z.extractall(into)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(into)] + ([old] if old else []))


def fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def report(results: Dict[str, List[RunResult]], header: List[str]) -> str:
    lines = header + [""]
    cols = ["configuration", "CPU s / 1k updates", "PUT p50 ms", "PUT p99 ms",
            "sync p50 ms", "sync p99 ms", "watcher sync p50 ms", "watcher sync p99 ms",
            "idle CPU % core", "long polls / s", "watchers saw"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
    med: Dict[str, Dict[str, float]] = {}
    for config, runs in results.items():
        if not runs:
            continue
        m = {k: statistics.median(getattr(r, k) for r in runs) for k in (
            "cpu_per_1k", "reactor_per_1k", "put_p50", "put_p99", "sync_p50", "sync_p99",
            "wsync_p50", "wsync_p99", "idle_pct", "polls_per_s")}
        med[config] = m
        saw = sorted({r.watchers_saw for r in runs})
        lines.append("| " + " | ".join([
            CONFIGS[config][0], fmt(m["cpu_per_1k"], 2), fmt(m["put_p50"]), fmt(m["put_p99"]),
            fmt(m["sync_p50"]), fmt(m["sync_p99"]), fmt(m["wsync_p50"]), fmt(m["wsync_p99"]),
            fmt(m["idle_pct"]), fmt(m["polls_per_s"], 0),
            "/".join(map(str, saw)) if len(saw) < 3 else f"{saw[0]}-{saw[-1]}",
        ]) + " |")
    lines.append("")
    if "wasm" in med and "python" in med:
        w, p = med["wasm"]["cpu_per_1k"], med["python"]["cpu_per_1k"]
        lines.append(f"CPU per 1k updates, wasm / Python: **{w / p:.2f}x** "
                     f"({w:.2f} s / {p:.2f} s)")
        if "none" in med:
            n = med["none"]["cpu_per_1k"]
            wd, pd = w - n, p - n
            ratio = f"{wd / pd:.2f}x" if pd > 0 else "n/a"
            lines.append(f"Above no router: wasm +{wd:.2f} s, Python +{pd:.2f} s per 1k "
                         f"updates (wasm / Python: {ratio})")
    lines.append("Of the CPU s / 1k updates, Synapse's main (reactor) thread: " + ", ".join(
        f"{CONFIGS[c][0]} {m['reactor_per_1k']:.2f}" for c, m in med.items())
        + "; the rest is its other threads (the database pool's, and any the "
                 "router's calls run on)")
    lines.append("Other processes on the machine during the load phases, % of a core: "
                 + "; ".join(f"{CONFIGS[c][0]} " + ", ".join(f"{r.others_pct:.0f}" for r in runs)
                             for c, runs in results.items() if runs))
    lines.append("CPU s / 1k updates per round: " + "; ".join(
        f"{CONFIGS[c][0]} " + ", ".join(f"{r.cpu_per_1k:.2f}" for r in runs)
        for c, runs in results.items() if runs))
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, help="rounds of (none, python, wasm); default 4")
    ap.add_argument("--updates", type=int, help="presence updates per run; default 2400")
    ap.add_argument("--rate", type=float, default=40.0, help="updates per second (40)")
    ap.add_argument("--sync-rate", type=float, default=5.0, help="prompt syncs per second (5)")
    ap.add_argument("--poll-interval", type=float, default=0.0,
                    help="least ms between a long-poller's syncs (0: none, as clients do)")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="idle period (10)")
    ap.add_argument("--configs", default="none,python,wasm",
                    help="comma-separated subset of none,python,wasm, in run order")
    ap.add_argument("--wheel", help="a module wheel to run instead of the venv's")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 200 updates, 1 round (unless given)")
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 4)
    args.updates = args.updates or (200 if args.quick else 2400)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in args.configs:
        if c not in CONFIGS:
            ap.error(f"unknown configuration {c!r} (none, python, wasm)")
    if (args.updates < 2 or args.rate <= 0 or args.sync_rate <= 0 or args.rounds < 1
            or args.poll_interval < 0):
        ap.error("--updates >= 2, --rate, --sync-rate > 0, --rounds >= 1, --poll-interval >= 0")
    return args


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    # SIGTERM as Ctrl-C: the `finally`s stop Synapse and remove its directory.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="loadbench-wheel-") as wheel_dir:
        if args.wheel:
            use_wheel(args.wheel, Path(wheel_dir))
        lib = None
        if "wasm" in args.configs:
            lib = native_library()
            release = release_wheel_hashes()
            built = (f"= target/wheels/release/{release[lib[1]]}" if lib[1] in release
                     else "NOT the target/wheels/release wheel: a dev build?")
        import synapse

        header = [
            "## Synapse under presence load",
            "",
            "```",
            "command: " + shlex.join([Path(sys.executable).name] + sys.argv),
            f"machine: nproc {os.cpu_count()}, load average at start "
            + " ".join(f"{x:.2f}" for x in load_at_start)
            + f", {platform.machine()} Linux {platform.release()}, "
            f"CPython {platform.python_version()}, Synapse {synapse.__version__.split()[0]}",
        ]
        if lib:
            where = f"{args.wheel}, unpacked" if args.wheel else lib[0]
            header.append(f"wasm module: {where} (native library sha256 {lib[1]}, {built})")
        header += [
            f"scenario: {len(USERS)} users in {N_ROOMS} rooms of {PER_ROOM}, "
            f"{len(WATCHERS)} watchers (always_send_to_users, in no room), 1 blacklisted; "
            f"{args.updates} presence PUTs at {args.rate:g}/s after a {len(USERS)}-PUT warm-up; "
            f"{len(WATCHERS) + len(LONG_POLL_MEMBERS)} long-polling /sync clients"
            + (f" (at most one sync per {args.poll_interval:g} ms each); " if args.poll_interval
               else "; ") +
            f"prompt /syncs at {args.sync_rate:g}/s; idle {args.idle_seconds:g} s; "
            f"median of {args.rounds} round(s), configurations alternating",
            "```",
        ]
        results: Dict[str, List[RunResult]] = {c: [] for c in args.configs}
        try:
            for rnd in range(1, args.rounds + 1):
                for config in args.configs:
                    if config == "wasm" and lib and native_library()[1] != lib[1]:
                        raise BenchError("the module's native library changed during the "
                                         "benchmark (reinstalled?): use --wheel")
                    t = time.monotonic()
                    r = run_once(config, args)
                    results[config].append(r)
                    print(f"[round {rnd}/{args.rounds}] {config:6} {time.monotonic() - t:5.0f} s "
                          f"(setup {r.setup_s:.0f} s): CPU {r.cpu_per_1k:.2f} s/1k "
                          f"(reactor thread {r.reactor_per_1k:.2f}), "
                          f"PUT {r.put_p50:.1f}/{r.put_p99:.1f} ms, "
                          f"sync {r.sync_p50:.1f}/{r.sync_p99:.1f} ms "
                          f"(watcher {r.wsync_p50:.1f}/{r.wsync_p99:.1f}), "
                          f"idle {r.idle_pct:.1f}%, watchers saw {r.watchers_saw}, "
                          f"sent {r.achieved_rate:.1f}/s, long polls {r.polls_per_s:.1f}/s, "
                          f"client CPU {r.client_cpu_pct:.0f}%, "
                          f"other processes {r.others_pct:.0f}%",
                          file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            print("interrupted: Synapse stopped; partial results below", file=sys.stderr)
            if not any(results.values()):
                return 130
        header.insert(5, "load average at end: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
                      + f"; total {(time.monotonic() - started) / 60:.1f} min")
        print(report(results, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
