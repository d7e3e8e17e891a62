#!/usr/bin/env bash
# Prints the release's one version: the workspace's (`[workspace.package]
# version` in Cargo.toml), which every artefact carries (docs/releases.md).
set -euo pipefail
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$(dirname "$0")/../Cargo.toml" | head -1)"
[[ -n "$version" ]] || { echo "$0: no workspace version in Cargo.toml" >&2; exit 1; }
echo "$version"
