//! Nothing: this package holds the workspace's benchmarks (`[[bench]]` in Cargo.toml).
