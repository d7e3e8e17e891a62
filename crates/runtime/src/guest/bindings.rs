//! The types and host interface of the presence-router world, generated
//! from its WIT.

wasmtime::component::bindgen!({
    path: "wit",
    world: "presence-router",
});
