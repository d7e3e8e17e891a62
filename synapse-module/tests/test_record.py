"""The module's ``record:`` key without a Synapse process: its config errors,
what a recorded call looks like in the file, and that a recorder that fails
stops with one warning and never fails a call. The recorder's rotation,
bounds, sampling, writer thread and file checks are unit-tested in Rust
(``cargo test -p presence-router-synapse --test record``); the end to end,
with ``presence-router diff``, is in ``e2e/test_e2e.py``.

The file is written by the recorder's own thread: a test waits for it with
``flush_recording`` before reading the file.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, Dict

import pytest
from synapse.module_api import PRESENCE_ALL_USERS
from synapse.module_api.errors import ConfigError

from built_guests import CACHE_DIR
from test_module import example, interested_users, load, state, users_for_states
from wasm_presence_router import WasmPresenceRouter


def parse(record: Any) -> None:
    WasmPresenceRouter.parse_config(
        {"routers": [example()], "cache_dir": CACHE_DIR, "record": record})


@pytest.mark.parametrize("record,path,message", [
    ("/tmp/x.jsonl", ("record",), "expected a mapping with a `path`"),
    ({}, ("record", "path"), "expected the path of the file to record to"),
    ({"path": 5}, ("record", "path"), "expected the path"),
    ({"path": "x.jsonl", "sample": 0}, ("record", "sample"), "above 0 and at most 1"),
    ({"path": "x.jsonl", "sample": 1.5}, ("record", "sample"), "above 0 and at most 1"),
    ({"path": "x.jsonl", "sample": True}, ("record", "sample"), "above 0 and at most 1"),
    ({"path": "x.jsonl", "sample": "1%"}, ("record", "sample"), "above 0 and at most 1"),
    ({"path": "x.jsonl", "max_bytes": 0}, ("record", "max_bytes"), "a number of bytes"),
    ({"path": "x.jsonl", "max_bytes": "10MiB"}, ("record", "max_bytes"), "a number of bytes"),
    # Past what the native recorder takes (a u64), and past any sane file.
    ({"path": "x.jsonl", "max_bytes": 2**64}, ("record", "max_bytes"), "at most 1 TiB"),
    ({"path": "x.jsonl", "max_bytes": 2**40 + 1}, ("record", "max_bytes"), "at most 1 TiB"),
    ({"path": "x.jsonl", "keep": -1}, ("record", "keep"), "from 0 to 1000"),
    ({"path": "x.jsonl", "keep": 1001}, ("record", "keep"), "from 0 to 1000"),
    ({"path": "x.jsonl", "rotate": 3}, ("record", "rotate"), "unknown key `rotate`"),
    ({"path": "/nonexistent/dir/x.jsonl"}, ("record", "path"),
     "cannot record to /nonexistent/dir/x.jsonl: its directory /nonexistent/dir: "),
])
def test_a_bad_record_setting_is_a_config_error_at_its_key(
        record: Any, path: tuple, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(record)
    assert tuple(raised.value.path or ()) == path
    assert message in raised.value.msg, raised.value.msg


def test_a_planted_link_or_a_file_others_can_read_stops_synapse_at_start(
        tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("")
    elsewhere.chmod(0o600)
    link = tmp_path / "link.jsonl"
    link.symlink_to(elsewhere)
    with pytest.raises(ConfigError) as raised:
        parse({"path": str(link)})
    assert tuple(raised.value.path or ()) == ("record", "path")
    assert raised.value.msg == (
        f"cannot record to {link}: it is a symbolic link: refused, never followed")

    readable = tmp_path / "readable.jsonl"
    readable.write_text("")
    readable.chmod(0o644)
    with pytest.raises(ConfigError) as raised:
        parse({"path": str(readable)})
    assert raised.value.msg.endswith(
        "other users may read or write it (mode 0644): presence is personal data, "
        "make it 0600"), raised.value.msg


def test_each_routed_call_is_a_request_line_of_the_cli_format_in_a_0600_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A relative path is resolved once, against the working directory.
    monkeypatch.chdir(tmp_path)
    router, api = load([example(always_send_to_users=["@w:x"])],
                       record={"path": "record.jsonl", "sample": 1})
    monkeypatch.chdir("/")
    path = tmp_path / "record.jsonl"
    assert not path.exists(), "created at the first recorded call"
    alice = state("@a:x", "unavailable", status_msg="away\nfor lunch", last_active_ts=5)
    assert users_for_states(api, [alice, state("@b:x")]) == {"@w:x": {alice, state("@b:x")}}
    assert interested_users(api, "@w:x") == PRESENCE_ALL_USERS
    assert users_for_states(api, []) == {"@w:x": set()}
    assert router._routers.flush_recording(60.0), "the writer caught up"
    lines = [json.loads(line) for line in path.read_text().splitlines()]

    def recorded(user_id: str, presence: str, **fields: Any) -> Dict[str, Any]:
        return {"user_id": user_id, "state": presence, "last_active_ts": 0,
                "last_federation_update_ts": 0, "last_user_sync_ts": 0,
                "status_msg": None, "currently_active": False, **fields}

    assert lines == [
        {"get_users_for_states": [
            recorded("@a:x", "unavailable", status_msg="away\nfor lunch", last_active_ts=5),
            recorded("@b:x", "online"),
        ]},
        {"get_interested_users": "@w:x"},
        {"get_users_for_states": []},
    ]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert router._routers.recording_counts() == (3, 0, 0)


def test_a_recorder_that_fails_warns_once_and_the_calls_go_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "record.jsonl"
    # The rotation renames the file onto a directory that is not empty: it
    # fails at the second call.
    (tmp_path / "record.jsonl.1").mkdir()
    (tmp_path / "record.jsonl.1" / "x").write_text("")
    router, api = load([example(always_send_to_users=["@w:x"])],
                       record={"path": str(path), "max_bytes": 40, "keep": 1})
    for _ in range(5):
        assert interested_users(api, "@w:x") == PRESENCE_ALL_USERS
        assert users_for_states(api, [state("@a:x")]) == {"@w:x": {state("@a:x")}}
    assert router._routers.flush_recording(60.0), "the writer caught up"
    # The writer thread's warning goes out with the next call.
    assert interested_users(api, "@w:x") == PRESENCE_ALL_USERS
    assert path.read_text() == '{"get_interested_users":"@w:x"}\n'
    warnings = [r for r in caplog.records if "recording presence requests" in r.getMessage()]
    assert [(r.name, r.levelno) for r in warnings] == [("wasm_presence_router", logging.WARNING)]
    assert warnings[0].getMessage().startswith(
        f"recording presence requests to {path} stopped: "), warnings[0].getMessage()


def test_a_directory_others_can_write_stops_synapse_at_start(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    with pytest.raises(ConfigError) as raised:
        parse({"path": str(shared / "record.jsonl")})
    assert tuple(raised.value.path or ()) == ("record", "path")
    assert raised.value.msg.startswith(
        f"cannot record to {shared / 'record.jsonl'}: its directory {shared} "
        "(owner uid "), raised.value.msg
    assert "mode 0775) is writable by its group or by others" in raised.value.msg


def test_a_path_another_recorder_writes_to_stops_synapse_at_start(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    router, api = load([example()], record={"path": str(path)})
    assert interested_users(api, "@a:x") == set()
    assert router._routers.flush_recording(60.0), "the writer caught up"
    assert path.read_text() == '{"get_interested_users":"@a:x"}\n'
    with pytest.raises(ConfigError) as raised:
        parse({"path": str(path)})
    assert tuple(raised.value.path or ()) == ("record", "path")
    assert raised.value.msg == (
        f"cannot record to {path}: it is used by another process: give each Synapse "
        "process its own path"), raised.value.msg

