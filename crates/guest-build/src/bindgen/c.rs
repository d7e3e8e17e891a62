//! C: wit-bindgen-c's defaults. They write `<world>.h`, `<world>.c` (the
//! lifting and lowering, `cabi_realloc`, the post-return functions) and
//! `<world>_component_type.o`, the object that embeds the WIT world in the
//! module for the component encoder.

use std::path::Path;

use wit_bindgen_core::WorldGenerator;

pub fn generator(_out_dir: &Path) -> Box<dyn WorldGenerator> {
    wit_bindgen_c::Opts::default().build()
}
