"""The type stub `_native.pyi` says what the extension has: every class,
method and attribute in it exists in the built extension, and every public
one of the extension is in it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Dict, Set

from wasm_presence_router import _native

STUB = Path(_native.__file__).with_name("_native.pyi")


def stub_classes() -> Dict[str, Set[str]]:
    tree = ast.parse(STUB.read_text())
    classes: Dict[str, Set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names: Set[str] = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    names.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    names.add(item.target.id)
            classes[node.name] = names
    return classes


def extension_classes() -> Dict[str, Set[str]]:
    return {
        name: {member for member in vars(cls) if not member.startswith("_")}
        for name, cls in vars(_native).items()
        if inspect.isclass(cls) and not name.startswith("_")
    }


def test_the_stub_names_exactly_what_the_extension_has() -> None:
    stub, built = stub_classes(), extension_classes()
    assert set(stub) == set(built), (set(stub) ^ set(built))
    for name, members in built.items():
        if issubclass(getattr(_native, name), BaseException):
            continue  # an exception's members are BaseException's
        assert stub[name] == members, (name, stub[name] ^ members)
