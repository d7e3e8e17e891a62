//! Whether another local user could change a file or what is under a
//! directory (OpenSSH's `StrictModes` rule): stated once, with its presets
//! for each user of it, in [`presence_router_ownership`], and re-exported
//! here for code that reaches it through the runtime.

pub use presence_router_ownership::*;
