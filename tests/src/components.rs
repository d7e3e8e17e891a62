//! Components of odd shapes for the test kit's post-return check: one
//! made from a real router with its post-return functions taken off, and
//! small ones whose export is lifted inside a nested component or not at
//! all.

use std::convert::Infallible;

use wasm_encoder::reencode::{Error, Reencode, ReencodeComponent, component_utils};
use wasm_encoder::{
    Alias, CanonicalFunctionSection, CanonicalOption, CodeSection, Component,
    ComponentAliasSection, ComponentExportKind, ComponentExportSection, ComponentImportSection,
    ComponentTypeRef, ComponentTypeSection, ComponentValType, ExportKind, ExportSection, Function,
    FunctionSection, InstanceSection, MemorySection, MemoryType, Module, ModuleArg, ModuleSection,
    NestedComponentSection, PrimitiveValType, TypeSection, ValType,
};

/// Re-encodes a component as it is, but for the `post-return` option of
/// every `canon lift`.
struct WithoutPostReturns;

impl Reencode for WithoutPostReturns {
    type Error = Infallible;
}

impl ReencodeComponent for WithoutPostReturns {
    fn parse_component_canonical(
        &mut self,
        section: &mut CanonicalFunctionSection,
        func: wasmparser::CanonicalFunction,
    ) -> Result<(), Error<Self::Error>> {
        let func = match func {
            wasmparser::CanonicalFunction::Lift {
                core_func_index,
                type_index,
                options,
            } => wasmparser::CanonicalFunction::Lift {
                core_func_index,
                type_index,
                options: options
                    .iter()
                    .filter(|o| !matches!(o, wasmparser::CanonicalOption::PostReturn(_)))
                    .cloned()
                    .collect(),
            },
            other => other,
        };
        component_utils::parse_component_canonical(self, section, func)
    }
}

/// `component` with no post-return functions: what `wasm-tools component
/// new` makes of a module whose post-return exports it doesn't recognise
/// (wit-bindgen-cpp 0.63's `cabi_post_parse_config`). The guest's code is
/// untouched, so what it returns is never freed.
pub fn without_post_returns(component: &[u8]) -> Vec<u8> {
    let mut out = Component::new();
    WithoutPostReturns
        .parse_component(&mut out, wasmparser::Parser::new(0), component)
        .unwrap_or_else(|e| panic!("the component re-encodes: {e:?}"));
    out.finish()
}

/// A component exporting `get-name: func() -> string`, lifted (with a
/// post-return function if `post_return`) inside a nested component that
/// the outer one instantiates and re-exports, as composition tools do.
pub fn nested_string_export(post_return: bool) -> Vec<u8> {
    // The core module: `f` returns a pointer to an empty string (pointer
    // 0, length 0, in zeroed memory); `post` frees nothing.
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    types.ty().function([ValType::I32], []);
    module.section(&types);
    let mut funcs = FunctionSection::new();
    funcs.function(0).function(1);
    module.section(&funcs);
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: None,
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    module.section(&memories);
    let mut exports = ExportSection::new();
    exports
        .export("f", ExportKind::Func, 0)
        .export("post", ExportKind::Func, 1)
        .export("memory", ExportKind::Memory, 0);
    module.section(&exports);
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    f.instructions().i32_const(0).end();
    code.function(&f);
    let mut post = Function::new([]);
    post.instructions().end();
    code.function(&post);
    module.section(&code);

    let mut inner = Component::new();
    inner.section(&ModuleSection(&module));
    let mut instances = InstanceSection::new();
    instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    inner.section(&instances);
    let mut aliases = ComponentAliasSection::new();
    for (kind, name) in [
        (ExportKind::Func, "f"),
        (ExportKind::Func, "post"),
        (ExportKind::Memory, "memory"),
    ] {
        aliases.alias(Alias::CoreInstanceExport {
            instance: 0,
            kind,
            name,
        });
    }
    inner.section(&aliases);
    let mut types = ComponentTypeSection::new();
    types
        .function()
        .params(Vec::<(&str, ComponentValType)>::new())
        .result(Some(ComponentValType::Primitive(PrimitiveValType::String)));
    inner.section(&types);
    let mut canonicals = CanonicalFunctionSection::new();
    let mut options = vec![CanonicalOption::Memory(0), CanonicalOption::UTF8];
    if post_return {
        options.push(CanonicalOption::PostReturn(1));
    }
    canonicals.lift(0, 0, options);
    inner.section(&canonicals);
    let mut exports = ComponentExportSection::new();
    exports.export("get-name", ComponentExportKind::Func, 0, None);
    inner.section(&exports);

    let mut outer = Component::new();
    outer.section(&NestedComponentSection(&inner));
    let mut instances = wasm_encoder::ComponentInstanceSection::new();
    instances.instantiate(0, Vec::<(&str, ComponentExportKind, u32)>::new());
    outer.section(&instances);
    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::InstanceExport {
        instance: 0,
        kind: ComponentExportKind::Func,
        name: "get-name",
    });
    outer.section(&aliases);
    let mut exports = ComponentExportSection::new();
    exports.export("get-name", ComponentExportKind::Func, 0, None);
    outer.section(&exports);
    outer.finish()
}

/// A component that imports `get-name: func() -> string` and exports it
/// again: the lift is someone else's, so the check can't say.
pub fn passed_through_export() -> Vec<u8> {
    let mut component = Component::new();
    let mut types = ComponentTypeSection::new();
    types
        .function()
        .params(Vec::<(&str, ComponentValType)>::new())
        .result(Some(ComponentValType::Primitive(PrimitiveValType::String)));
    component.section(&types);
    let mut imports = ComponentImportSection::new();
    imports.import("get-name", ComponentTypeRef::Func(0));
    component.section(&imports);
    let mut exports = ComponentExportSection::new();
    exports.export("get-name", ComponentExportKind::Func, 0, None);
    component.section(&exports);
    component.finish()
}
