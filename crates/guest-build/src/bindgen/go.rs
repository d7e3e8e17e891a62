//! Go: wit-bindgen-go's standalone layout, for a `GOOS=wasip1
//! -buildmode=c-shared` module. They write a `go.mod` for module
//! `wit_component`, its main package `wit_exports.go` (the world's exports,
//! which call the router's package `export_wit_world`, written by hand),
//! and a package per interface (`wit_world/`, `<package>_<interface>/`,
//! each with an `empty.s`). Formatted by `gofmt` when it is on PATH.
//!
//! The bindings import `go.bytecodealliance.org/pkg` (their `wit/runtime`
//! and `wit/types`), which only the Go module proxy serves: a router
//! replaces it in its own `go.mod` (examples/routers/go/witpkg is a stand-in).
//! The world is not embedded: `componentize --wit` embeds it.

use std::path::Path;

use wit_bindgen_core::WorldGenerator;

pub fn generator(_out_dir: &Path) -> Box<dyn WorldGenerator> {
    wit_bindgen_go::Opts::default().build()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn writes_the_main_package_and_a_package_per_interface() {
        let wit = Path::new(env!("CARGO_MANIFEST_DIR")).join("wit");
        let out = std::env::temp_dir().join(format!(
            "presence-router-guest-build-go-{}",
            std::process::id()
        ));
        let written = crate::bindgen::generate("go", &wit, None, &out).expect("Go bindings");
        let exports = std::fs::read_to_string(out.join("wit_exports.go")).expect("main package");
        let types = out.join("matrix_presence_router_types/wit_bindings.go");
        let found = written.contains(&types) && types.is_file();
        std::fs::remove_dir_all(&out).expect("remove the bindings");
        assert!(found, "{written:?}");
        // The exports the router's package implements, each with the
        // post-return that frees what it returned.
        for export in [
            "parse-config",
            "get-users-for-states",
            "get-interested-users",
        ] {
            assert!(
                exports.contains(&format!("//go:wasmexport {export}\n")),
                "{export}"
            );
            assert!(
                exports.contains(&format!("//go:wasmexport cabi_post_{export}\n")),
                "{export}"
            );
        }
        assert!(exports.contains("export_wit_world.GetUsersForStates("));
    }
}
