//! Mode libraries for tests that load more than the built-in modes: the
//! documented example and the loader's fixtures, which
//! `cargo build --examples` (scripts/test.sh does it) puts into
//! target/<profile>/examples.

use crate::service;
use std::path::{Path, PathBuf};

/// The built example or fixture library `name`.
pub fn example_library(name: &str) -> PathBuf {
    let lib = service::modes_dir()
        .join("examples")
        .join(format!("lib{name}.so"));
    assert!(
        lib.is_file(),
        "{} is missing: run `cargo build -p guestnet-mode-api --examples` first",
        lib.display()
    );
    lib
}

/// A modes directory with the built-in modes and the given libraries,
/// each copied under the name given beside it.
pub fn modes_dir_with(extra: &[(&Path, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("gnt-modes-")
        .tempdir()
        .unwrap();
    for entry in std::fs::read_dir(service::modes_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("libguestnet_mode_") && name.ends_with(".so") {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    for (lib, as_name) in extra {
        std::fs::copy(lib, dir.path().join(as_name)).unwrap();
    }
    dir
}
