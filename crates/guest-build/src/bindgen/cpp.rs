//! C++: wit-bindgen-cpp's defaults (C++23: `std::expected`, `std::span`).
//! They write `<world>_cpp.h`, `<world>.cpp`, `<world>_component_type.o`
//! and the helper header `wit.h`.
//!
//! Their post-return exports of world-level functions are misnamed
//! (`cabi_post_parse_config` for `cabi_post_parse-config`): the router's
//! build adds the right ones, and `componentize` refuses a module without
//! them (see the crate documentation).

use std::path::{Path, PathBuf};

use wit_bindgen_core::WorldGenerator;

pub fn generator(out_dir: &Path) -> Box<dyn WorldGenerator> {
    // No clang-format: the output is read by a compiler, and the machine
    // may have none.
    wit_bindgen_cpp::Opts::default().build(Some(&PathBuf::from(out_dir)))
}
