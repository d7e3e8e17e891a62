//! Which exports need a post-return function, and whether a core module
//! has them under the names the canonical ABI looks for.
//!
//! A function that returns a string or a list hands the host a pointer into
//! its own memory; the host copies the value out, then calls the export's
//! post-return function so the guest can free it. The component encoder
//! wires a post-return only if the module exports it under the exact
//! mangled name (`cabi_post_<export name>`, or `cm32p2|…_post`), and ignores
//! any other export without a word.

use wit_parser::{
    LiftLowerAbi, ManglingAndAbi, Resolve, WasmExport, WasmExportKind, WorldId, WorldItem,
};

use crate::Error;

/// An export of the world whose results need freeing after each call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostReturnNeeded {
    /// The export as the component names it (`parse-config`, or
    /// `pkg:name/interface@1.0.0#function`).
    pub export: String,
    /// Its post-return under the legacy mangling, which wit-bindgen uses:
    /// `cabi_post_parse-config`.
    pub legacy_name: String,
    /// Under the standard mangling: `cm32p2||parse-config_post`.
    pub standard_name: String,
}

/// An export that returns an allocation and has no post-return function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPostReturn {
    /// The export as the component names it.
    pub export: String,
    /// The core export the canonical ABI looks for.
    pub expected: String,
    /// A module export that looks like a misnamed post-return for it (the
    /// same name with `_` for `-`, as wit-bindgen-cpp writes it).
    pub misnamed: Option<String>,
}

/// The (synchronous) exports of `world` that return an allocation.
pub fn post_returns_needed(resolve: &Resolve, world: WorldId) -> Vec<PostReturnNeeded> {
    let mut needed = Vec::new();
    for (key, item) in &resolve.worlds[world].exports {
        let (interface, functions) = match item {
            WorldItem::Function(func) => (None, vec![func]),
            WorldItem::Interface { id, .. } => (
                Some(key),
                resolve.interfaces[*id].functions.values().collect(),
            ),
            WorldItem::Type { .. } => continue,
        };
        for func in functions {
            if func.kind.is_async()
                || !wit_bindgen_core::abi::guest_export_needs_post_return(resolve, func)
            {
                continue;
            }
            let name = |mangling| {
                resolve.wasm_export_name(
                    mangling,
                    WasmExport::Func {
                        interface,
                        func,
                        kind: WasmExportKind::PostReturn,
                    },
                )
            };
            needed.push(PostReturnNeeded {
                export: match interface {
                    Some(key) => format!("{}#{}", resolve.name_world_key(key), func.name),
                    None => func.name.clone(),
                },
                legacy_name: name(ManglingAndAbi::Legacy(LiftLowerAbi::Sync)),
                standard_name: name(ManglingAndAbi::Standard32),
            });
        }
    }
    needed
}

/// Of `needed`, those that none of the module's function `exports` provides.
pub fn missing_in(needed: &[PostReturnNeeded], exports: &[String]) -> Vec<MissingPostReturn> {
    // A module uses one mangling throughout; name the one it uses.
    let standard = exports.iter().any(|e| e.starts_with("cm32p2"));
    needed
        .iter()
        .filter(|n| {
            !exports
                .iter()
                .any(|e| *e == n.legacy_name || *e == n.standard_name)
        })
        .map(|n| {
            let expected = if standard {
                &n.standard_name
            } else {
                &n.legacy_name
            };
            MissingPostReturn {
                export: n.export.clone(),
                expected: expected.clone(),
                misnamed: exports
                    .iter()
                    .find(|e| loose(e) == loose(&n.legacy_name))
                    .cloned(),
            }
        })
        .collect()
}

/// A name with every punctuation mark a generator might substitute made `_`.
fn loose(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The post-returns missing from a core module, checked against the WIT
/// world that its bindings embedded (its `component-type` custom sections).
pub fn missing_post_returns(module: &[u8]) -> Result<Vec<MissingPostReturn>, Error> {
    let (_, bindgen) = wit_component::metadata::decode(module).map_err(Error::Metadata)?;
    let exports = module_exports(module)?;
    Ok(missing_in(
        &post_returns_needed(&bindgen.resolve, bindgen.world),
        &exports.functions,
    ))
}

/// The names a core module exports.
pub(crate) struct ModuleExports {
    pub functions: Vec<String>,
}

pub(crate) fn module_exports(module: &[u8]) -> Result<ModuleExports, Error> {
    let mut functions = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::ExportSection(section) = payload.map_err(Error::NotAModule)? {
            for export in section {
                let export = export.map_err(Error::NotAModule)?;
                if export.kind == wasmparser::ExternalKind::Func {
                    functions.push(export.name.to_owned());
                }
            }
        }
    }
    Ok(ModuleExports { functions })
}

/// One line per missing post-return, saying what follows.
pub fn describe(missing: &[MissingPostReturn]) -> String {
    missing
        .iter()
        .map(|m| {
            let found = match &m.misnamed {
                Some(name) => {
                    format!(" (it exports `{name}`, a name the canonical ABI does not look for)")
                }
                None => String::new(),
            };
            format!(
                "export `{}` returns an allocation, but the module has no `{}` to free it{found}: \
                 the component would leak memory on every call",
                m.export, m.expected
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIT: &str = r#"
        package test:pr@0.1.0;
        interface api {
            names: func() -> list<string>;
            count: func() -> u32;
        }
        world w {
            export parse-config: func(config: string) -> result<_, string>;
            export ping: func(n: u32) -> u32;
            export api;
        }
    "#;

    fn needed() -> Vec<PostReturnNeeded> {
        let mut resolve = Resolve::default();
        let package = resolve.push_str("w.wit", WIT).expect("valid WIT");
        let world = resolve.select_world(&[package], None).expect("one world");
        post_returns_needed(&resolve, world)
    }

    #[test]
    fn only_exports_returning_allocations_need_one() {
        let names: Vec<_> = needed().into_iter().map(|n| n.legacy_name).collect();
        assert_eq!(
            names,
            [
                "cabi_post_parse-config",
                "cabi_post_test:pr/api@0.1.0#names"
            ]
        );
        assert_eq!(needed()[0].standard_name, "cm32p2||parse-config_post");
    }

    #[test]
    fn misnamed_post_returns_are_missing_and_pointed_out() {
        let exports = [
            "parse-config",
            "cabi_post_parse_config",
            "test:pr/api@0.1.0#names",
            "cabi_post_test:pr/api@0.1.0#names",
        ]
        .map(String::from);
        let missing = missing_in(&needed(), &exports);
        assert_eq!(
            missing,
            [MissingPostReturn {
                export: "parse-config".into(),
                expected: "cabi_post_parse-config".into(),
                misnamed: Some("cabi_post_parse_config".into()),
            }]
        );
        assert!(describe(&missing).contains("leak memory on every call"));
    }

    #[test]
    fn standard_mangling_counts() {
        let exports = [
            "cm32p2||parse-config",
            "cm32p2||parse-config_post",
            "cm32p2|test:pr/api@0.1|names",
        ]
        .map(String::from);
        let missing = missing_in(&needed(), &exports);
        assert_eq!(missing.len(), 1, "{missing:?}");
        assert_eq!(missing[0].expected, "cm32p2|test:pr/api@0.1|names_post");
    }
}
