"""End-to-end test: a REAL Synapse (subprocess, loopback, SQLite) with presence
routers loaded as Synapse modules, driven only through client/admin HTTP calls.

Run (see README.md):

    VENV=$(synapse-module/e2e/setup.sh)
    $VENV/bin/python -m pytest synapse-module/e2e -v

Routers under test (env vars swap the first one, so the future wasm-backed
module can be dropped in without touching this file: E2E_ROUTER_MODULE,
E2E_LEGACY_ROUTER_MODULE, E2E_ROUTER_EXTRA_CONFIG_JSON, E2E_EXTRA_PYTHONPATH):

* ``example_presence_router.ExamplePresenceRouter`` (docs' example) with
  ``always_send_to_users: [@watcher]`` and ``blacklisted_users: [@hidden]``;
* ``peer_presence_router.PeerTestPresenceRouter`` (Synapse's own test router)
  with ``users_who_should_receive_all_presence: [@peer]``, which also exposes
  ``ModuleApi.send_local_online_presence_to`` over a test-only endpoint.

Each scenario runs twice: routers in the ``modules:`` list, and the example
router in the legacy ``presence: presence_router:`` slot (peer router in
``modules:``; Synapse runs the ``modules:`` routers first, legacy last).
"""

from __future__ import annotations

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

HERE = Path(__file__).resolve().parent
SERVER = "localhost"
SHARED_SECRET = "e2e-registration-shared-secret"
PASSWORD = "e2e-password-1234"

# Module (dotted path) for each config form; overridable for the wasm module.
ROUTER_MODULE = os.environ.get(
    "E2E_ROUTER_MODULE", "example_presence_router.ExamplePresenceRouter"
)
LEGACY_ROUTER_MODULE = os.environ.get(
    "E2E_LEGACY_ROUTER_MODULE", "example_presence_router.LegacyExamplePresenceRouter"
)
PEER_ROUTER_MODULE = "peer_presence_router.PeerTestPresenceRouter"
TRIGGER_PATH = "/_synapse/client/wasm_presence_router_e2e/send_local_online_presence_to"

STARTUP_TIMEOUT_S = 90.0  # Synapse cold start (SQLite schema creation) is ~5-10 s here
STEP_TIMEOUT_S = 30.0  # per "wait until X sees Y" step
POLL_MS = 1000  # long-poll timeout of each /sync in a wait loop


def uid(localpart: str) -> str:
    return f"@{localpart}:{SERVER}"


ROUTER_CONFIG = {
    "always_send_to_users": [uid("watcher")],
    "blacklisted_users": [uid("hidden")],
    # Extra keys for a drop-in module (e.g. where its wasm component lives).
    **json.loads(os.environ.get("E2E_ROUTER_EXTRA_CONFIG_JSON") or "{}"),
}
PEER_CONFIG = {"users_who_should_receive_all_presence": [uid("peer")]}


# --------------------------------------------------------------------------
# Homeserver config + process
# --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fast(n: int = 1000) -> dict:
    return {"per_second": n, "burst_count": n}


def homeserver_config(workdir: Path, port: int, form: str,
                      router_config: Optional[dict] = None) -> dict:
    """The homeserver.yaml contents, written directly (no --generate-config)."""
    rc = router_config if router_config is not None else ROUTER_CONFIG
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
        "modules": [],
    }
    router = {"module": ROUTER_MODULE, "config": rc}
    peer = {"module": PEER_ROUTER_MODULE, "config": PEER_CONFIG}
    if form == "modules":
        cfg["modules"] = [router, peer]
    elif form == "legacy":
        cfg["modules"] = [peer]
        cfg["presence"]["presence_router"] = dict(router, module=LEGACY_ROUTER_MODULE)
    else:
        raise ValueError(form)
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
    if os.environ.get("E2E_EXTRA_PYTHONPATH"):
        extra.append(os.environ["E2E_EXTRA_PYTHONPATH"])
    if env.get("PYTHONPATH"):
        extra.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SynapseProcess:
    def __init__(self, workdir: Path, form: str, router_config: Optional[dict] = None):
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "homeserver.yaml"
        self.log_path = workdir / "synapse.log"
        self.config_path.write_text(
            yaml.safe_dump(homeserver_config(workdir, self.port, form, router_config))
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


@pytest.fixture(params=["modules", "legacy"])
def synapse(request) -> Iterator[SynapseProcess]:
    with tempfile.TemporaryDirectory(prefix=f"synapse-e2e-{request.param}-") as d:
        hs = SynapseProcess(Path(d), request.param)
        try:
            t0 = time.monotonic()
            hs.start()
            print(f"\n[{request.param}] Synapse healthy on {hs.base_url} "
                  f"after {time.monotonic() - t0:.1f}s")
            yield hs
        finally:
            hs.stop()
            if os.environ.get("E2E_SHOW_LOG"):
                print(hs.log_tail(200))


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def test_presence_routing_end_to_end(synapse: SynapseProcess) -> None:
    with httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        versions = http.get("/_matrix/client/versions").json()["versions"]
        assert versions, "no client versions advertised"
        names = ["watcher", "alice", "bob", "hidden", "lonely", "peer"]
        for name in names:
            register(http, name)
        u = {name: login(http, name) for name in names}
        watcher, alice, bob, hidden, lonely, peer = (u[n] for n in names)

        # The router modules really were loaded (the form under test).
        log = synapse.log_text()
        assert "PeerTestPresenceRouter" in log

        # bob and hidden share a room; nobody else shares a room with anyone.
        room_id = hidden.call("POST", "/_matrix/client/v3/createRoom", json={
            "preset": "private_chat", "invite": [bob.user_id],
        })["room_id"]
        bob.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", json={})
        assert room_id in bob.call("GET", "/_matrix/client/v3/joined_rooms")["joined_rooms"]
        for who in (watcher, alice, lonely, peer):
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

        # 5) ModuleApi.send_local_online_presence_to([watcher, peer]): after
        #    both have consumed everything, their next sync carries a full
        #    snapshot of the online local users they are interested in (as
        #    routed), and no offline state.
        for obs in (watcher, peer, lonely):
            obs.drain()
        marks = {obs.user_id: len(obs.seen) for obs in (watcher, peer, lonely)}
        r = http.post(TRIGGER_PATH, json={"users": [watcher.user_id, peer.user_id]})
        assert r.status_code == 200, f"{r.status_code} {r.text}"

        online_now = {alice.user_id, bob.user_id, hidden.user_id, lonely.user_id}

        def snapshot(obs: User) -> List[Presence]:
            return obs.seen[marks[obs.user_id]:]

        watcher.wait_for("snapshot", lambda: {s for s, _ in snapshot(watcher)}
                         >= online_now - {hidden.user_id})
        peer.wait_for("snapshot", lambda: {s for s, _ in snapshot(peer)} >= online_now)
        watcher.drain()
        peer.drain()
        assert hidden.user_id not in {s for s, _ in snapshot(watcher)}, snapshot(watcher)
        for obs in (watcher, peer):
            assert all(p != "offline" for _, p in snapshot(obs)), snapshot(obs)
            assert {p for s, p in snapshot(obs) if s in online_now} == {"online"}
        # lonely was not named: nothing new for it.
        lonely.drain()
        assert lonely.seen[marks[lonely.user_id]:] == []

        # Routers never failed inside Synapse (a raising/wrong-shape router is
        # only logged at WARNING, so look for it explicitly).
        log = synapse.log_text()
        assert "Failed to run module API callback" not in log
        assert "Wrong type returned by module API callback" not in log
        assert "KeyError" not in log


@pytest.mark.parametrize(
    "form,expected_path",
    [("modules", "modules.<item 0>.config"), ("legacy", "presence.presence_router.config")],
)
def test_bad_router_config_stops_startup(form: str, expected_path: str) -> None:
    """parse_config raising ConfigError refuses the homeserver config, naming
    the config path (only the first router is checked: it is the one under test)."""
    with tempfile.TemporaryDirectory(prefix=f"synapse-e2e-badcfg-{form}-") as d:
        hs = SynapseProcess(Path(d), form,
                            router_config={**ROUTER_CONFIG, "always_send_to_users": uid("watcher")})
        proc = subprocess.run(hs.command(), cwd=d, env=synapse_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60,
                              preexec_fn=_die_with_parent)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert "Error in configuration" in out, out
        assert expected_path in out, out
        assert "Failed to parse config for module" in out, out
