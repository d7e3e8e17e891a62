"""The module's ``record:`` key: recording the requests it routes, for
``presence-router diff`` to replay through a new version of the routers
before it replaces the running one (docs/synapse.md, "Recording traffic and
diffing a new router version")::

    record:
      path: /var/lib/synapse/presence-record.jsonl
      sample: 0.01          # fraction of calls recorded, 0 < x <= 1 (default 1)
      max_bytes: 10485760   # rotate when the file would exceed this (default 10 MiB, at most 1 TiB)
      keep: 3               # rotated files kept, path.1 .. path.3 (default 3)

The recorder itself is native (the runtime's ``recording`` module): sampled calls are
serialized as JSON Lines requests from the states the routers were given, on
the calling thread, and written by a thread of the recorder's own (the
reactor never waits on the disk; when that thread is behind, calls go
unrecorded and counted), to a 0600 file, locked, in a directory held open
since start, never reached through a symbolic link. Lines still queued when
the process exits are written first (at most ``FLUSH_AT_EXIT_SECONDS``).
Presence is personal data: record only what you need, for as long as you
need it.
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import Any, Optional

from synapse.module_api.errors import ConfigError

from . import _native

_KEYS = ("path", "sample", "max_bytes", "keep")


class RecordSettings:
    """The ``record:`` keys, checked; ``path`` is absolute."""

    DEFAULT_SAMPLE = 1.0
    DEFAULT_MAX_BYTES = 10 * 1024 * 1024
    DEFAULT_KEEP = 3
    # As the native recorder's MAX_KEEP and MAX_MAX_BYTES (1 TiB).
    MAX_KEEP = 1000
    MAX_MAX_BYTES = 1 << 40
    # How long an exiting process waits for its queued lines to be written.
    FLUSH_AT_EXIT_SECONDS = 10.0

    def __init__(self, path: str, sample: float, max_bytes: int, keep: int):
        self.path = path
        self.sample = sample
        self.max_bytes = max_bytes
        self.keep = keep

    @classmethod
    def parse(cls, value: Any, base_dir: str) -> Optional["RecordSettings"]:
        """The settings of ``record:`` (None: not recording); a relative
        ``path`` is joined to ``base_dir``, as ``cache_dir`` is."""
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError("expected a mapping with a `path`", ("record",))
        unknown = sorted(str(key) for key in value if key not in _KEYS)
        if unknown:
            raise ConfigError(
                f"unknown key `{unknown[0]}`, expected one of `path`, `sample`, `max_bytes`, "
                "`keep`",
                ("record", unknown[0]),
            )
        path = value.get("path")
        if not isinstance(path, str) or not path:
            raise ConfigError("expected the path of the file to record to", ("record", "path"))
        sample = value.get("sample", cls.DEFAULT_SAMPLE)
        if (isinstance(sample, bool) or not isinstance(sample, (int, float))
                or not 0 < sample <= 1):
            raise ConfigError(
                "expected the fraction of calls to record, above 0 and at most 1 (such as 0.01)",
                ("record", "sample"),
            )
        max_bytes = value.get("max_bytes", cls.DEFAULT_MAX_BYTES)
        if (isinstance(max_bytes, bool) or not isinstance(max_bytes, int)
                or not 0 < max_bytes <= cls.MAX_MAX_BYTES):
            raise ConfigError(
                "expected a number of bytes above 0 and at most 1 TiB (such as 10485760)",
                ("record", "max_bytes"))
        keep = value.get("keep", cls.DEFAULT_KEEP)
        if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= cls.MAX_KEEP:
            raise ConfigError(
                f"expected a number of rotated files from 0 to {cls.MAX_KEEP}",
                ("record", "keep"))
        return cls(os.path.join(base_dir, path), float(sample), max_bytes, keep)

    def attach(self, routers: "_native.RouterSet") -> None:
        """Starts recording the calls of ``routers``; a file that can't be
        used is a ``ConfigError`` at ``record.path``."""
        try:
            routers.set_recorder(
                self.path, sample=self.sample, max_bytes=self.max_bytes, keep=self.keep)
        except ValueError as e:
            message, key = e.args
            raise ConfigError(message, ("record", key)) from None
        # A weak reference: a router set replaced (loaded again after a fork)
        # must not be kept alive by this.
        atexit.register(_flush_at_exit, weakref.ref(routers), self.FLUSH_AT_EXIT_SECONDS)


def _flush_at_exit(routers: "weakref.ref[_native.RouterSet]", timeout: float) -> None:
    """Writes the lines still queued for the recording thread, which would
    die with the process."""
    alive = routers()
    if alive is not None:
        alive.flush_recording(timeout)
