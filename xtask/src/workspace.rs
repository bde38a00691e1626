//! Finds what the structure check reads: the workspace members named in the root
//! `Cargo.toml`, each member's crate targets (`src/lib.rs`, `src/main.rs`,
//! `src/bin/*`), and each target's module files, found by following `mod x;` from
//! the root the way rustc does (`x.rs` or `x/mod.rs`). Files declared only under
//! `#[cfg(test)]` are never followed. The reading is behind [`SourceReader`] so that
//! tests can hand in files from memory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::scan::{scan_file, FileScan, ModulePath};

/// Where the structure check gets file contents from.
pub trait SourceReader {
    /// The text of `path`, or `None` if there is no such file.
    fn read(&self, path: &Path) -> Option<String>;
}

/// Reads from the file system.
#[derive(Debug, Clone, Copy)]
pub struct FileSystem;

impl SourceReader for FileSystem {
    fn read(&self, path: &Path) -> Option<String> {
        fs::read_to_string(path).ok()
    }
}

/// Files held in memory, keyed by path: how tests hand in a small crate.
impl SourceReader for BTreeMap<PathBuf, String> {
    fn read(&self, path: &Path) -> Option<String> {
        self.get(path).cloned()
    }
}

/// One crate target (library or binary) and its module files.
#[derive(Debug, Clone)]
pub struct Target {
    /// How reports name it: the package name for a library, `package/bin/name` for
    /// a binary.
    pub label: String,
    pub files: Vec<ModuleFile>,
}

/// One file of a target's module tree.
#[derive(Debug, Clone)]
pub struct ModuleFile {
    /// The path as reports print it (relative to the workspace root when loaded
    /// from disk).
    pub path: PathBuf,
    pub module: ModulePath,
    pub scan: FileScan,
}

/// The member directories listed in the workspace's root `Cargo.toml` (a trailing
/// `/*` glob lists the directories below it).
pub fn workspace_members(root: &Path) -> Result<Vec<PathBuf>> {
    let manifest_path = root.join("Cargo.toml");
    let manifest = read_manifest(&manifest_path)?;
    let members = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .with_context(|| format!("{} has no [workspace] members", manifest_path.display()))?;
    let mut dirs = Vec::new();
    for member in members.iter().filter_map(toml::Value::as_str) {
        if let Some(parent) = member.strip_suffix("/*") {
            let mut found: Vec<PathBuf> = fs::read_dir(root.join(parent))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.join("Cargo.toml").is_file())
                .collect();
            found.sort();
            dirs.extend(found);
        } else {
            dirs.push(root.join(member));
        }
    }
    Ok(dirs)
}

fn read_manifest(path: &Path) -> Result<toml::Table> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse()
        .with_context(|| format!("parsing {}", path.display()))
}

/// The crate targets of the member at `member_dir`: `src/lib.rs`, `src/main.rs`,
/// `src/bin/*.rs`, `src/bin/*/main.rs` and any `[lib]`/`[[bin]]` `path`, with the
/// labels reports use.
pub fn member_targets(member_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let manifest = read_manifest(&member_dir.join("Cargo.toml"))?;
    let package = manifest
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .unwrap_or_else(|| {
            member_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("?")
        })
        .to_owned();
    let src = member_dir.join("src");
    let mut roots: Vec<(String, PathBuf)> = Vec::new();
    let mut add = |label: String, path: PathBuf| {
        if path.is_file() && !roots.iter().any(|(_, known)| *known == path) {
            roots.push((label, path));
        }
    };
    let lib_path = manifest
        .get("lib")
        .and_then(|l| l.get("path"))
        .and_then(toml::Value::as_str);
    add(
        package.clone(),
        lib_path.map_or(src.join("lib.rs"), |p| member_dir.join(p)),
    );
    add(format!("{package}/bin/{package}"), src.join("main.rs"));
    let mut bins: Vec<PathBuf> = fs::read_dir(src.join("bin"))
        .map(|dir| {
            dir.filter_map(|entry| entry.ok().map(|e| e.path()))
                .collect()
        })
        .unwrap_or_default();
    bins.sort();
    for bin in bins {
        let (name, path) = if bin.is_dir() {
            (bin.file_name(), bin.join("main.rs"))
        } else if bin.extension().is_some_and(|e| e == "rs") {
            (bin.file_stem(), bin.clone())
        } else {
            continue;
        };
        let name = name.and_then(|n| n.to_str()).unwrap_or("?");
        add(format!("{package}/bin/{name}"), path);
    }
    let declared_bins = manifest.get("bin").and_then(toml::Value::as_array);
    for bin in declared_bins.into_iter().flatten() {
        if let (Some(name), Some(path)) = (
            bin.get("name").and_then(toml::Value::as_str),
            bin.get("path").and_then(toml::Value::as_str),
        ) {
            add(format!("{package}/bin/{name}"), member_dir.join(path));
        }
    }
    Ok(roots)
}

/// Every target of every workspace member under `root`, with file paths printed
/// relative to `root`.
pub fn load_workspace(root: &Path) -> Result<Vec<Target>> {
    let mut targets = Vec::new();
    for member in workspace_members(root)? {
        for (label, root_file) in member_targets(&member)? {
            let mut target = load_target(&FileSystem, label, &root_file);
            for file in &mut target.files {
                if let Ok(relative) = file.path.strip_prefix(root) {
                    file.path = relative.to_path_buf();
                }
            }
            targets.push(target);
        }
    }
    Ok(targets)
}

/// Loads the module tree rooted at `root_file` by following `mod x;` declarations.
/// Declared files that cannot be found are left out (the compiler reports those).
pub fn load_target(reader: &dyn SourceReader, label: String, root_file: &Path) -> Target {
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    let root_dir = root_file.parent().unwrap_or(Path::new("")).to_path_buf();
    // (file, its module path, the directory holding its child modules)
    let mut pending = vec![(root_file.to_path_buf(), Vec::new(), root_dir)];
    while let Some((path, module, child_dir)) = pending.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let Some(text) = reader.read(&path) else {
            continue;
        };
        let scan = scan_file(&text, &module);
        for child in scan.child_files.iter().rev() {
            let mut dir = child_dir.clone();
            // Path components between this file's module and the child: inline
            // modules, which map to directories.
            for inline in &child[module.len()..child.len() - 1] {
                dir.push(inline);
            }
            let name = &child[child.len() - 1];
            let flat = dir.join(format!("{name}.rs"));
            let nested = dir.join(name).join("mod.rs");
            let (file, grandchild_dir) = if reader.read(&flat).is_some() {
                (flat, dir.join(name))
            } else {
                (nested, dir.join(name))
            };
            pending.push((file, child.clone(), grandchild_dir));
        }
        if !scan.test_only {
            files.push(ModuleFile { path, module, scan });
        }
    }
    Target { label, files }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mod_declarations_lead_to_flat_nested_and_inline_files() {
        let files: BTreeMap<PathBuf, String> = [
            ("src/lib.rs", "mod a;\nmod b;\n#[cfg(test)]\nmod tests;\n"),
            ("src/a.rs", "mod c;\nmod inner { mod d; }\n"),
            ("src/a/c.rs", ""),
            ("src/a/inner/d.rs", ""),
            ("src/b/mod.rs", "mod e;\n"),
            ("src/b/e.rs", ""),
            ("src/tests.rs", "use crate::a;"),
        ]
        .into_iter()
        .map(|(p, t)| (PathBuf::from(p), t.to_owned()))
        .collect();
        let target = load_target(&files, "k".into(), Path::new("src/lib.rs"));
        let mut found: Vec<(String, String)> = target
            .files
            .iter()
            .map(|f| (f.path.display().to_string(), f.module.join("::")))
            .collect();
        found.sort();
        let expected = [
            ("src/a.rs", "a"),
            ("src/a/c.rs", "a::c"),
            ("src/a/inner/d.rs", "a::inner::d"),
            ("src/b/e.rs", "b::e"),
            ("src/b/mod.rs", "b"),
            ("src/lib.rs", ""),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
            .collect();
        assert_eq!(found, expected);
    }
}
