//! A wasip1 reactor module made a component: its WASI preview1 imports
//! adapted to WASI 0.2 by the reactor adapter of the wasmtime the runtime
//! embeds, its WIT world (embedded by the bindings, or given) exported.

use std::path::Path;

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::{ComponentEncoder, StringEncoding};

use crate::Error;
use crate::post_return::{self, MissingPostReturn};

/// What to do about exports that return allocations without a post-return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostReturns {
    /// Refuse the module ([`Error::MissingPostReturns`]).
    Require,
    /// Build the component anyway, reporting them (a component that leaks,
    /// kept to test that the leak is caught).
    Allow,
}

/// A component, and the post-returns it lacks (only under
/// [`PostReturns::Allow`]).
pub struct Componentized {
    pub component: Vec<u8>,
    pub missing_post_returns: Vec<MissingPostReturn>,
}

/// The module without its DWARF debug information (the custom sections
/// named `.debug_*`, megabytes for some toolchains); its name section,
/// which names its functions in backtraces and in `presence-router
/// profile`, stays.
fn without_debug_info(module: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(module.len());
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        let payload = payload.map_err(Error::NotAModule)?;
        match &payload {
            wasmparser::Payload::Version {
                encoding: wasmparser::Encoding::Component,
                ..
            } => return Err(Error::AlreadyAComponent),
            wasmparser::Payload::Version { range, .. } => {
                out.extend_from_slice(&module[range.clone()]);
                continue;
            }
            wasmparser::Payload::CustomSection(section)
                if section.name().starts_with(".debug_") =>
            {
                continue;
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            out.push(id);
            // The section's size, as unsigned LEB128.
            let mut size = range.len();
            loop {
                let byte = (size & 0x7f) as u8;
                size >>= 7;
                if size == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
            out.extend_from_slice(&module[range]);
        }
    }
    Ok(out)
}

/// Makes a component of the wasip1 reactor `module`. With `wit` (a WIT
/// package directory and optionally a world in it), that world is embedded
/// first, for modules whose bindings did not embed it.
pub fn componentize(
    module: &[u8],
    wit: Option<(&Path, Option<&str>)>,
    post_returns: PostReturns,
) -> Result<Componentized, Error> {
    let mut module = without_debug_info(module)?;
    if let Some((dir, world)) = wit {
        let (resolve, world) = crate::bindgen::read_world(dir, world)?;
        wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)
            .map_err(Error::Metadata)?;
    }
    let exports = post_return::module_exports(&module)?;
    if exports.functions.iter().any(|e| e == "_start") {
        return Err(Error::CommandModule);
    }
    let (_, bindgen) = wit_component::metadata::decode(&module).map_err(Error::Metadata)?;
    if bindgen.resolve.worlds[bindgen.world].exports.is_empty() {
        return Err(Error::NoWorld);
    }
    let missing = post_return::missing_in(
        &post_return::post_returns_needed(&bindgen.resolve, bindgen.world),
        &exports.functions,
    );
    if !missing.is_empty() && post_returns == PostReturns::Require {
        return Err(Error::MissingPostReturns(missing));
    }
    let component = ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| {
            encoder.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(Error::Encode)?;
    Ok(Componentized {
        component,
        missing_post_returns: missing,
    })
}
