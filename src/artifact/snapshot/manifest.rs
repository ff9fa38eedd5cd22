//! One `Cargo.toml` of a crate snapshot, read and rewritten with `toml_edit` (so comments
//! and formatting survive): its package name, its path dependencies (found and repointed),
//! its workspace members, and the workspace inheritance a vendored manifest must lose.
//!
//! Cargo itself is never run: logging stays fast and works where `cargo metadata` would
//! need the network.

use std::{
    fs,
    path::{Path, PathBuf},
};

use toml_edit::{Array, DocumentMut, InlineTable, Item, TableLike, Value};

use crate::artifact::ArtifactError;

/// The dependency tables of a manifest (or of one `[target.'cfg(..)']` table), with the kind
/// each holds; the `_` spellings are cargo's old aliases.
const DEP_TABLES: &[(&str, DepKind)] = &[
    ("dependencies", DepKind::Normal),
    ("build-dependencies", DepKind::Build),
    ("build_dependencies", DepKind::Build),
    ("dev-dependencies", DepKind::Dev),
    ("dev_dependencies", DepKind::Dev),
];

/// Which table a dependency is declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DepKind {
    /// `[dependencies]` (also under `[target.*]`).
    Normal,
    /// `[build-dependencies]` (also under `[target.*]`).
    Build,
    /// `[dev-dependencies]` (also under `[target.*]`).
    Dev,
    /// `[workspace.dependencies]`.
    Workspace,
    /// `[patch.<registry>]`.
    Patch,
}

/// A dependency entry with a `path` key.
#[derive(Debug)]
pub(super) struct PathDep<'a> {
    /// The key the manifest names it by (not necessarily the package name).
    pub name: &'a str,
    /// The `path` value, as written.
    pub path: &'a str,
    /// The table it is in.
    pub kind: DepKind,
    /// Whether it also has a `version` (so it can stand without its path).
    pub has_version: bool,
}

/// What to do with a path dependency entry.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DepAction {
    /// Leave it as written.
    Keep,
    /// Point `path` at this (relative) path.
    SetPath(String),
    /// Remove the `path` key (the entry keeps its `version`).
    DropPath,
    /// Remove the whole entry.
    Remove,
}

/// A parsed manifest and where it is on disk.
#[derive(Debug, Clone)]
pub(super) struct Manifest {
    /// The `Cargo.toml` file.
    pub path: PathBuf,
    /// Its content, formatting kept.
    pub doc: DocumentMut,
}

impl Manifest {
    /// Reads and parses `path`.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::Io`] when it cannot be read, [`ArtifactError::Manifest`] when it is
    /// not TOML.
    pub fn read(path: &Path) -> Result<Self, ArtifactError> {
        let text = fs::read_to_string(path).map_err(|source| ArtifactError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let doc = text
            .parse::<DocumentMut>()
            .map_err(|err| ArtifactError::Manifest {
                path: path.to_path_buf(),
                message: err.to_string().trim().to_owned(),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// The folder holding the manifest.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// `[package] name`, checked to be a plain package name (it becomes a folder name).
    ///
    /// # Errors
    ///
    /// [`ArtifactError::Manifest`] without one, or for a name that is not
    /// `[A-Za-z0-9_-]+`.
    pub fn package_name(&self) -> Result<String, ArtifactError> {
        let name = self
            .doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(Item::as_str)
            .ok_or_else(|| self.invalid("no `package.name`".to_owned()))?;
        let plain = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plain {
            return Err(self.invalid(format!("package name `{name}` is not [A-Za-z0-9_-]+")));
        }
        Ok(name.to_owned())
    }

    /// Whether it has a `[workspace]` table (it is a workspace root).
    pub fn is_workspace_root(&self) -> bool {
        self.doc.contains_key("workspace")
    }

    /// `package.workspace`, the explicit path to its workspace root, when set.
    pub fn workspace_path(&self) -> Option<&str> {
        self.doc
            .get("package")
            .and_then(|p| p.get("workspace"))
            .and_then(Item::as_str)
    }

    /// The strings of `[workspace] <key>` (`members`, `default-members`, `exclude`).
    pub fn workspace_list(&self, key: &str) -> Vec<String> {
        self.doc
            .get("workspace")
            .and_then(|w| w.get(key))
            .and_then(Item::as_array)
            .map(|array| {
                array
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes the entries of `[workspace] <key>` for which `keep` is false.
    pub fn retain_workspace_list(&mut self, key: &str, keep: impl Fn(&str) -> bool) {
        if let Some(array) = self
            .doc
            .get_mut("workspace")
            .and_then(|w| w.get_mut(key))
            .and_then(Item::as_array_mut)
        {
            array.retain(|v| v.as_str().is_none_or(&keep));
        }
    }

    /// Adds `entry` to `[workspace] exclude` (created if missing) unless it is there.
    pub fn exclude_from_workspace(&mut self, entry: &str) {
        let Some(workspace) = self
            .doc
            .get_mut("workspace")
            .and_then(Item::as_table_like_mut)
        else {
            return;
        };
        if workspace.get("exclude").is_none() {
            workspace.insert("exclude", Item::Value(Value::Array(Array::new())));
        }
        if let Some(array) = workspace.get_mut("exclude").and_then(Item::as_array_mut)
            && !array.iter().any(|v| v.as_str() == Some(entry))
        {
            array.push(entry);
        }
    }

    /// Makes it the manifest of a package that is no workspace's member nor root: removes
    /// `[workspace]` and `package.workspace`.
    pub fn detach_from_workspace(&mut self) {
        let root = self.doc.as_table_mut();
        root.remove("workspace");
        if let Some(package) = root.get_mut("package").and_then(Item::as_table_like_mut) {
            package.remove("workspace");
        }
    }

    /// Removes `[patch]` and `[replace]`, which cargo reads only at the root of the build:
    /// a dependency's would be ignored (and may name paths out of the snapshot).
    pub fn drop_root_only_tables(&mut self) {
        let root = self.doc.as_table_mut();
        root.remove("patch");
        root.remove("replace");
    }

    /// Whether anything is inherited from a workspace (`workspace = true` in `[package]`,
    /// a dependency table or `[lints]`).
    pub fn uses_inheritance(&self) -> bool {
        let inherits = |item: &Item| {
            item.as_table_like()
                .and_then(|t| t.get("workspace"))
                .and_then(Item::as_bool)
                == Some(true)
        };
        let in_table = |item: Option<&Item>| {
            item.and_then(Item::as_table_like)
                .is_some_and(|t| t.iter().any(|(_, v)| inherits(v)))
        };
        in_table(self.doc.get("package"))
            || self.doc.get("lints").is_some_and(inherits)
            || dep_tables(&self.doc).into_iter().any(|t| in_table(Some(t)))
    }

    /// Replaces every `workspace = true` with its value from the workspace root `root`, as
    /// `cargo package` does: `[package]` keys from `[workspace.package]` (`readme` and
    /// `license-file` are dropped: a build does not read them, and their paths would point
    /// out of the snapshot), dependencies from `[workspace.dependencies]` (a `path` there
    /// made absolute, `features` merged, the member's other keys winning), `[lints]` from
    /// `[workspace.lints]`.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::WorkspaceInheritance`] naming the first key `root` does not define.
    pub fn resolve_inheritance(&mut self, root: &Self) -> Result<(), ArtifactError> {
        let manifest = self.path.clone();
        let missing = |key: String| ArtifactError::WorkspaceInheritance {
            manifest: manifest.clone(),
            key,
            reason: format!("`{}` does not define it", root.path.display()),
        };
        let workspace = root.doc.get("workspace");
        let ws_get = |table: &str, key: &str| {
            workspace
                .and_then(|w| w.get(table))
                .and_then(|t| t.get(key))
        };
        if let Some(package) = self
            .doc
            .get_mut("package")
            .and_then(Item::as_table_like_mut)
        {
            for key in inherited_keys(package) {
                if key == "readme" || key == "license-file" {
                    package.remove(&key);
                    continue;
                }
                let value = ws_get("package", &key)
                    .cloned()
                    .ok_or_else(|| missing(format!("package.{key}")))?;
                package.insert(&key, value);
            }
        }
        let lints_inherit = self
            .doc
            .get("lints")
            .and_then(|l| l.get("workspace"))
            .and_then(Item::as_bool)
            == Some(true);
        if lints_inherit {
            let lints = workspace
                .and_then(|w| w.get("lints"))
                .cloned()
                .ok_or_else(|| missing("lints".to_owned()))?;
            self.doc.insert("lints", lints);
        }
        let root_dir = root.dir().to_path_buf();
        for_each_dep_table(&mut self.doc, &mut |table, table_name, _kind| {
            for name in inherited_keys(table) {
                let base = ws_get("dependencies", &name)
                    .ok_or_else(|| missing(format!("{table_name}.{name}")))?;
                let resolved = merge_inherited_dep(base, table.get(&name), &root_dir);
                table.insert(&name, Item::Value(Value::InlineTable(resolved)));
            }
            Ok(())
        })
    }

    /// Calls `decide` for every dependency with a `path` key — in the dependency tables,
    /// under `[target.*]`, `[workspace.dependencies]` and `[patch.*]` — and applies what it
    /// returns.
    ///
    /// # Errors
    ///
    /// The first error `decide` returns.
    pub fn rewrite_path_deps(
        &mut self,
        decide: &mut dyn FnMut(&PathDep<'_>) -> Result<DepAction, ArtifactError>,
    ) -> Result<(), ArtifactError> {
        for_each_dep_table(&mut self.doc, &mut |table, _name, kind| {
            let mut remove = Vec::new();
            for (key, item) in table.iter_mut() {
                let Some(entry) = item.as_table_like_mut() else {
                    continue;
                };
                let Some(path) = entry.get("path").and_then(Item::as_str).map(str::to_owned) else {
                    continue;
                };
                let name = key.get().to_owned();
                let dep = PathDep {
                    name: &name,
                    path: &path,
                    kind,
                    has_version: entry.contains_key("version"),
                };
                match decide(&dep)? {
                    DepAction::Keep => {}
                    DepAction::SetPath(new) => set_str(entry, "path", &new),
                    DepAction::DropPath => {
                        entry.remove("path");
                    }
                    DepAction::Remove => remove.push(name),
                }
            }
            for name in remove {
                table.remove(&name);
            }
            Ok(())
        })
    }

    /// The manifest as text, formatting and comments as they were.
    pub fn to_text(&self) -> String {
        self.doc.to_string()
    }

    fn invalid(&self, message: String) -> ArtifactError {
        ArtifactError::Manifest {
            path: self.path.clone(),
            message,
        }
    }
}

/// The dependency tables of `doc`, read-only (see [`for_each_dep_table`]).
fn dep_tables(doc: &DocumentMut) -> Vec<&Item> {
    let mut out: Vec<&Item> = DEP_TABLES.iter().filter_map(|(n, _)| doc.get(n)).collect();
    if let Some(targets) = doc.get("target").and_then(Item::as_table_like) {
        for (_, platform) in targets.iter() {
            out.extend(DEP_TABLES.iter().filter_map(|(n, _)| platform.get(n)));
        }
    }
    out.extend(doc.get("workspace").and_then(|w| w.get("dependencies")));
    if let Some(patches) = doc.get("patch").and_then(Item::as_table_like) {
        out.extend(patches.iter().map(|(_, t)| t));
    }
    out
}

/// What [`for_each_dep_table`] calls with each table, its name (for messages) and its kind.
type TableVisitor<'f> =
    dyn FnMut(&mut dyn TableLike, &str, DepKind) -> Result<(), ArtifactError> + 'f;

/// Calls `f` with every dependency table of `doc`.
fn for_each_dep_table(
    doc: &mut DocumentMut,
    f: &mut TableVisitor<'_>,
) -> Result<(), ArtifactError> {
    let root = doc.as_table_mut();
    for (name, kind) in DEP_TABLES {
        if let Some(table) = root.get_mut(name).and_then(Item::as_table_like_mut) {
            f(table, name, *kind)?;
        }
    }
    if let Some(targets) = root.get_mut("target").and_then(Item::as_table_like_mut) {
        for (cfg, platform) in targets.iter_mut() {
            let Some(platform) = platform.as_table_like_mut() else {
                continue;
            };
            for (name, kind) in DEP_TABLES {
                if let Some(table) = platform.get_mut(name).and_then(Item::as_table_like_mut) {
                    f(table, &format!("target.{}.{name}", cfg.get()), *kind)?;
                }
            }
        }
    }
    if let Some(table) = root
        .get_mut("workspace")
        .and_then(|w| w.get_mut("dependencies"))
        .and_then(Item::as_table_like_mut)
    {
        f(table, "workspace.dependencies", DepKind::Workspace)?;
    }
    if let Some(patches) = root.get_mut("patch").and_then(Item::as_table_like_mut) {
        for (registry, table) in patches.iter_mut() {
            if let Some(table) = table.as_table_like_mut() {
                f(table, &format!("patch.{}", registry.get()), DepKind::Patch)?;
            }
        }
    }
    Ok(())
}

/// The keys of `table` whose value is `{ workspace = true }` (or the dotted
/// `key.workspace = true`).
fn inherited_keys(table: &dyn TableLike) -> Vec<String> {
    table
        .iter()
        .filter(|(_, item)| {
            item.as_table_like()
                .and_then(|t| t.get("workspace"))
                .and_then(Item::as_bool)
                == Some(true)
        })
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// A workspace dependency `base` (a version string or a table) with the member's own keys
/// of `member` on top; a relative `path` of `base` is made absolute from `root_dir` (it is
/// repointed afterwards like any path dependency).
fn merge_inherited_dep(base: &Item, member: Option<&Item>, root_dir: &Path) -> InlineTable {
    let mut merged = InlineTable::new();
    if let Some(version) = base.as_str() {
        merged.insert("version", version.into());
    } else if let Some(table) = base.as_table_like() {
        for (key, item) in table.iter() {
            if let Some(value) = item.as_value() {
                merged.insert(key, value.clone().decorated("", ""));
            }
        }
    }
    if let Some(path) = merged.get("path").and_then(Value::as_str) {
        let absolute = root_dir.join(path).to_string_lossy().into_owned();
        merged.insert("path", absolute.into());
    }
    let Some(member) = member.and_then(Item::as_table_like) else {
        return merged;
    };
    for (key, item) in member.iter() {
        let Some(value) = item.as_value() else {
            continue;
        };
        match key {
            "workspace" => {}
            "features" => {
                let mut features: Array = merged
                    .get("features")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for feature in value.as_array().into_iter().flatten() {
                    if !features.iter().any(|f| f.as_str() == feature.as_str()) {
                        features.push(feature.clone().decorated("", ""));
                    }
                }
                features.fmt();
                merged.insert("features", Value::Array(features));
            }
            _ => {
                merged.insert(key, value.clone().decorated("", ""));
            }
        }
    }
    merged.fmt();
    merged
}

/// Sets string `key` of `table`, keeping the old value's spacing and comments.
fn set_str(table: &mut dyn TableLike, key: &str, new: &str) {
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(value) => {
            let decor = value.decor().clone();
            *value = new.into();
            *value.decor_mut() = decor;
        }
        None => {
            table.insert(key, Item::Value(new.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        Manifest {
            path: PathBuf::from("/x/Cargo.toml"),
            doc: text.parse().unwrap(),
        }
    }

    #[test]
    fn rewrite_finds_every_path_dep_and_keeps_formatting() {
        let text = "[package]\nname = \"app\" # the name\n\n\
                    [dependencies]\na = { path = \"../a\" } # comment a\nserde = \"1\"\n\n\
                    [dependencies.b]\npath = \"/abs/b\"\n\n\
                    [build-dependencies]\nc = { path = \"../c\", version = \"0.1\" }\n\n\
                    [target.'cfg(unix)'.dev-dependencies]\nd = { path = \"../d\" }\n\n\
                    [workspace.dependencies]\ne = { path = \"../e\" }\n";
        let mut m = manifest(text);
        let mut seen = Vec::new();
        m.rewrite_path_deps(&mut |dep| {
            seen.push((dep.name.to_owned(), dep.path.to_owned(), dep.kind));
            Ok(match dep.name {
                "a" => DepAction::SetPath("vendor/a".to_owned()),
                "b" => DepAction::SetPath("vendor/b".to_owned()),
                "c" => DepAction::DropPath,
                "d" => DepAction::Remove,
                _ => DepAction::Keep,
            })
        })
        .unwrap();
        let kinds: Vec<DepKind> = seen.iter().map(|s| s.2).collect();
        assert_eq!(
            kinds,
            [
                DepKind::Normal,
                DepKind::Normal,
                DepKind::Build,
                DepKind::Dev,
                DepKind::Workspace
            ]
        );
        let out = m.to_text();
        assert!(
            out.contains("a = { path = \"vendor/a\" } # comment a\n"),
            "{out}"
        );
        assert!(out.contains("name = \"app\" # the name\n"), "{out}");
        assert!(
            out.contains("[dependencies.b]\npath = \"vendor/b\"\n"),
            "{out}"
        );
        assert!(out.contains("c = { version = \"0.1\" }"), "{out}");
        assert!(!out.contains("d = "), "{out}");
        assert!(out.contains("e = { path = \"../e\" }"), "{out}");
    }

    #[test]
    fn inheritance_is_resolved_from_the_workspace_root() {
        let root = Manifest {
            path: PathBuf::from("/ws/Cargo.toml"),
            doc: "[workspace]\nmembers = [\"m\"]\n\
                  [workspace.package]\nversion = \"1.2.3\"\nedition = \"2021\"\n\
                  [workspace.dependencies]\nserde = { version = \"1\", features = [\"derive\"] }\n\
                  util = { path = \"util\" }\n\
                  [workspace.lints.rust]\nunsafe_code = \"forbid\"\n"
                .parse()
                .unwrap(),
        };
        let mut m = manifest(
            "[package]\nname = \"m\"\nversion.workspace = true\nedition = { workspace = true }\n\
             readme.workspace = true\nworkspace = \"..\"\n\n\
             [dependencies]\nserde = { workspace = true, features = [\"rc\"], optional = true }\n\
             util.workspace = true\n\n[lints]\nworkspace = true\n",
        );
        assert!(m.uses_inheritance());
        m.resolve_inheritance(&root).unwrap();
        m.detach_from_workspace();
        m.drop_root_only_tables();
        assert!(!m.uses_inheritance());
        let out = m.to_text();
        assert!(out.contains("version = \"1.2.3\""), "{out}");
        assert!(out.contains("edition = \"2021\""), "{out}");
        assert!(!out.contains("readme"), "{out}");
        assert!(!out.contains("workspace"), "{out}");
        assert!(
            out.contains(
                "serde = { version = \"1\", features = [\"derive\", \"rc\"], optional = true }"
            ),
            "{out}"
        );
        assert!(out.contains("util = { path = \"/ws/util\" }"), "{out}");
        assert!(out.contains("unsafe_code = \"forbid\""), "{out}");
    }

    #[test]
    fn inheriting_an_undefined_key_is_refused_naming_it() {
        let root = manifest("[workspace]\n");
        let mut m = manifest("[package]\nname = \"m\"\nversion.workspace = true\n");
        let err = m.resolve_inheritance(&root).unwrap_err();
        assert!(err.to_string().contains("`package.version`"), "{err}");
    }

    #[test]
    fn package_name_must_be_plain() {
        assert_eq!(
            manifest("[package]\nname = \"a-b_c\"\n")
                .package_name()
                .unwrap(),
            "a-b_c"
        );
        for bad in ["[package]\nname = \"../x\"\n", "[workspace]\n"] {
            assert!(manifest(bad).package_name().is_err(), "{bad}");
        }
    }
}
