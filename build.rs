//! Rebuilds when a migration is added or changed: `sqlx::migrate!` embeds the files at compile
//! time, and without this a new file alone leaves the old set in the binary.
//!
//! Also lists the templates this build was made with (`$OUT_DIR/built_templates.rs`, each file's
//! bytes): the start compares the installed ones with them, since templates of another version
//! render only at the first request that needs them, as a 500.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=templates");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let mut files = Vec::new();
    collect(&root.join("templates"), &mut files);
    files.sort();
    let mut out = String::from(
        "/// The templates this build was made with: path under `templates/`, bytes.\n",
    );
    out.push_str("pub(crate) const BUILT_TEMPLATES: &[(&str, &[u8])] = &[\n");
    for file in &files {
        let relative = file
            .strip_prefix(root.join("templates"))
            .expect("under templates/")
            .to_string_lossy()
            .replace('\\', "/");
        out.push_str(&format!(
            "    ({relative:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("built_templates.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

/// Every `.tera` file under `dir`, its subfolders' included.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "tera") {
            files.push(path);
        }
    }
}
