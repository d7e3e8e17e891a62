//! Nothing: the `presence-router` binary is src/main.rs. This library is
//! there so that the package can dev-depend on itself (Cargo ignores a
//! dependency on a package without one), which is how the package's own
//! tests get the `authoring` feature while `cargo build -p presence-router`
//! builds the binary that routes, without it.
