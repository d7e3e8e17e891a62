"""Hot reload in a real Synapse: replacing the example router's component
file with a changed build changes routing within seconds, with no failed
``/sync``; replacing it with junk, or with an unsigned build where a
signature is required, keeps the running build routing.

The changed build is ``tests/guests/example-v2``: the example router's
configuration keys, but its blacklist holds nothing back, which a watcher
sees at once (the blacklisted user's presence starts reaching them)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import List

import httpx
import pytest

from built_guests import guest
from test_e2e import (
    PRESENCE_ROUTER_CLI,
    ROUTER_CONFIG,
    register_and_login,
    running_synapse,
    wasm_module,
)

RELOAD_TIMEOUT_S = 60.0


def replace_file(path: Path, source: Path) -> None:
    """Replaces `path` the way docs/synapse.md says to: write beside, rename."""
    beside = path.with_suffix(".new")
    shutil.copyfile(source, beside)
    beside.replace(path)


def wait_for_log(synapse, needle: str, after: int) -> float:
    """Seconds until Synapse's log, past offset `after`, holds `needle`."""
    started = time.monotonic()
    while needle not in synapse.log_text()[after:]:
        if time.monotonic() - started > RELOAD_TIMEOUT_S:
            pytest.fail(f"no {needle!r} in the log after {RELOAD_TIMEOUT_S}s\n"
                        + synapse.log_tail())
        time.sleep(0.1)
    return time.monotonic() - started


def the_first_build_holds_hidden_back(watcher, alice, hidden) -> None:
    """The example router's blacklist at work: alice's presence reaches the
    watcher, hidden's does not."""
    watcher.sync(0)
    hidden.set_presence("online")
    alice.set_presence("online")
    watcher.wait_to_see(alice.user_id)
    assert hidden.user_id not in watcher.senders_seen(), watcher.seen


def refused_reload_line(synapse, after: int) -> str:
    """The log line of the next refused reload past offset `after`."""
    failed = "reloading the routers failed; the running version goes on serving"
    wait_for_log(synapse, failed, after)
    return next(line for line in synapse.log_text()[after:].splitlines() if failed in line)


class Syncer(threading.Thread):
    """Syncs as a bystander, continually, and keeps every failure."""

    def __init__(self, base_url: str, token: str):
        super().__init__(daemon=True)
        self.base_url = base_url
        self.token = token
        self.stop = threading.Event()
        self.syncs = 0
        self.failures: List[str] = []

    def run(self) -> None:
        since = None
        with httpx.Client(base_url=self.base_url, timeout=30.0) as http:
            while not self.stop.is_set():
                params = {"timeout": "200", "set_presence": "offline"}
                if since is not None:
                    params["since"] = since
                try:
                    r = http.get("/_matrix/client/v3/sync", params=params,
                                 headers={"Authorization": f"Bearer {self.token}"})
                except httpx.HTTPError as e:
                    self.failures.append(f"{type(e).__name__}: {e}")
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                since = r.json()["next_batch"]
                self.syncs += 1


def test_a_changed_build_is_picked_up_and_junk_is_not(tmp_path: Path) -> None:
    component = tmp_path / "example.wasm"
    shutil.copyfile(guest("example_router"), component)
    module = wasm_module({"name": "example", "component": str(component),
                          "config": ROUTER_CONFIG})
    module["config"]["reload"] = {"interval": 0.5}
    with running_synapse("hot-reload", [module]) as synapse, \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        names = ["watcher", "alice", "hidden", "bystander"]
        u = register_and_login(http, names)
        watcher, alice, hidden = u["watcher"], u["alice"], u["hidden"]
        syncer = Syncer(synapse.base_url, u["bystander"].token)
        syncer.start()
        try:
            the_first_build_holds_hidden_back(watcher, alice, hidden)

            # A changed build replaces the file.
            mark = len(synapse.log_text())
            replace_file(component, Path(guest("example_v2")))
            took = wait_for_log(synapse, "reloaded router(s) `example`", mark)
            print(f"\n[hot-reload] new build serving {took:.1f}s after the file was replaced")
            hidden.set_presence("unavailable")
            watcher.wait_to_see(hidden.user_id, "unavailable")

            # Junk replaces it: the running build goes on routing.
            mark = len(synapse.log_text())
            (tmp_path / "junk.wasm").write_bytes(b"\0asm\x0d\0\x01\0 junk")
            replace_file(component, tmp_path / "junk.wasm")
            line = refused_reload_line(synapse, mark)
            assert "router `example`" in line, line
            assert "routers.<item 0>.component" in line, line
            hidden.set_presence("online", "back again")
            # (v1 never let hidden's "online" through: this is v2 routing.)
            watcher.wait_to_see(hidden.user_id, "online")
        finally:
            syncer.stop.set()
            syncer.join(timeout=60)
        assert syncer.failures == [], syncer.failures
        assert syncer.syncs > 0


def test_an_unsigned_replacement_of_a_signed_router_keeps_the_signed_one_serving(
        tmp_path: Path) -> None:
    """With a signature required, a reload refuses a replacement nobody
    trusted signed, naming why, and the signed build goes on routing; a
    signed replacement is picked up; replacing the key takes it out."""
    secret = tmp_path / "ops"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(secret)],
                   check=True)

    def signed(source: str, name: str) -> Path:
        out = tmp_path / name
        subprocess.run([str(PRESENCE_ROUTER_CLI), "sign", "--component", source,
                        "--key", str(secret), "--output", str(out)],
                       check=True, capture_output=True)
        return out

    component = tmp_path / "example.wasm"
    shutil.copyfile(signed(guest("example_router"), "v1-signed.wasm"), component)
    module = wasm_module({"name": "example", "component": str(component),
                          "config": ROUTER_CONFIG, "signed_by": ["ops"]})
    module["config"]["trusted_keys"] = {"ops": str(tmp_path / "ops.pub")}
    module["config"]["reload"] = {"interval": 0.5}
    with running_synapse("signed-reload", [module]) as synapse, \
            httpx.Client(base_url=synapse.base_url, timeout=30.0) as http:
        u = register_and_login(http, ["watcher", "alice", "hidden"])
        watcher, alice, hidden = u["watcher"], u["alice"], u["hidden"]
        the_first_build_holds_hidden_back(watcher, alice, hidden)

        # The changed build, unsigned: refused, the signed v1 serving.
        mark = len(synapse.log_text())
        replace_file(component, Path(guest("example_v2")))
        line = refused_reload_line(synapse, mark)
        assert "router `example`" in line, line
        assert "is not signed; a signature by `ops` (" in line, line
        # v1's blacklist still holds hidden back (v2 would let it through):
        # by the time alice's later update is seen, hidden's would have been.
        hidden.set_presence("unavailable", "still hidden")
        alice.set_presence("unavailable")
        watcher.wait_to_see(alice.user_id, "unavailable")
        assert hidden.user_id not in watcher.senders_seen(), watcher.seen

        # The changed build, signed: picked up.
        mark = len(synapse.log_text())
        replace_file(component, signed(guest("example_v2"), "v2-signed.wasm"))
        wait_for_log(synapse, "reloaded router(s) `example`", mark)
        hidden.set_presence("online", "now visible")
        watcher.wait_to_see(hidden.user_id, "online")

        # The key revoked: its file replaced by another key. The key files
        # are watched too, and the router only it signed is taken out.
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / "other")], check=True)
        mark = len(synapse.log_text())
        replace_file(tmp_path / "ops.pub", tmp_path / "other.pub")
        wait_for_log(synapse, "router `example` taken out: its signature no longer verifies",
                     mark)
