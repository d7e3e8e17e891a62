//! Guest bindings of a WIT world, one generator per language. Adding a
//! language is a module beside `c.rs` and one entry in [`LANGUAGES`].

mod c;
mod cpp;
mod go;

use std::path::{Path, PathBuf};

use wit_bindgen_core::{Files, WorldGenerator};
use wit_parser::Resolve;

use crate::Error;

/// A language `bindgen` writes bindings for.
pub struct Language {
    /// Its name on the command line (`--lang c`).
    pub name: &'static str,
    /// Its generator, configured for routers. It gets the output directory
    /// (wit-bindgen-cpp writes `.template` files beside existing ones).
    pub generator: fn(out_dir: &Path) -> Box<dyn WorldGenerator>,
}

/// Every language, by name.
pub const LANGUAGES: &[Language] = &[
    Language {
        name: "c",
        generator: c::generator,
    },
    Language {
        name: "cpp",
        generator: cpp::generator,
    },
    Language {
        name: "go",
        generator: go::generator,
    },
];

/// The names of [`LANGUAGES`], for messages and `--help`.
pub fn language_names() -> Vec<&'static str> {
    LANGUAGES.iter().map(|l| l.name).collect()
}

/// Writes the bindings of `world` (or the package's only world) of the WIT
/// package in `wit_dir` for `language` into `out_dir`, creating it; returns
/// the files written.
pub fn generate(
    language: &str,
    wit_dir: &Path,
    world: Option<&str>,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let generator = LANGUAGES
        .iter()
        .find(|l| l.name == language)
        .ok_or_else(|| Error::UnknownLanguage(language.to_owned()))?
        .generator;
    let (mut resolve, world_id) = read_world(wit_dir, world)?;
    let world_name = resolve.worlds[world_id].name.clone();
    let mut files = Files::default();
    generator(out_dir)
        .generate(&mut resolve, world_id, &mut files)
        .map_err(|source| Error::Bindgen {
            language: language.to_owned(),
            world: world_name,
            source,
        })?;
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Write {
        path: out_dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, contents) in files.iter() {
        let path = out_dir.join(name);
        // Go's bindings are a package per directory.
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Write {
                path: dir.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, contents).map_err(|source| Error::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The WIT package in `dir` (with its `deps/`) and the world chosen in it.
pub fn read_world(
    dir: &Path,
    world: Option<&str>,
) -> Result<(Resolve, wit_parser::WorldId), Error> {
    let wit_error = |source| Error::Wit {
        dir: dir.to_owned(),
        source,
    };
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_dir(dir).map_err(wit_error)?;
    let world = resolve.select_world(&[package], world).map_err(wit_error)?;
    Ok((resolve, world))
}
