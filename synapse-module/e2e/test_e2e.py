"""End-to-end test: a REAL Synapse (subprocess, loopback, SQLite) with presence
routers loaded as Synapse modules, driven only through client/admin HTTP calls.

Run it with ``synapse-module/e2e/run.sh`` (builds the module's wheel and the
guests, installs both into the e2e virtualenv, runs pytest), or see
README.md.

The routing scenario runs in three forms, with the same assertions:

* ``wasm-modules``: one ``wasm_presence_router.WasmPresenceRouter`` in
  ``modules:`` whose ``routers:`` are the example router (``guest-example``)
  and the Synapse test router (``synapse-test-router``): the runtime merges.
* ``wasm-legacy``: the module with the example router in the legacy
  ``presence: presence_router:`` slot, and a second instance of it with the
  test router in ``modules:``: Synapse merges.
* ``wasm-js``, ``wasm-python``: as ``wasm-modules``, with the example router
  compiled from JavaScript (``guest-example-js``) or Python
  (``guest-example-python``) instead of Rust.
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
from built_guests import CACHE_DIR, GUESTS, guest

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
        component = "example_router_" + form.removeprefix("wasm-")
        return [wasm_module(example_router(component=component), peer_router())], None
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


def register(http: httpx.Client, localpart: str) -> None:
    """Shared-secret admin registration (GET nonce, POST HMAC-SHA1)."""
    nonce = http.get("/_synapse/admin/v1/register").json()["nonce"]
    mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
    for part in (nonce, localpart, PASSWORD):
        mac.update(part.encode() + b"\x00")
    mac.update(b"notadmin")
    r = http.post("/_synapse/admin/v1/register", json={
        "nonce": nonce, "username": localpart, "password": PASSWORD,
        "admin": False, "mac": mac.hexdigest(),
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
