//! The folders of `src/` are layers: each module may import only from its own folder and the
//! folders below it, so that a reader can tell from a file's path what it may depend on.

use std::path::{Path, PathBuf};

/// From the bottom up. Layers with the same rank are siblings and may not import each other.
const LAYERS: [(&str, u32); 7] = [
    ("util", 0),
    ("engine::kernels", 1),
    ("engine", 2),
    ("spec", 3),
    ("tools", 4),
    ("report", 4),
    ("run", 5),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layer of a module path such as `engine::kernels::matmul`: the longest listed prefix.
fn layer_of(module: &str) -> Option<(&'static str, u32)> {
    LAYERS
        .iter()
        .filter(|(name, _)| module == *name || module.starts_with(&format!("{name}::")))
        .max_by_key(|(name, _)| name.len())
        .copied()
}

/// Every `crate::a::b` path in `text`, as `a::b` (the first two segments).
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let two: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).take(2).collect();
        found.push(two.join("::"));
    }
    found
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let module = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .filter(|c| c != "mod")
            .collect::<Vec<_>>()
            .join("::");
        let Some((own, rank)) = layer_of(&module) else {
            continue; // lib.rs, main.rs and the command line on top
        };
        checked += 1;
        let text = std::fs::read_to_string(file).unwrap();
        for path in crate_paths(&text) {
            let Some((other, other_rank)) = layer_of(&path) else {
                wrong.push(format!(
                    "{}: crate::{path} is in no layer",
                    relative.display()
                ));
                continue;
            };
            if other != own && other_rank >= rank {
                wrong.push(format!(
                    "{}: {own} imports crate::{path} from {other}",
                    relative.display()
                ));
            }
        }
    }
    assert!(checked > 25, "only {checked} files found under src/");
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_layer_check_sees_an_upward_import() {
    let paths = crate_paths("use crate::run::store::Store;\nlet x = crate::util::files::hex(b);");
    assert_eq!(paths, ["run::store", "util::files"]);
    assert_eq!(
        layer_of("engine::kernels::matmul"),
        Some(("engine::kernels", 1))
    );
    assert_eq!(layer_of("engine::model"), Some(("engine", 2)));
    assert_eq!(layer_of("cli"), None);
}
