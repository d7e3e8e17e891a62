"""Type stubs for the extension built from synapse-module/src/lib.rs."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

class RouterLoadError(Exception):
    """args: (message, path), path in Synapse's ConfigError style."""

class RouterSet:
    @staticmethod
    def load(
        config_json: str,
        *,
        source: str,
        base_dir: str,
        cache_dir: Optional[str] = None,
        cache: bool = True,
        compile_on_calling_thread: bool = False,
    ) -> "RouterSet": ...
    def routers(self) -> List[Tuple[str, Path, str, float]]: ...
    def get_users_for_states(self, states: List[Any]) -> Tuple[Dict[str, Set[Any]], List[str]]: ...
    def get_interested_users(self, user_id: str) -> Tuple[bool, Set[str], List[str]]: ...
    def warm_up(self) -> List[str]: ...
    def take_events(self) -> List[Tuple[int, str]]: ...
