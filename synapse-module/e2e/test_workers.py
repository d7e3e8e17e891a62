"""End-to-end test of the module in a Synapse of several processes: a main
process, a presence writer and a sync worker (`synapse.app.generic_worker`),
joined by Redis replication on one PostgreSQL database, all on loopback,
driven over HTTP as test_e2e.py drives one Synapse.

- Registration, login, rooms and presence `PUT`s go to the main process,
  which hands presence to the writer over HTTP replication; the writer
  writes it and routes each batch.
- Every user's `/sync` goes to the sync worker's client listener: there the
  module routes the batches that arrive by replication, and answers
  `get_interested_users` per `/sync`.
- Every process loads the module from the shared `homeserver.yaml` (the
  example router and Synapse's test router). The writer's own worker file
  replaces `modules:` with the same routers behind a hostile one, a spinner
  that burns its whole time budget on every batch.

PostgreSQL and Redis are the test's own (services.py): a fresh cluster and
server on free ports, stopped at the end. They come from Debian's
`postgresql` and `redis-server`, which `scripts/setup.sh` installs; without
them the test fails and says so.

The four tests share one cluster (starting it costs most of their time) and
each uses users of its own, or users whose state it sets itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional
from urllib.parse import quote

import httpx
import pytest
import yaml
from built_guests import guest
from services import Postgres, Redis, ServiceError, free_port, service_dir
from test_e2e import (
    RESEND,
    STARTUP_TIMEOUT_S,
    STEP_TIMEOUT_S,
    User,
    _die_with_parent,
    assert_no_callback_failures,
    example_router,
    homeserver_config,
    login,
    peer_router,
    register,
    synapse_env,
    wasm_module,
    write_signing_key,
)

MAIN = "master"  # Synapse's instance name of the main process
WRITER = "presence_writer"
SYNC = "sync1"
DATABASE = "synapse"

# Burns its whole time budget on every batch the writer routes (a `loop {}`
# stopped only by its deadline): 250 ms of CPU per batch, on the module's
# worker threads. Never suspended, so that every batch really calls it.
SPIN = {"name": "spin", "limits": {"fuel": 10**15, "timeout": "250ms"},
        "failure_policy": {"suspend_after": 1000000}}

SENT_ON_WRITER = "sent online presence to 2 user(s), as the routers asked"


def not_sent_from(instance: str) -> str:
    return (f"the routers asked for presence to be sent to 2 user(s); not sent from "
            f"`{instance}`: only the presence writer (`{WRITER}`) sends, and it calls the "
            f"routers on the same batches")


# --------------------------------------------------------------------------
# Processes and their configuration
# --------------------------------------------------------------------------


class Node:
    """One Synapse process: its config files, its log (appended to across
    restarts) and the URL of its `/health`."""

    def __init__(self, name: str, workdir: Path, config_files: List[Path], app: str,
                 port: int):
        self.name = name
        self.workdir = workdir
        self.config_files = config_files
        self.app = app
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None
        self.started_at = 0.0

    def spawn(self) -> None:
        """Starts the process; `wait_healthy` waits for it. Called from the
        test's main thread only: the child's parent-death signal follows the
        thread that forked it."""
        args = [sys.executable, "-m", self.app]
        for f in self.config_files:
            args += ["-c", str(f)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=self.workdir, env=synapse_env(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()

    def wait_healthy(self) -> None:
        assert self.proc is not None, f"{self.name} was never started"
        deadline = self.started_at + STARTUP_TIMEOUT_S
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"{self.name} exited with {self.proc.returncode} during "
                                f"startup\n{self.log_tail()}")
                try:
                    if http.get(f"{self.base_url}/health").status_code == 200:
                        print(f"[{self.name}] healthy on {self.base_url} after "
                              f"{time.monotonic() - self.started_at:.1f}s")
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        pytest.fail(f"{self.name} not healthy after {STARTUP_TIMEOUT_S}s\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=15)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        lines = self.log_text().splitlines()[-n:]
        return f"--- {self.name} log (tail) ---\n" + "\n".join(lines)

    def wait_for_log(self, needle: str, timeout_s: float = STEP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while needle not in self.log_text():
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name}: {needle!r} not logged within {timeout_s}s\n"
                            + self.log_tail())
            time.sleep(0.2)


def cluster_configs(workdir: Path, pg: Postgres, redis: Redis) -> Dict[str, dict]:
    """The shared homeserver.yaml and each worker's file, as an operator
    would write them (docs/synapse.md shows them)."""
    main_port, main_repl, writer_repl, sync_port = (free_port() for _ in range(4))
    shared_modules = [wasm_module(example_router(), peer_router())]
    hs = homeserver_config(workdir, main_port, shared_modules, None)
    hs["listeners"].append({
        "port": main_repl, "bind_addresses": ["127.0.0.1"], "type": "http",
        "resources": [{"names": ["replication"]}],
    })
    hs["database"] = {"name": "psycopg2", "args": {
        "user": pg.user, "host": "127.0.0.1", "port": pg.port, "database": DATABASE,
        "cp_min": 1, "cp_max": 5,
    }}
    hs["redis"] = {"enabled": True, "host": "127.0.0.1", "port": redis.port}
    hs["instance_map"] = {
        "main": {"host": "127.0.0.1", "port": main_repl},
        WRITER: {"host": "127.0.0.1", "port": writer_repl},
    }
    hs["stream_writers"] = {"presence": [WRITER]}
    writer = {
        "worker_app": "synapse.app.generic_worker",
        "worker_name": WRITER,
        "worker_listeners": [{
            "type": "http", "port": writer_repl, "bind_addresses": ["127.0.0.1"],
            "resources": [{"names": ["replication"]}],
        }],
        # Only here: the same routers as everywhere, behind a hostile one.
        "modules": [wasm_module({**SPIN, "component": guest("hostile_spin")},
                                example_router(), peer_router())],
    }
    sync = {
        "worker_app": "synapse.app.generic_worker",
        "worker_name": SYNC,
        "worker_listeners": [{
            "type": "http", "port": sync_port, "bind_addresses": ["127.0.0.1"],
            "resources": [{"names": ["client"]}],
        }],
    }
    return {"homeserver": hs, WRITER: writer, SYNC: sync,
            "ports": {"main": main_port, WRITER: writer_repl, SYNC: sync_port}}


class Member:
    """A user logged in once: `hs` talks to the main process (presence,
    rooms), `worker` to the sync worker (`/sync`), with the same token."""

    def __init__(self, on_main: User, sync_http: httpx.Client):
        self.user_id = on_main.user_id
        self.hs = on_main
        self.worker = User(sync_http, on_main.localpart, on_main.token)


class Cluster:
    def __init__(self, workdir: Path, pg: Postgres, redis: Redis):
        configs = cluster_configs(workdir, pg, redis)
        write_signing_key(workdir / f"{configs['homeserver']['server_name']}.signing.key")
        files = {}
        for name in ("homeserver", WRITER, SYNC):
            files[name] = workdir / f"{name}.yaml"
            files[name].write_text(yaml.safe_dump(configs[name]))
        ports = configs["ports"]
        self.configs = configs
        self.main = Node("main", workdir, [files["homeserver"]],
                         "synapse.app.homeserver", ports["main"])
        self.writer = Node(WRITER, workdir, [files["homeserver"], files[WRITER]],
                           "synapse.app.generic_worker", ports[WRITER])
        self.sync = Node(SYNC, workdir, [files["homeserver"], files[SYNC]],
                         "synapse.app.generic_worker", ports[SYNC])
        self.nodes = [self.main, self.writer, self.sync]
        self.main_http = httpx.Client(base_url=self.main.base_url, timeout=30.0)
        self.sync_http = httpx.Client(base_url=self.sync.base_url, timeout=30.0)
        self._registered: set = set()

    def start(self) -> None:
        # The main process creates the schema; the workers refuse an empty
        # database, then start side by side.
        self.main.spawn()
        self.main.wait_healthy()
        self.writer.spawn()
        self.sync.spawn()
        self.writer.wait_healthy()
        self.sync.wait_healthy()

    def stop(self) -> None:
        self.main_http.close()
        self.sync_http.close()
        for node in reversed(self.nodes):
            node.stop()

    def users(self, *names: str) -> List[Member]:
        """Each user, registered once per cluster, logged in afresh (a new
        device, whose `/sync` starts from nothing)."""
        out = []
        for name in names:
            if name not in self._registered:
                register(self.main_http, name)
                self._registered.add(name)
            out.append(Member(login(self.main_http, name), self.sync_http))
        return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started: list = []
    dirs: List[Path] = []
    service_error: Optional[str] = None
    try:
        try:
            pg_dir = service_dir("e2e-workers-pg-")
            dirs.append(pg_dir)
            pg = Postgres(pg_dir)
            started.append(pg)
            pg.start()
            pg.create_database(DATABASE)
            redis_dir = service_dir("e2e-workers-redis-")
            dirs.append(redis_dir)
            redis = Redis(redis_dir)
            started.append(redis)
            redis.start()
        except ServiceError as e:
            service_error = str(e)
        if service_error is not None:  # outside the `except`: the message alone
            pytest.fail(service_error, pytrace=False)
        workdir = Path(tempfile.mkdtemp(prefix="synapse-e2e-workers-"))
        dirs.append(workdir)
        t0 = time.monotonic()
        c = Cluster(workdir, pg, redis)
        started.append(c)
        c.start()
        print(f"[cluster] three processes healthy after {time.monotonic() - t0:.1f}s")
        yield c
        if os.environ.get("E2E_SHOW_LOG"):
            for node in c.nodes:
                print(node.log_tail(200))
    finally:
        # Synapse first, then Redis, then PostgreSQL: each stopped even if
        # another could not be.
        for service in reversed(started):
            service.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


def assert_clean(c: Cluster) -> None:
    for node in c.nodes:
        log = node.log_text()
        assert_no_callback_failures(log)
        assert "asked by a router failed" not in log, node.log_tail()
        assert "send_local_online_presence_to can only be run" not in log, node.log_tail()


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_routing_on_the_sync_worker_of_presence_written_on_the_writer(cluster: Cluster) -> None:
    """always_send_to_users and the blacklist, with every /sync served by
    the sync worker and every state written by the presence writer."""
    c = cluster
    watcher, alice, bob, hidden, lonely = c.users("watcher", "alice", "bob", "hidden", "lonely")
    for node in c.nodes:
        assert "router `example` loaded from" in node.log_text(), node.log_tail()
        assert "router `peer` loaded from" in node.log_text(), node.log_tail()
    assert "router `spin` loaded from" in c.writer.log_text(), c.writer.log_tail()
    assert "router `spin`" not in c.sync.log_text() + c.main.log_text()

    # bob and hidden share a room; nobody else shares a room with anyone.
    room_id = hidden.hs.call("POST", "/_matrix/client/v3/createRoom", json={
        "preset": "private_chat", "invite": [bob.user_id]})["room_id"]
    bob.hs.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", json={})
    for obs in (watcher, bob, lonely):
        obs.worker.sync(0)

    # Room-based delivery of the blacklisted user is untouched.
    hidden.hs.set_presence("online", "hidden is here")
    bob.worker.wait_to_see(hidden.user_id)
    # alice shares no room with anyone: watcher gets her presence only
    # because the router, on the sync worker, routes it there.
    alice.hs.set_presence("online", "alice is here")
    watcher.worker.wait_to_see(alice.user_id)
    # hidden's update is older on the presence stream than alice's: it
    # would have arrived by now, had the router routed it.
    assert hidden.user_id not in watcher.worker.senders_seen(), watcher.worker.seen

    # Unlisted users: each sees its own canary, newer than everything above,
    # and nothing the router would have added.
    lonely.hs.set_presence("online")
    lonely.worker.wait_to_see(lonely.user_id)
    assert lonely.worker.senders_seen() == {lonely.user_id}, lonely.worker.seen
    bob.hs.set_presence("online")
    bob.worker.wait_to_see(bob.user_id)
    assert alice.user_id not in bob.worker.senders_seen(), bob.worker.seen
    watcher.worker.wait_to_see(lonely.user_id)
    watcher.worker.wait_to_see(bob.user_id)
    assert hidden.user_id not in watcher.worker.senders_seen(), watcher.worker.seen
    assert_clean(c)


def test_a_routers_sends_happen_on_the_presence_writer_only(cluster: Cluster) -> None:
    """Synapse's test router asks to send presence to watcher and peer when
    the courier's status says so. Every process routes the courier's batch;
    the writer sends, and the main process and the sync worker say why they
    don't, with no error."""
    c = cluster
    watcher, peer, steady, courier = c.users("watcher", "peer", "steady", "courier")
    for obs in (watcher, peer):
        obs.worker.sync(0)
    steady.hs.set_presence("online", "steady")
    watcher.worker.wait_to_see(steady.user_id)
    peer.worker.wait_to_see(steady.user_id)
    for obs in (watcher, peer):
        obs.worker.drain()
    marks = {obs.user_id: len(obs.worker.seen) for obs in (watcher, peer)}

    courier.hs.set_presence("online", RESEND)
    # steady hasn't changed since: its state comes again only in the
    # snapshot that the writer's send_local_online_presence_to causes.
    for obs in (watcher, peer):
        obs.worker.wait_for("the snapshot", lambda obs=obs: steady.user_id in {
            s for s, _ in obs.worker.seen[marks[obs.user_id]:]})
    c.writer.wait_for_log(SENT_ON_WRITER)
    c.sync.wait_for_log(not_sent_from(SYNC))
    c.main.wait_for_log(not_sent_from(MAIN))
    assert "not sent from" not in c.writer.log_text(), c.writer.log_tail()
    for node in (c.main, c.sync):
        assert SENT_ON_WRITER not in node.log_text(), node.log_tail()
        assert "Traceback" not in node.log_text(), node.log_tail()
    assert_clean(c)


def test_a_hostile_router_on_the_writer_never_stalls_sync_on_the_sync_worker(
        cluster: Cluster) -> None:
    """The writer's spinner burns its time budget on every batch (each
    presence PUT waits for it), while watcher long-polls /sync on the sync
    worker: every /sync answers (within the client's generous timeout), and
    the routing of the example router reaches it."""
    c = cluster
    watcher, mover = c.users("watcher", "mover")
    watcher.worker.sync(0)
    spins = "router `spin` skipped for this call (timeout)"
    spins_before = c.writer.log_text().count(spins)
    states = ["online", "unavailable", "online", "unavailable", "online"]
    errors: List[BaseException] = []

    def move() -> None:
        try:
            for i, state in enumerate(states):
                mover.hs.set_presence(state, f"move {i}")
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    mover_thread = threading.Thread(target=move, name="mover")
    mover_thread.start()
    try:
        deadline = time.monotonic() + STEP_TIMEOUT_S * 2
        while True:
            # Each answers, or fails the test (User.call checks the status;
            # the client's timeout bounds the wait).
            watcher.worker.sync(500)
            if not mover_thread.is_alive():
                break
            assert time.monotonic() < deadline, "the mover's PUTs never finished"
    finally:
        mover_thread.join(timeout=STEP_TIMEOUT_S)
    assert not errors, errors

    def mover_seen_last() -> Optional[str]:
        last = [p for s, p in watcher.worker.seen if s == mover.user_id]
        return last[-1] if last else None

    watcher.worker.wait_for("mover's last state", lambda: mover_seen_last() == "online"
                            and (mover.user_id, "unavailable") in watcher.worker.seen)
    # One batch per PUT on the writer, each burnt by the spinner to its end.
    assert c.writer.log_text().count(spins) - spins_before >= len(states), c.writer.log_tail()
    assert "router `spin`" not in c.sync.log_text()
    assert_clean(c)


def test_a_restarted_sync_worker_loses_nothing(cluster: Cluster) -> None:
    """Presence written while the sync worker is down reaches its users'
    next /sync on the restarted worker, routed by the router there."""
    c = cluster
    watcher, bob, hidden, carol = c.users("watcher", "bob", "hidden", "carol")
    room_id = hidden.hs.call("POST", "/_matrix/client/v3/createRoom", json={
        "preset": "private_chat", "invite": [bob.user_id]})["room_id"]
    bob.hs.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", json={})
    for obs in (watcher, bob):
        obs.worker.sync(0)
        obs.worker.drain()
    bob_mark = len(bob.worker.seen)
    loads_before = c.sync.log_text().count("router `example` loaded from")

    c.sync.stop()
    # hidden's device of an earlier test may still be online, and Synapse
    # shows a user's most present device: a new status message is what
    # surely changes hidden's presence. It comes before carol's on the
    # presence stream.
    hidden.hs.set_presence("online", "hidden, while sync1 was down")
    carol.hs.set_presence("online", "carol, while sync1 was down")
    c.sync.spawn()
    c.sync.wait_healthy()
    assert c.sync.log_text().count("router `example` loaded from") == loads_before + 1

    # Both sync on from the tokens the old process gave them.
    watcher.worker.wait_to_see(carol.user_id)  # no room: routed
    bob.worker.wait_for(f"{hidden.user_id}'s new state", lambda: hidden.user_id in {
        s for s, _ in bob.worker.seen[bob_mark:]})  # their room
    assert hidden.user_id not in watcher.worker.senders_seen(), watcher.worker.seen
    assert_clean(c)
