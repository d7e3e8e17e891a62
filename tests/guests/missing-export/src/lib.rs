//! A component that exports only part of the presence-router world.

wit_bindgen::generate!({ path: "wit", world: "missing-export" });

struct MissingExport;

impl Guest for MissingExport {
    fn parse_config(_config: String) -> Result<(), String> {
        Ok(())
    }
}

export!(MissingExport);
