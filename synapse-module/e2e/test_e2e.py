"""End-to-end test: a REAL Synapse (subprocess, loopback, SQLite) with presence
routers loaded as Synapse modules, driven only through client/admin HTTP calls.

Run it with ``synapse-module/e2e/run.sh`` (builds the module's wheel and the
guests, installs both into the e2e virtualenv, runs pytest), or see
README.md.

The routing scenario runs in three forms, with the same assertions:

* ``wasm-modules``: one ``wasm_presence_router.WasmPresenceRouter`` in
  ``modules:`` whose ``routers:`` are the example router (``examples/routers/rust``)
  and the Synapse test router (``synapse-test-router``): the runtime merges.
* ``wasm-legacy``: the module with the example router in the legacy
  ``presence: presence_router:`` slot, and a second instance of it with the
  test router in ``modules:``: Synapse merges.
* ``wasm-js``, ``wasm-python``: as ``wasm-modules``, with the example router
  compiled from JavaScript (``examples/routers/js``) or Python
  (``examples/routers/python``) instead of Rust.
* ``python-reference``: the same two routers written in Python
  (``example_presence_router.py``, ``peer_presence_router.py``), as Synapse's
  docs and tests have them, which is what the wasm module must reproduce.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import hmac
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote

import httpx
import pytest
import yaml
from built_guests import CACHE_DIR, GUESTS, example_router_in, guest

HERE = Path(__file__).resolve().parent
SERVER = "localhost"
SHARED_SECRET = "e2e-registration-shared-secret"
PASSWORD = "e2e-password-1234"

WASM_MODULE = "wasm_presence_router.WasmPresenceRouter"
# The courier's status message makes the second router call
# send_local_online_presence_to (see peer_presence_router.py).
RESEND = "resend presence"

STARTUP_TIMEOUT_S = 90.0  # Synapse cold start (SQLite schema creation) is ~5-10 s here
STEP_TIMEOUT_S = 30.0  # per "wait until X sees Y" step
POLL_MS = 1000  # long-poll timeout of each /sync in a wait loop


def uid(localpart: str) -> str:
    return f"@{localpart}:{SERVER}"


ROUTER_CONFIG = {
    "always_send_to_users": [uid("watcher")],
    "blacklisted_users": [uid("hidden")],
}
PEER_CONFIG = {
    "users_who_should_receive_all_presence": [uid("peer")],
    "send_on_status_msg": {"status_msg": RESEND, "users": [uid("watcher"), uid("peer")]},
}


def wasm_module(*routers: dict) -> dict:
    """A WasmPresenceRouter module entry running `routers`."""
    return {"module": WASM_MODULE, "config": {"routers": list(routers), "cache_dir": CACHE_DIR}}


def example_router(config: Optional[dict] = None, component: str = "example_router") -> dict:
    return {"name": "example", "component": guest(component),
            "config": ROUTER_CONFIG if config is None else config}


def peer_router() -> dict:
    return {"name": "peer", "component": guest("synapse_test_router"), "config": PEER_CONFIG}


def router_modules(form: str) -> Tuple[List[dict], Optional[dict]]:
    """(the `modules:` list, the legacy `presence.presence_router`) of a form."""
    if form == "wasm-modules":
        return [wasm_module(example_router(), peer_router())], None
    if form == "wasm-legacy":
        return [wasm_module(peer_router())], wasm_module(example_router())
    if form in ("wasm-js", "wasm-python"):
        # The same example router, written in JavaScript or Python.
        router = {**example_router(), "component": example_router_in(form.removeprefix("wasm-"))}
        return [wasm_module(router, peer_router())], None
    if form == "python-reference":
        return [
            {"module": "example_presence_router.ExamplePresenceRouter", "config": ROUTER_CONFIG},
            {"module": "peer_presence_router.PeerTestPresenceRouter", "config": PEER_CONFIG},
        ], None
    raise ValueError(form)


# --------------------------------------------------------------------------
# Homeserver config + process
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fast(n: int = 1000) -> dict:
    return {"per_second": n, "burst_count": n}


def homeserver_config(workdir: Path, port: int, modules: List[dict],
                      presence_router: Optional[dict]) -> dict:
    """The homeserver.yaml contents, written directly (no --generate-config)."""
    cfg: dict = {
        "server_name": SERVER,
        "public_baseurl": f"http://127.0.0.1:{port}/",
        "pid_file": str(workdir / "homeserver.pid"),
        "listeners": [
            {
                "port": port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                # `client` also mounts /_synapse/admin and module web resources
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": {"name": "sqlite3", "args": {"database": str(workdir / "homeserver.db")}},
        "media_store_path": str(workdir / "media_store"),
        "signing_key_path": str(workdir / f"{SERVER}.signing.key"),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "report_stats": False,
        "enable_metrics": False,
        "registration_shared_secret": SHARED_SECRET,
        "enable_registration": False,
        "macaroon_secret_key": "e2e-macaroon-secret",
        "form_secret": "e2e-form-secret",
        "federation_domain_whitelist": [],  # nothing leaves this machine
        "presence": {
            "enabled": True,
            # Users in this test only PUT their presence and never sync with
            # set_presence=online, so keep the per-device timers far away from
            # the test's duration (defaults: 30 s offline, 5 min idle, 60 s
            # currently_active): no spontaneous presence updates mid-test.
            "sync_online_timeout": "20m",
            "idle_timeout": "20m",
            "last_active_granularity": "10m",
        },
        # relaxed rate limits
        "rc_message": _fast(),
        "rc_registration": _fast(),
        "rc_login": {"address": _fast(), "account": _fast(), "failed_attempts": _fast()},
        "rc_joins": {"local": _fast(), "remote": _fast()},
        "rc_joins_per_room": _fast(),
        "rc_invites": {"per_room": _fast(), "per_user": _fast(), "per_issuer": _fast()},
        "rc_room_creation": _fast(),
        "rc_presence": {"per_user": _fast()},
        "rc_admin_redaction": _fast(),
        "modules": modules,
    }
    if presence_router is not None:
        cfg["presence"]["presence_router"] = presence_router
    return cfg


def write_signing_key(path: Path) -> None:
    from signedjson.key import generate_signing_key, write_signing_keys

    with open(path, "w") as f:
        write_signing_keys(f, [generate_signing_key("a_e2e")])


def _die_with_parent() -> None:  # runs in the child before exec
    os.setsid()
    try:  # PR_SET_PDEATHSIG: Synapse gets SIGKILL if the test process dies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def synapse_env() -> Dict[str, str]:
    env = dict(os.environ)
    extra = [str(HERE)]
    if env.get("PYTHONPATH"):
        extra.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SynapseProcess:
    def __init__(self, workdir: Path, modules: List[dict],
                 presence_router: Optional[dict] = None):
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "homeserver.yaml"
        self.log_path = workdir / "synapse.log"
        self.config_path.write_text(
            yaml.safe_dump(homeserver_config(workdir, self.port, modules, presence_router))
        )
        write_signing_key(workdir / f"{SERVER}.signing.key")
        self.proc: Optional[subprocess.Popen] = None
        self._log = None

    def command(self) -> List[str]:
        return [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)]

    def start(self) -> None:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            env=synapse_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"Synapse exited with {self.proc.returncode} during startup\n"
                        + self.log_tail()
                    )
                try:
                    if http.get(f"{self.base_url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise RuntimeError(f"Synapse not healthy after {STARTUP_TIMEOUT_S}s\n" + self.log_tail())

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        return "--- synapse log (tail) ---\n" + "\n".join(self.log_text().splitlines()[-n:])


# --------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------

Presence = Tuple[str, str]  # (sender, presence state)


class User:
    def __init__(self, http: httpx.Client, localpart: str, token: str):
        self.http = http
        self.localpart = localpart
        self.user_id = uid(localpart)
        self.token = token
        self.since: Optional[str] = None
        self.seen: List[Presence] = []  # every m.presence event ever synced

    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, **kw) -> dict:
        r = self.http.request(method, path, headers=self._auth(), **kw)
        assert r.status_code == 200, f"{method} {path} as {self.user_id}: {r.status_code} {r.text}"
        return r.json()

    def sync(self, timeout_ms: int = 0) -> List[Presence]:
        """One /sync. Observers never change their own presence by syncing."""
        params = {"timeout": str(timeout_ms), "set_presence": "offline"}
        if self.since is not None:
            params["since"] = self.since
        body = self.call("GET", "/_matrix/client/v3/sync", params=params,
                         timeout=timeout_ms / 1000 + 15)
        self.since = body["next_batch"]
        got = [
            (ev["sender"], ev["content"].get("presence"))
            for ev in body.get("presence", {}).get("events", [])
            if ev.get("type") == "m.presence"
        ]
        self.seen.extend(got)
        return got

    def set_presence(self, state: str, status_msg: Optional[str] = None) -> None:
        content = {"presence": state}
        if status_msg is not None:
            content["status_msg"] = status_msg
        self.call("PUT", f"/_matrix/client/v3/presence/{quote(self.user_id)}/status", json=content)

    def senders_seen(self, state: Optional[str] = None) -> set:
        return {s for s, p in self.seen if state is None or p == state}

    def wait_for(self, what: str, pred: Callable[[], bool],
                 timeout_s: float = STEP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not pred():
            if time.monotonic() > deadline:
                pytest.fail(f"{self.user_id}: timed out after {timeout_s}s waiting for "
                            f"{what}; presence seen: {self.seen}")
            self.sync(POLL_MS)

    def wait_to_see(self, sender: str, state: str = "online") -> None:
        self.wait_for(f"{sender} {state}", lambda: (sender, state) in self.seen)

    def drain(self, max_rounds: int = 20) -> None:
        """Sync (no waiting) until a response carries no presence."""
        for _ in range(max_rounds):
            if not self.sync(0):
                return
        pytest.fail(f"{self.user_id}: presence never went quiet: {self.seen[-20:]}")


def register(http: httpx.Client, localpart: str, admin: bool = False) -> None:
    """Shared-secret registration (GET nonce, POST HMAC-SHA1), of a server
    admin if `admin`."""
    nonce = http.get("/_synapse/admin/v1/register").json()["nonce"]
    mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
    for part in (nonce, localpart, PASSWORD):
        mac.update(part.encode() + b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    r = http.post("/_synapse/admin/v1/register", json={
        "nonce": nonce, "username": localpart, "password": PASSWORD,
        "admin": admin, "mac": mac.hexdigest(),
    })
    assert r.status_code == 200, f"register {localpart}: {r.status_code} {r.text}"
    assert r.json()["user_id"] == uid(localpart)


def login(http: httpx.Client, localpart: str) -> User:
    r = http.post("/_matrix/client/v3/login", json={
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": localpart},
        "password": PASSWORD,
    })
    assert r.status_code == 200, f"login {localpart}: {r.status_code} {r.text}"
    return User(http, localpart, r.json()["access_token"])


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@contextlib.contextmanager
def running_synapse(label: str, modules: List[dict],
                    presence_router: Optional[dict] = None) -> Iterator[SynapseProcess]:
    with tempfile.TemporaryDirectory(prefix=f"synapse-e2e-{label}-") as d:
        hs = SynapseProcess(Path(d), modules, presence_router)
        try:
            t0 = time.monotonic()
            hs.start()
            print(f"\n[{label}] Synapse healthy on {hs.base_url} "
                  f"after {time.monotonic() - t0:.1f}s")
            yield hs
        finally:
            hs.stop()
            if os.environ.get("E2E_SHOW_LOG"):
                print(hs.log_tail(200))


def register_and_login(http: httpx.Client, names: List[str]) -> Dict[str, User]:
    for name in names:
        register(http, name)
    return {name: login(http, name) for name in names}


def assert_no_callback_failures(log: str) -> None:
    """Synapse only logs a raising or wrong-shaped router (at WARNING), and a
    missing ALL_USERS entry shows as a KeyError: look for each."""
    assert "Failed to run module API callback" not in log
    assert "Wrong type returned by module API callback" not in log
    assert "KeyError" not in log


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form", ["wasm-modules", "wasm-legacy", "wasm-js", "wasm-python", "python-reference"])
def test_presence_routing_end_to_end(form: str) -> None:
    modules, presence_router = router_modules(form)
    with running_synapse(form, modules, presence_router) as synapse, \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        versions = http.get("/_matrix/client/versions").json()["versions"]
        assert versions, "no client versions advertised"
        names = ["watcher", "alice", "bob", "hidden", "lonely", "peer", "courier"]
        u = register_and_login(http, names)
        watcher, alice, bob, hidden, lonely, peer, courier = (u[n] for n in names)

        # The routers of the form under test really were loaded.
        log = synapse.log_text()
        if form.startswith("wasm"):
            assert "router `example` loaded from" in log, synapse.log_tail()
            assert "router `peer` loaded from" in log, synapse.log_tail()

        # bob and hidden share a room; nobody else shares a room with anyone.
        room_id = hidden.call("POST", "/_matrix/client/v3/createRoom", json={
            "preset": "private_chat", "invite": [bob.user_id],
        })["room_id"]
        bob.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", json={})
        assert room_id in bob.call("GET", "/_matrix/client/v3/joined_rooms")["joined_rooms"]
        for who in (watcher, alice, lonely, peer, courier):
            assert who.call("GET", "/_matrix/client/v3/joined_rooms")["joined_rooms"] == []

        # Initial syncs of the observers (they stay offline themselves).
        for obs in (watcher, bob, lonely, peer):
            obs.sync(0)

        # 1) hidden goes online: room-based delivery to bob is untouched by the
        #    blacklist (the router can only add destinations).
        hidden.set_presence("online", "hidden is here")
        bob.wait_to_see(hidden.user_id)

        # 2) alice (no rooms at all) goes online: watcher (always_send_to_users,
        #    no rooms) receives it through the router...
        alice.set_presence("online", "alice is here")
        watcher.wait_to_see(alice.user_id)
        # ...and never hidden's (blacklisted). hidden's update is older than
        # alice's on the presence stream, so it would have arrived by now.
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen

        # 3) second router (peer, listed there): gets everything, hidden too:
        #    routers' answers are unioned per user; one router's blacklist does
        #    not filter another router's routing.
        peer.wait_to_see(alice.user_id)
        peer.wait_to_see(hidden.user_id)
        # (Synapse peer case 1: a listed user with no rooms sees exactly the
        # users who set their presence so far, and nothing else.)
        assert peer.senders_seen() == {alice.user_id, hidden.user_id}, peer.seen

        # 4) unlisted users: bob sees only his room-mate, lonely sees nobody.
        #    Canary: each sets its own presence (a user always gets its own),
        #    which is newer than alice's and hidden's updates on the stream.
        bob.set_presence("online")
        bob.wait_to_see(bob.user_id)
        assert alice.user_id not in bob.senders_seen(), bob.seen

        lonely.set_presence("online")
        lonely.wait_to_see(lonely.user_id)
        assert lonely.senders_seen() == {lonely.user_id}, lonely.seen

        # watcher gets the later updates too (ALL_USERS path), still no hidden.
        watcher.wait_to_see(bob.user_id)
        watcher.wait_to_see(lonely.user_id)
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen

        # 5) Synapse peer case 2, send_local_online_presence_to([watcher,
        #    peer]), called by the second router (the guest, in wasm) when the
        #    courier's state carries RESEND. watcher and peer have consumed
        #    every update, and alice, bob, hidden and lonely don't change:
        #    their states can only come back as the snapshot the call causes,
        #    of the online users each is interested in (as routed), and no
        #    offline state.
        for obs in (watcher, peer, lonely):
            obs.drain()
        marks = {obs.user_id: len(obs.seen) for obs in (watcher, peer, lonely)}
        courier.set_presence("online", RESEND)

        unchanged = {alice.user_id, bob.user_id, hidden.user_id, lonely.user_id}

        def snapshot(obs: User) -> List[Presence]:
            return obs.seen[marks[obs.user_id]:]

        watcher.wait_for("snapshot", lambda: {s for s, _ in snapshot(watcher)}
                         >= unchanged - {hidden.user_id})
        peer.wait_for("snapshot", lambda: {s for s, _ in snapshot(peer)} >= unchanged)
        watcher.drain()
        peer.drain()
        assert hidden.user_id not in {s for s, _ in snapshot(watcher)}, snapshot(watcher)
        for obs in (watcher, peer):
            assert all(p != "offline" for _, p in snapshot(obs)), snapshot(obs)
            assert {p for s, p in snapshot(obs) if s in unchanged} == {"online"}
        # lonely was not named and is interested in nobody: nothing new.
        lonely.drain()
        assert lonely.seen[marks[lonely.user_id]:] == []

        assert_no_callback_failures(synapse.log_text())


HOSTILE_ROUTERS = [
    # name, component, config, limits, the failure kind Synapse's log must show
    ("spin", "hostile_spin", {}, {}, "out_of_fuel"),
    ("panic", "hostile_panic", {}, {}, "trap"),
    # Sleeps 200 ms: charged to its 50 ms budget at once, never slept.
    ("sleeper", "hostile_sleeper", {"via": "sleep", "ms": 200}, {"timeout": "50ms"}, "timeout"),
]


def test_hostile_routers_beside_the_example_do_not_stop_synapse_or_routing() -> None:
    """Routers from the hardening corpus, before and after the example in
    the same module: every call to them fails, Synapse keeps serving /sync
    and presence, logs each failure, and the example's routing stands."""
    hostile = [
        {"name": name, "component": guest(component), "config": config, "limits": limits,
         # Never suspended, so that every batch really calls them.
         "failure_policy": {"suspend_after": 1000000}}
        for name, component, config, limits, _ in HOSTILE_ROUTERS
    ]
    routers = [hostile[0], example_router(), *hostile[1:]]
    with running_synapse("hostile", [wasm_module(*routers)]) as synapse, \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        names = ["watcher", "alice", "hidden", "lonely"]
        u = register_and_login(http, names)
        watcher, alice, hidden, lonely = (u[n] for n in names)
        for obs in (watcher, lonely):
            obs.sync(0)

        hidden.set_presence("online")
        alice.set_presence("online", "alice is here")
        watcher.wait_to_see(alice.user_id)
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen
        lonely.set_presence("online")
        lonely.wait_to_see(lonely.user_id)
        assert lonely.senders_seen() == {lonely.user_id}, lonely.seen
        watcher.wait_to_see(lonely.user_id)
        # A second round: the hostile routers' instances were replaced and
        # fail again; routing still works.
        alice.set_presence("unavailable", "alice is away")
        watcher.wait_to_see(alice.user_id, "unavailable")
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen

        log = synapse.log_text()
        for name, _, _, _, kind in HOSTILE_ROUTERS:
            assert f"router `{name}` skipped for this call ({kind})" in log, synapse.log_tail()
        # The guest's own words reach the log: the panic message, from its
        # stderr, under the module's logger.
        assert "hostile panic on a batch of" in log, synapse.log_tail()
        assert "wasm_presence_router" in log
        assert_no_callback_failures(log)


@pytest.mark.parametrize(
    "form,bad,expected_path,expected_message",
    [
        ("modules", "guest-refuses", "modules.<item 0>.config.routers.<item 0>.config",
         "router `example` refused its configuration: always_send_to_users"),
        ("legacy", "guest-refuses", "presence.presence_router.config.routers.<item 0>.config",
         "router `example` refused its configuration: always_send_to_users"),
        ("modules", "bad-limit", "modules.<item 0>.config.routers.<item 0>.limits.memory",
         "expected a size"),
        ("modules", "no-component", "modules.<item 0>.config.routers.<item 0>.component",
         "cannot load"),
        ("modules", "python-reference", "modules.<item 0>.config.always_send_to_users",
         "'always_send_to_users' must be a list of user IDs"),
    ],
)
def test_bad_router_config_stops_startup(form: str, bad: str, expected_path: str,
                                         expected_message: str) -> None:
    """A config the module or a router refuses stops Synapse at start with a
    ConfigError naming the bad key's path."""
    router = example_router()
    if bad == "guest-refuses":
        router["config"] = {**ROUTER_CONFIG, "always_send_to_users": uid("watcher")}
    elif bad == "bad-limit":
        router["limits"] = {"memory": "lots"}
    elif bad == "no-component":
        router["component"] = str(GUESTS / "no_such_router.wasm")
    module = wasm_module(router)
    if bad == "python-reference":
        module = {"module": "example_presence_router.ExamplePresenceRouter",
                  "config": {**ROUTER_CONFIG, "always_send_to_users": uid("watcher")}}
    modules, presence_router = ([module], None) if form == "modules" else ([], module)
    with tempfile.TemporaryDirectory(prefix=f"synapse-e2e-badcfg-{form}-") as d:
        hs = SynapseProcess(Path(d), modules, presence_router)
        proc = subprocess.run(hs.command(), cwd=d, env=synapse_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60,
                              preexec_fn=_die_with_parent)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert f"Error in configuration at '{expected_path}'" in out, out
        assert "Failed to parse config for module" in out, out
        assert expected_message in out, out


# --------------------------------------------------------------------------
# Recording traffic, and diffing a changed router on it
# --------------------------------------------------------------------------

# The CLI binary (`cargo build -p presence-router`; run.sh builds it).
PRESENCE_ROUTER_CLI = Path(os.environ.get("E2E_PRESENCE_ROUTER_CLI")
                           or HERE.parent.parent / "target" / "debug" / "presence-router")


def presence_router_diff(old: Path, new: Path, recorded: Path) -> subprocess.CompletedProcess:
    if not PRESENCE_ROUTER_CLI.is_file():
        pytest.fail(f"{PRESENCE_ROUTER_CLI} is missing: `cargo build -p presence-router` "
                    "(synapse-module/e2e/run.sh does)")
    with open(recorded, "rb") as requests:
        return subprocess.run(
            [str(PRESENCE_ROUTER_CLI), "diff", "--config", str(old), "--with", str(new),
             "--cache-dir", CACHE_DIR],
            stdin=requests, capture_output=True, text=True, timeout=120,
            env={**os.environ, "RUST_LOG": "error"},
        )


def test_recorded_traffic_diffs_a_changed_router_exactly_and_itself_not_at_all(
        tmp_path: Path) -> None:
    """The module records every call (sample 1) while known traffic runs;
    `presence-router diff` then replays the recording through the example
    router as configured and with one more `always_send_to_users` user
    (newbie): the differences are exactly newbie's, request by request, and
    the router against itself differs in nothing."""
    recorded = tmp_path / "presence-record.jsonl"
    module = wasm_module(example_router())
    module["config"]["record"] = {"path": str(recorded), "sample": 1.0}
    with running_synapse("record", [module]) as synapse, \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        names = ["watcher", "alice", "hidden", "newbie"]
        u = register_and_login(http, names)
        watcher, alice, hidden, newbie = (u[n] for n in names)
        for obs in (watcher, newbie):
            obs.sync(0)
        hidden.set_presence("online", "hidden is here")
        alice.set_presence("online", "alice is here")
        watcher.wait_to_see(alice.user_id)
        alice.set_presence("unavailable", "alice is away")
        watcher.wait_to_see(alice.user_id, "unavailable")
        # newbie's own /sync asks the routers about newbie.
        newbie.sync(0)
        assert_no_callback_failures(synapse.log_text())
    # Synapse has stopped: the recording is complete.
    assert stat.S_IMODE(os.stat(recorded).st_mode) == 0o600
    requests = [json.loads(line) for line in recorded.read_text().splitlines()]
    assert requests, "nothing was recorded"

    # What the changed router must differ in, worked out from each recorded
    # request by the example router's rules: newbie now gets every state not
    # from hidden (blacklisted), and is interested in all users.
    expected = []
    for line, request in enumerate(requests, start=1):
        if "get_users_for_states" in request:
            routed = [s for s in request["get_users_for_states"]
                      if s["user_id"] != uid("hidden")]
            if routed:
                expected.append({"line": line, "request": "get_users_for_states", "users": {
                    uid("newbie"): {"old": [], "new": routed}}})
        elif request["get_interested_users"] == uid("newbie"):
            expected.append({"line": line, "request": "get_interested_users",
                             "user_id": uid("newbie"),
                             "interested_users": {"old": [], "new": "ALL"}})
    kinds = {e["request"] for e in expected}
    assert kinds == {"get_users_for_states", "get_interested_users"}, requests
    assert any(s["user_id"] == uid("alice") and s["status_msg"] == "alice is away"
               for r in requests for s in r.get("get_users_for_states", [])), requests

    def config(always_send_to_users: List[str]) -> Path:
        path = tmp_path / f"routers-{len(always_send_to_users)}.yaml"
        path.write_text(yaml.safe_dump({"routers": [example_router(
            {**ROUTER_CONFIG, "always_send_to_users": always_send_to_users})]}))
        return path

    old = config([uid("watcher")])
    new = config([uid("watcher"), uid("newbie")])
    changed = presence_router_diff(old, new, recorded)
    assert changed.returncode == 1, changed.stderr
    assert [json.loads(line) for line in changed.stdout.splitlines()] == expected
    assert (f"diff: {len(requests)} request(s) replayed" in changed.stderr
            and f"diff: {len(expected)} answered differently, concerning 1 user(s)"
            in changed.stderr), changed.stderr

    same = presence_router_diff(old, old, recorded)
    assert same.returncode == 0, same.stderr
    assert same.stdout == ""
    assert f"diff: {len(requests)} request(s) replayed" in same.stderr, same.stderr
    assert same.stderr.endswith("diff: no difference\n"), same.stderr


# --------------------------------------------------------------------------
# Metrics: Synapse's /_synapse/metrics after known traffic, and the
# Grafana dashboard's queries against it
# --------------------------------------------------------------------------

DASHBOARD = HERE.parent.parent / "docs" / "grafana-dashboard.json"
METRICS_TIMEOUT_S = 30.0
# Every module callback, in the runtime's order.
CALLBACKS = ("get_users_for_states", "get_interested_users")
FAILURE_KINDS = ("out_of_fuel", "timeout", "memory", "trap", "invalid_answer")

# name, component, config, limits, the failure each callback ends in (None:
# it answers). Every call fails the same way, so the failures of a kind are
# exactly the calls.
METRICS_HOSTILE_ROUTERS = [
    # The timeout is far beyond what its fuel lasts: it runs out of fuel
    # however slow the machine is.
    ("spin", "hostile_spin", {}, {"timeout": "2s"}, ("out_of_fuel", None)),
    ("panic", "hostile_panic", {}, {}, ("trap", "trap")),
    # Asks to sleep 200 ms in both callbacks: charged at once to its 50 ms
    # budget, never slept.
    ("sleeper", "hostile_sleeper",
     {"via": "sleep", "ms": 200, "in": ["get-users-for-states", "get-interested-users"]},
     {"timeout": "50ms"}, ("timeout", "timeout")),
]

MetricSamples = Dict[Tuple[str, frozenset], float]


@contextlib.contextmanager
def running_synapse_with_metrics(label: str, modules: List[dict]
                                 ) -> Iterator[Tuple[SynapseProcess, str]]:
    """A Synapse as `running_synapse` makes it, with `enable_metrics` and a
    `metrics` listener on loopback (served from prometheus_client's own
    thread, as operators run it): (the process, the metrics URL)."""
    with tempfile.TemporaryDirectory(prefix=f"synapse-e2e-{label}-") as d:
        hs = SynapseProcess(Path(d), modules)
        metrics_port = free_port()
        config = yaml.safe_load(hs.config_path.read_text())
        config["enable_metrics"] = True
        config["listeners"].append(
            {"type": "metrics", "port": metrics_port, "bind_addresses": ["127.0.0.1"]})
        hs.config_path.write_text(yaml.safe_dump(config))
        try:
            t0 = time.monotonic()
            hs.start()
            print(f"\n[{label}] Synapse healthy on {hs.base_url} "
                  f"after {time.monotonic() - t0:.1f}s")
            yield hs, f"http://127.0.0.1:{metrics_port}/_synapse/metrics"
        finally:
            hs.stop()
            if os.environ.get("E2E_SHOW_LOG"):
                print(hs.log_tail(200))


def scrape(url: str) -> Tuple[str, MetricSamples]:
    """One scrape: its text, and every sample by (name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(url, timeout=30.0)
    assert r.status_code == 200, f"GET {url}: {r.status_code} {r.text[:500]}"
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    return r.text, samples


def sample(samples: MetricSamples, name: str, **labels: str) -> float:
    """A sample that must be there (labels exactly these)."""
    key = (name, frozenset(labels.items()))
    if key not in samples:
        near = sorted(dict(l) for n, l in samples if n == name)  # noqa: E741
        pytest.fail(f"no {name}{labels} in the scrape; {name} has: {near}")
    return samples[key]


def router_metrics_mismatches(samples: MetricSamples) -> List[str]:
    """What differs from the exact figures the traffic must come to. Each
    router is called once per callback Synapse makes to the module (none is
    ever suspended), and the counting router beside it counted those; every
    call of a hostile router fails, as its kind."""
    wrong: List[str] = []

    def expect(what: str, got: float, want: float) -> None:
        if got != want:
            wrong.append(f"{what}: {got:g}, expected {want:g}")

    invoked = {cb: sample(samples, "e2e_presence_router_invocations_total", callback=cb)
               for cb in CALLBACKS}
    routers = [(name, kinds) for name, _, _, _, kinds in METRICS_HOSTILE_ROUTERS]
    routers.append(("example", (None, None)))
    for name, kinds in routers:
        for cb, failing in zip(CALLBACKS, kinds):
            labels = {"router": name, "callback": cb, "server_name": SERVER}
            calls = sample(samples, "wasm_presence_router_calls_total", **labels)
            expect(f"{name} {cb} calls (Synapse made {invoked[cb]:g})", calls, invoked[cb])
            for kind in FAILURE_KINDS:
                expect(f"{name} {cb} {kind} failures",
                       sample(samples, "wasm_presence_router_failures_total", kind=kind,
                              **labels), calls if kind == failing else 0)
            expect(f"{name} {cb} skipped while suspended",
                   sample(samples, "wasm_presence_router_skipped_suspended_total", **labels), 0)
            expect(f"{name} {cb} durations counted",
                   sample(samples, "wasm_presence_router_call_duration_seconds_count",
                          **labels), calls)
            # Fuel is counted for calls that answered (1.0 for one that ran
            # out of it): the spinner's are all in the last bucket.
            fuel = sample(samples, "wasm_presence_router_fuel_used_ratio_count", **labels)
            expect(f"{name} {cb} fuel ratios counted", fuel,
                   calls if failing in (None, "out_of_fuel") else 0)
            if failing == "out_of_fuel":
                expect(f"{name} {cb} fuel ratios at most 0.99",
                       sample(samples, "wasm_presence_router_fuel_used_ratio_bucket",
                              le="0.99", **labels), 0)
        expect(f"{name} suspensions",
               sample(samples, "wasm_presence_router_suspensions_total",
                      router=name, server_name=SERVER), 0)
        expect(f"{name} suspended",
               sample(samples, "wasm_presence_router_suspended",
                      router=name, server_name=SERVER), 0)
        for outcome in ("ok", "failed"):
            expect(f"{name} reloads {outcome}",
                   sample(samples, "wasm_presence_router_reloads_total",
                          router=name, outcome=outcome, server_name=SERVER), 0)
    # Each module call is answered within its slice or finished off the
    # reactor.
    slices = {where: sample(samples, "wasm_presence_router_slice_calls_total",
                            where=where, server_name=SERVER)
              for where in ("in_slice", "slice_used_up", "handed_off")}
    expect("module calls in a slice or handed off", slices["in_slice"] + slices["handed_off"],
           sum(invoked.values()))
    return wrong


def dashboard_queries() -> List[str]:
    """Every PromQL query of the dashboard: its panels' and its variables'."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"]
               for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


# PromQL words that are not metric names (operators and modifiers).
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right",
                   "offset", "bool", "and", "or", "unless", "atan2", "inf", "nan"}


def promql_metric_names(query: str) -> set:
    """The metric names a PromQL query (with Grafana's `$variables`)
    selects: identifiers that are not functions, keywords, label matchers,
    grouping labels or ranges."""
    import re

    rest = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)  # strings (label values)
    rest = re.sub(r"\{[^}]*\}", " ", rest)  # label matchers
    rest = re.sub(r"\[[^\]]*\]", " ", rest)  # ranges
    rest = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", rest)
    rest = re.sub(r"\$\w+", " ", rest)  # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", rest):
        follows = rest[m.end():].lstrip()
        if follows.startswith("(") or m.group().lower() in PROMQL_KEYWORDS:
            continue  # a function, such as rate( or label_values(
        names.add(m.group())
    # label_values(METRIC, LABEL): the label is an argument, not a metric.
    for m in re.finditer(r"label_values\([^,]*,\s*(\w+)\s*\)", query):
        names.discard(m.group(1))
    return names


def test_promql_metric_names_finds_the_metrics_and_nothing_else() -> None:
    assert promql_metric_names(
        'histogram_quantile(0.99, sum by (le, router) (rate(a_bucket{router=~"$router", '
        'le="0.5"}[$__rate_interval]))) / on(router) group_left b_total > 0'
    ) == {"a_bucket", "b_total"}
    assert promql_metric_names(
        'label_values(a_total{server_name=~"$server_name"}, router)') == {"a_total"}


def test_metrics_of_a_running_synapse_count_exactly_the_calls_synapse_made() -> None:
    """Synapse serves the module's metrics on /_synapse/metrics. After
    known traffic, with hostile routers beside the example, the calls of
    every router equal the calls Synapse made (counted by a Python router
    listed first), every call of a hostile router is a failure of its kind,
    the example has none, every series carries the homeserver's
    `server_name`, and every metric the Grafana dashboard queries is in
    the scrape."""
    hostile = [
        {"name": name, "component": guest(component), "config": config, "limits": limits,
         # Never suspended, so that every call Synapse makes calls them.
         "failure_policy": {"suspend_after": 1000000}}
        for name, component, config, limits, _ in METRICS_HOSTILE_ROUTERS
    ]
    # The example with a canary on trial all along (its series, and the
    # dashboard's canary row): the example without its blacklist.
    example = {**example_router(), "canary": {
        "config": {"always_send_to_users": ROUTER_CONFIG["always_send_to_users"]},
        "promote_after": 1000000, "max_divergent": 1000000}}
    modules = [{"module": "counting_presence_router.CountingPresenceRouter", "config": {}},
               wasm_module(*hostile, example)]
    with running_synapse_with_metrics("metrics", modules) as (synapse, metrics_url), \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        names = ["watcher", "alice", "hidden", "lonely"]
        u = register_and_login(http, names)
        watcher, alice, hidden, lonely = (u[n] for n in names)
        for obs in (watcher, lonely):
            obs.sync(0)

        puts = 0
        for who, state, status in ((alice, "online", "alice is here"), (hidden, "online", None),
                                   (alice, "unavailable", "alice is away"),
                                   (lonely, "online", None)):
            who.set_presence(state, status)
            puts += 1
        watcher.wait_to_see(alice.user_id, "unavailable")
        watcher.wait_to_see(lonely.user_id)
        lonely.wait_to_see(lonely.user_id)
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen

        # Calls finished off the reactor land in the counts a moment after
        # Synapse counted the call: wait until the figures settle.
        deadline = time.monotonic() + METRICS_TIMEOUT_S
        while True:
            text, samples = scrape(metrics_url)
            wrong = router_metrics_mismatches(samples)
            # The canary compares on its own thread, behind the calls.
            if not any(name == "wasm_presence_router_canary_fuel_ratio" for name, _ in samples):
                wrong.append("the canary has compared no call yet")
            if not wrong:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"after {METRICS_TIMEOUT_S}s, the metrics still disagree with "
                            "the calls Synapse made:\n  " + "\n  ".join(wrong))
            time.sleep(0.2)

        # Every presence PUT made at least one batch; watcher's syncs asked
        # whose presence they are interested in.
        invoked = {cb: sample(samples, "e2e_presence_router_invocations_total", callback=cb)
                   for cb in CALLBACKS}
        print(f"[metrics] Synapse called the routers {invoked} after {puts} presence PUTs")
        assert invoked["get_users_for_states"] >= puts, invoked
        assert invoked["get_interested_users"] >= 1, invoked
        example = {"router": "example", "server_name": SERVER}
        assert sample(samples, "wasm_presence_router_answer_entries_total",
                      callback="get_users_for_states", **example) > 0
        assert sample(samples, "wasm_presence_router_instances", state="live", **example) >= 1

        # Synapse's label convention: every series of the module names the
        # homeserver.
        ours = [(name, dict(labels)) for name, labels in samples
                if name.startswith("wasm_presence_router_")]
        assert ours
        assert [s for s in ours if s[1].get("server_name") != SERVER] == []
        assert "# TYPE wasm_presence_router_calls_total counter" in text

        # The dashboard: every metric its queries use is in this scrape.
        exported = {name for name, _ in samples}
        used = set()
        for query in dashboard_queries():
            names_in_query = promql_metric_names(query)
            assert names_in_query, f"no metric found in dashboard query {query!r}"
            used |= names_in_query
        assert sorted(used - exported) == [], f"dashboard queries these, not exported: " \
            f"{sorted(used - exported)}"
        # ...and it shows every family the module exports.
        families = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
                    for name in used}
        exported_families = {
            name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
            for name, _ in ours}
        assert sorted(exported_families - families) == [], "not on the dashboard"

        assert_no_callback_failures(synapse.log_text())
