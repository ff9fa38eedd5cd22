//! [`SnapshotPlan`]: every file of a crate snapshot, decided (and every refusal made) before
//! anything is written.

use std::{
    collections::{BTreeMap, VecDeque},
    fs,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use tempfile::TempDir;

use super::{
    files::{self, slash},
    manifest::{DepAction, DepKind, Manifest, PathDep},
    registry::{self, CARGO_VENDOR_DIR, SOURCE_CONFIG_FILE},
};
use crate::artifact::{ArtifactError, write::write_file};

/// The folder of the snapshot that holds the path dependencies from outside the crate.
pub const VENDOR_DIR: &str = "vendor";

/// Where the bytes of one snapshot file come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotSource {
    /// A file on disk, copied as it is.
    File(PathBuf),
    /// Bytes made by the plan (a manifest, rewritten or re-serialised).
    Bytes(Vec<u8>),
}

impl SnapshotSource {
    /// The file's bytes.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::Io`] when the file on disk cannot be read.
    pub fn read(&self) -> Result<Vec<u8>, ArtifactError> {
        match self {
            Self::File(path) => fs::read(path).map_err(|source| ArtifactError::Io {
                path: path.clone(),
                source,
            }),
            Self::Bytes(bytes) => Ok(bytes.clone()),
        }
    }
}

/// The files of a crate snapshot that builds on its own: snapshot-relative path → where its
/// bytes come from.
///
/// It holds the crate's files (all of them, git's view of them
/// in a git work tree, never `target/`, dotfiles or symlinks) and its `Cargo.lock` (its
/// workspace root's when it has none); the workspace members and path dependencies inside
/// the crate at their places, unchanged; the path dependencies outside it under
/// `vendor/<package>/`, every manifest repointed at them with relative paths, their
/// `[workspace]` tables removed and their workspace inheritance resolved. No manifest in it
/// holds the absolute path of the crate or of a vendored package. With
/// [`vendor_registry_sources`](Self::vendor_registry_sources), it also holds the sources of
/// every registry and git dependency under `cargo-vendor/`.
#[derive(Debug, Clone, Default)]
pub struct SnapshotPlan {
    /// `/`-separated snapshot paths → sources, sorted.
    files: BTreeMap<String, SnapshotSource>,
    /// The package names vendored under [`VENDOR_DIR`], sorted.
    vendored: Vec<String>,
    /// The temporary folder `cargo vendor` wrote into: the `cargo-vendor/` files are read
    /// from it, so it lives as long as the plan.
    cargo_vendor: Option<Arc<TempDir>>,
}

impl SnapshotPlan {
    /// Plans the snapshot of the crate at `crate_dir`: its files, the workspace members and
    /// path dependencies inside it at their places, the path dependencies outside it
    /// vendored under `vendor/<package>/`, every manifest repointed at them.
    ///
    /// Reads files and manifests only; nothing is written and cargo is not run.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::Manifest`] for a manifest that is not TOML or has no package name;
    /// [`ArtifactError::MissingDependency`], [`ArtifactError::SymlinkDependency`],
    /// [`ArtifactError::SymlinkOutOfTree`], [`ArtifactError::DuplicatePackage`] and
    /// [`ArtifactError::WorkspaceInheritance`] naming the dependency and the manifest that
    /// declares it; [`ArtifactError::AbsolutePathInSnapshot`] when a manifest would carry an
    /// absolute path of this machine; [`ArtifactError::Io`] for a folder or file that cannot
    /// be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use chainlog::artifact::SnapshotPlan;
    /// let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("Cargo.toml"), "[package]\nname = \"app\"\n")?;
    /// std::fs::create_dir(dir.path().join("src"))?;
    /// std::fs::write(dir.path().join("src/main.rs"), "fn main() {}\n")?;
    /// let plan = SnapshotPlan::collect(dir.path())?;
    /// let paths: Vec<&str> = plan.files().map(|(path, _)| path).collect();
    /// assert_eq!(paths, ["Cargo.toml", "src/main.rs"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn collect(crate_dir: &Path) -> Result<Self, ArtifactError> {
        Collector::new(crate_dir)?.run()
    }

    /// Every file: its `/`-separated path in the snapshot and where its bytes come from,
    /// sorted by path.
    pub fn files(&self) -> impl Iterator<Item = (&str, &SnapshotSource)> {
        self.files
            .iter()
            .map(|(path, source)| (path.as_str(), source))
    }

    /// How many files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether it holds no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The packages vendored under `vendor/`, by name, sorted.
    pub fn vendored(&self) -> &[String] {
        &self.vendored
    }

    /// How many packages the snapshot's `Cargo.lock` takes from a registry or git: what
    /// [`vendor_registry_sources`](Self::vendor_registry_sources) will vendor.
    pub fn external_packages(&self) -> usize {
        self.files
            .get("Cargo.lock")
            .and_then(|lock| lock.read().ok())
            .map_or(0, |lock| registry::external_packages(&lock))
    }

    /// Adds the sources of every registry and git dependency the snapshot's `Cargo.lock`
    /// pins under `cargo-vendor/<crate>-<version>/` (cargo's `.cargo-checksum.json` files
    /// included), and the source replacement a build needs in `cargo-vendor/source-config.toml`,
    /// so the snapshot builds with no registry at all
    /// ([`source_replacement_args`](super::source_replacement_args)). Returns how many crates
    /// were vendored (none for a crate without such dependencies, and then nothing is added).
    ///
    /// Materializes the plan into a temporary folder and runs `cargo vendor --locked
    /// --versioned-dirs` there (the `CARGO` variable names cargo, else `cargo` on `PATH`):
    /// offline first, from cargo's local cache, then online for what it lacks. Files the
    /// crate itself had under `cargo-vendor/` are replaced.
    ///
    /// # Errors
    ///
    /// [`ArtifactError::NoCargo`] when cargo cannot be run, [`ArtifactError::Vendor`] with
    /// cargo's first error when `cargo vendor` fails (or the crate has no `Cargo.lock`),
    /// [`ArtifactError::Io`] when the temporary folder cannot be written or read.
    pub fn vendor_registry_sources(&mut self) -> Result<usize, ArtifactError> {
        let prefix = format!("{CARGO_VENDOR_DIR}/");
        self.files.retain(|path, _| !path.starts_with(&prefix));
        let vendored = registry::vendor(|dir| self.materialize(dir))?;
        if let Some(config) = vendored.source_config {
            for (relative, path) in vendored.files {
                self.files
                    .insert(format!("{prefix}{relative}"), SnapshotSource::File(path));
            }
            self.files.insert(
                SOURCE_CONFIG_FILE.to_owned(),
                SnapshotSource::Bytes(config.into_bytes()),
            );
        }
        self.cargo_vendor = Some(Arc::new(vendored.dir));
        Ok(vendored.crates)
    }

    /// Writes the snapshot's files under `dir` (created if missing).
    ///
    /// # Errors
    ///
    /// [`ArtifactError::Io`] when a file cannot be read or written.
    pub fn materialize(&self, dir: &Path) -> Result<(), ArtifactError> {
        for (relative, source) in &self.files {
            write_file(&dir.join(relative), &source.read()?)?;
        }
        Ok(())
    }
}

/// A package to take: its folder (canonical) and its folder in the snapshot.
#[derive(Debug, Clone)]
struct Package {
    dir: PathBuf,
    /// `/`-separated, `""` for the crate itself.
    location: String,
    role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The crate being logged.
    Root,
    /// A member or path dependency inside the crate's folder: taken as it is.
    Inside,
    /// A path dependency outside the crate's folder: vendored.
    Vendored,
}

/// The state of one [`SnapshotPlan::collect`].
struct Collector {
    /// The crate's folder, canonical.
    root: PathBuf,
    files: BTreeMap<String, SnapshotSource>,
    /// Manifests by snapshot location, serialised last (the root's may still change).
    manifests: BTreeMap<String, Manifest>,
    /// Every package placed so far, by canonical folder.
    placed: BTreeMap<PathBuf, Package>,
    /// Vendored package name → its canonical folder.
    vendored: BTreeMap<String, PathBuf>,
    queue: VecDeque<Package>,
    /// Absolute paths that must not appear in any manifest of the snapshot.
    needles: Vec<PathBuf>,
}

impl Collector {
    fn new(crate_dir: &Path) -> Result<Self, ArtifactError> {
        let root = crate_dir
            .canonicalize()
            .map_err(|source| ArtifactError::io(crate_dir, source))?;
        let package = Package {
            dir: root.clone(),
            location: String::new(),
            role: Role::Root,
        };
        Ok(Self {
            needles: vec![crate_dir.to_path_buf(), root.clone()],
            root: root.clone(),
            files: BTreeMap::new(),
            manifests: BTreeMap::new(),
            placed: BTreeMap::from([(root, package.clone())]),
            vendored: BTreeMap::new(),
            queue: VecDeque::from([package]),
        })
    }

    fn run(mut self) -> Result<SnapshotPlan, ArtifactError> {
        while let Some(package) = self.queue.pop_front() {
            self.take(&package)?;
        }
        if let Some(root) = self.manifests.get_mut("")
            && root.is_workspace_root()
            && !self.vendored.is_empty()
        {
            // Vendored packages would otherwise become members (cargo makes every path
            // dependency below a workspace root one); they were not members before.
            root.exclude_from_workspace(VENDOR_DIR);
        }
        self.take_lock()?;
        for (location, manifest) in std::mem::take(&mut self.manifests) {
            let file = join(&location, "Cargo.toml");
            let text = manifest.to_text();
            self.check_no_absolute_path(&file, &text)?;
            self.files
                .insert(file, SnapshotSource::Bytes(text.into_bytes()));
        }
        Ok(SnapshotPlan {
            files: self.files,
            vendored: self.vendored.into_keys().collect(),
            cargo_vendor: None,
        })
    }

    /// Takes one package: its files, then its manifest with every path dependency placed
    /// (and queued) and repointed.
    fn take(&mut self, package: &Package) -> Result<(), ArtifactError> {
        let listing = files::list(&package.dir)?;
        for relative in listing.files {
            let source = SnapshotSource::File(package.dir.join(&relative));
            self.files
                .insert(join(&package.location, &relative), source);
        }
        let manifest_path = package.dir.join("Cargo.toml");
        let mut manifest = Manifest::read(&manifest_path)?;
        if package.role != Role::Root {
            let name = manifest.package_name()?;
            for relative in listing.symlinks {
                let target = self.symlink_target(&package.dir, &relative, &name)?;
                let source = SnapshotSource::File(target);
                self.files
                    .insert(join(&package.location, &relative), source);
            }
        }
        let detach = match package.role {
            Role::Vendored => true,
            // A crate inside another workspace becomes its own root in the snapshot.
            Role::Root => !manifest.is_workspace_root(),
            Role::Inside => false,
        };
        if detach {
            if manifest.uses_inheritance() {
                let root = workspace_root_of(&manifest)?;
                manifest.resolve_inheritance(&root)?;
            }
            manifest.detach_from_workspace();
        }
        if package.role == Role::Vendored {
            manifest.drop_root_only_tables();
        }
        if package.role == Role::Root && manifest.is_workspace_root() {
            self.take_members(&mut manifest)?;
        }
        let declaring = manifest.path.clone();
        manifest.rewrite_path_deps(&mut |dep| self.place(package, &declaring, dep))?;
        self.manifests.insert(package.location.clone(), manifest);
        Ok(())
    }

    /// Queues every `[workspace] members` entry (globs expanded) inside the crate; entries
    /// outside it are removed (a path dependency among them is vendored like any other).
    fn take_members(&mut self, manifest: &mut Manifest) -> Result<(), ArtifactError> {
        let excluded = manifest.workspace_list("exclude");
        let mut outside = Vec::new();
        for entry in manifest.workspace_list("members") {
            for dir in expand_member(&self.root, &entry) {
                let Ok(dir) = dir.canonicalize() else {
                    continue;
                };
                let Ok(relative) = dir.strip_prefix(&self.root) else {
                    outside.push(entry.clone());
                    continue;
                };
                let Some(location) = slash(relative) else {
                    continue;
                };
                let is_excluded = excluded
                    .iter()
                    .any(|e| location == *e || location.starts_with(&format!("{e}/")));
                if location.is_empty() || is_excluded || !dir.join("Cargo.toml").is_file() {
                    continue;
                }
                self.place_package(dir, location, Role::Inside);
            }
        }
        for key in ["members", "default-members"] {
            manifest.retain_workspace_list(key, |e| !outside.iter().any(|o| o == e));
        }
        Ok(())
    }

    /// Places the path dependency `dep` of `package` (whose manifest is `declaring`) and
    /// says how to repoint it.
    fn place(
        &mut self,
        package: &Package,
        declaring: &Path,
        dep: &PathDep<'_>,
    ) -> Result<DepAction, ArtifactError> {
        if package.role == Role::Vendored && dep.kind == DepKind::Dev {
            // A dependency's dev-dependencies are never built (as `cargo package` does).
            return Ok(if dep.has_version {
                DepAction::DropPath
            } else {
                DepAction::Remove
            });
        }
        let declared = package.dir.join(dep.path);
        let refuse_missing = || ArtifactError::MissingDependency {
            name: dep.name.to_owned(),
            manifest: declaring.to_path_buf(),
            path: declared.clone(),
        };
        match fs::symlink_metadata(&declared) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(ArtifactError::SymlinkDependency {
                    name: dep.name.to_owned(),
                    manifest: declaring.to_path_buf(),
                    path: declared,
                });
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(refuse_missing()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(refuse_missing());
            }
            Err(source) => {
                return Err(ArtifactError::Io {
                    path: declared,
                    source,
                });
            }
        }
        if !declared.join("Cargo.toml").is_file() {
            return Err(refuse_missing());
        }
        let dir = declared
            .canonicalize()
            .map_err(|source| ArtifactError::io(&declared, source))?;
        let location = match self.placed.get(&dir) {
            Some(placed) => placed.location.clone(),
            None => match dir.strip_prefix(&self.root).ok().and_then(slash) {
                Some(location) => self.place_package(dir, location, Role::Inside),
                None => self.vendor(dir, declared)?,
            },
        };
        let target = relative(&package.location, &location);
        let unchanged = !Path::new(dep.path).is_absolute() && normalize(dep.path) == target;
        Ok(if unchanged {
            DepAction::Keep
        } else {
            DepAction::SetPath(target)
        })
    }

    /// Places an outside package under `vendor/<name>`; returns that location.
    fn vendor(&mut self, dir: PathBuf, declared: PathBuf) -> Result<String, ArtifactError> {
        let name = Manifest::read(&dir.join("Cargo.toml"))?.package_name()?;
        if let Some(first) = self.vendored.get(&name) {
            return Err(ArtifactError::DuplicatePackage {
                name,
                first: first.clone(),
                second: dir,
            });
        }
        self.vendored.insert(name.clone(), dir.clone());
        self.needles.push(declared);
        self.needles.push(dir.clone());
        Ok(self.place_package(dir, format!("{VENDOR_DIR}/{name}"), Role::Vendored))
    }

    /// Records and queues a package unless already placed; returns its location.
    fn place_package(&mut self, dir: PathBuf, location: String, role: Role) -> String {
        if let Some(placed) = self.placed.get(&dir) {
            return placed.location.clone();
        }
        let package = Package {
            dir: dir.clone(),
            location: location.clone(),
            role,
        };
        self.placed.insert(dir, package.clone());
        self.queue.push_back(package);
        location
    }

    /// The file a dependency's symlink points at, when it stays inside the dependency's
    /// folder.
    fn symlink_target(
        &self,
        dir: &Path,
        relative: &str,
        package: &str,
    ) -> Result<PathBuf, ArtifactError> {
        let link = dir.join(relative);
        let out_of_tree = || ArtifactError::SymlinkOutOfTree {
            package: package.to_owned(),
            path: link.clone(),
        };
        let target = link.canonicalize().map_err(|_| out_of_tree())?;
        if target.starts_with(dir) && target.is_file() {
            Ok(target)
        } else {
            Err(out_of_tree())
        }
    }

    /// Takes the crate's `Cargo.lock` even when git does not track it, else its
    /// workspace root's (the crate then builds alone with its workspace's versions).
    fn take_lock(&mut self) -> Result<(), ArtifactError> {
        if self.files.contains_key("Cargo.lock") {
            return Ok(());
        }
        let own = self.root.join("Cargo.lock");
        let lock = if own.is_file() {
            Some(own)
        } else {
            let manifest = Manifest::read(&self.root.join("Cargo.toml"))?;
            find_workspace_root(&manifest)?
                .map(|root| root.dir().join("Cargo.lock"))
                .filter(|lock| lock.is_file())
        };
        if let Some(lock) = lock {
            self.files
                .insert("Cargo.lock".to_owned(), SnapshotSource::File(lock));
        }
        Ok(())
    }

    /// Refuses a manifest that holds the crate's or a vendored package's absolute path.
    fn check_no_absolute_path(&self, file: &str, text: &str) -> Result<(), ArtifactError> {
        let found = self.needles.iter().find(|needle| {
            let needle = needle.to_string_lossy();
            needle.len() > 1 && text.contains(needle.as_ref())
        });
        match found {
            Some(path) => Err(ArtifactError::AbsolutePathInSnapshot {
                file: file.to_owned(),
                path: path.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// The workspace root manifest of `manifest`'s package: `package.workspace` when set, else
/// the nearest ancestor folder whose `Cargo.toml` has `[workspace]`.
fn find_workspace_root(manifest: &Manifest) -> Result<Option<Manifest>, ArtifactError> {
    if let Some(path) = manifest.workspace_path() {
        let path = manifest.dir().join(path).join("Cargo.toml");
        return Manifest::read(&path).map(Some);
    }
    for dir in manifest.dir().ancestors().skip(1) {
        let path = dir.join("Cargo.toml");
        if path.is_file() {
            let candidate = Manifest::read(&path)?;
            if candidate.is_workspace_root() {
                return Ok(Some(candidate));
            }
        }
    }
    Ok(None)
}

/// [`find_workspace_root`], refusing when there is none.
fn workspace_root_of(manifest: &Manifest) -> Result<Manifest, ArtifactError> {
    find_workspace_root(manifest)?.ok_or_else(|| ArtifactError::WorkspaceInheritance {
        manifest: manifest.path.clone(),
        key: "workspace".to_owned(),
        reason: "no workspace root (a `Cargo.toml` with `[workspace]`) above it".to_owned(),
    })
}

/// The folders a `[workspace] members` entry names, `*` and `?` expanded per component.
fn expand_member(root: &Path, pattern: &str) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    for part in pattern.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if !part.contains(['*', '?']) {
            dirs.iter_mut().for_each(|d| d.push(part));
            continue;
        }
        let mut next = Vec::new();
        for dir in &dirs {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            let mut matched: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(part, n)))
                .map(|e| e.path())
                .collect();
            matched.sort();
            next.extend(matched);
        }
        dirs = next;
    }
    dirs
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` one.
fn wildcard(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// `location/relative`, or `relative` at the snapshot root.
fn join(location: &str, relative: &str) -> String {
    if location.is_empty() {
        relative.to_owned()
    } else {
        format!("{location}/{relative}")
    }
}

/// The relative path from snapshot folder `from` to snapshot folder `to` (`.` for the same).
fn relative(from: &str, to: &str) -> String {
    let from: Vec<&str> = from.split('/').filter(|p| !p.is_empty()).collect();
    let to: Vec<&str> = to.split('/').filter(|p| !p.is_empty()).collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts = vec![".."; from.len() - common];
    parts.extend(&to[common..]);
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// A relative path as written, `.` dropped and `x/..` collapsed, `/`-separated.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            Component::ParentDir => parts.push(".."),
            Component::Normal(name) => parts.push(name.to_str().unwrap_or("\u{fffd}")),
            Component::RootDir | Component::Prefix(_) => return String::new(),
        }
    }
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// Writes `files` (path relative to `root`, text) under `root`.
    fn write_files(root: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
    }

    fn paths(plan: &SnapshotPlan) -> Vec<&str> {
        plan.files().map(|(path, _)| path).collect()
    }

    fn text(plan: &SnapshotPlan, path: &str) -> String {
        let (_, source) = plan.files().find(|(p, _)| *p == path).unwrap();
        String::from_utf8(source.read().unwrap()).unwrap()
    }

    const APP_MANIFEST: &str = "# The app.\n[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
        [dependencies]\n# Our library.\nlib_a = { path = \"../outside/lib_a\" }   # keep this comment\n";

    /// `root/app` → `root/outside/lib_a` → `root/deps/lib_b` (declared by absolute path).
    fn outside_layout(root: &Path) {
        let lib_b = root.join("deps/lib_b");
        let lib_a_manifest = format!(
            "[package]\nname = \"lib_a\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nlib_b = {{ path = \"{}\" }}\n\n\
             [dev-dependencies]\ntest_only = {{ path = \"../test_only\" }}\n\n\
             [workspace]\n",
            lib_b.display()
        );
        write_files(
            root,
            &[
                ("app/Cargo.toml", APP_MANIFEST),
                ("app/src/main.rs", "fn main() {}\n"),
                ("outside/lib_a/Cargo.toml", &lib_a_manifest),
                ("outside/lib_a/src/lib.rs", "pub fn a() {}\n"),
                ("outside/lib_a/.env", "SECRET=1\n"),
                ("outside/lib_a/target/debug/junk", "built"),
                (
                    "deps/lib_b/Cargo.toml",
                    "[package]\nname = \"lib_b\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
                ),
                ("deps/lib_b/src/lib.rs", "pub fn b() {}\n"),
            ],
        );
    }

    #[test]
    fn outside_path_deps_are_vendored_and_manifests_repointed() {
        let dir = tempfile::tempdir().unwrap();
        outside_layout(dir.path());
        let plan = SnapshotPlan::collect(&dir.path().join("app")).unwrap();
        assert_eq!(
            paths(&plan),
            [
                "Cargo.toml",
                "src/main.rs",
                "vendor/lib_a/Cargo.toml",
                "vendor/lib_a/src/lib.rs",
                "vendor/lib_b/Cargo.toml",
                "vendor/lib_b/src/lib.rs",
            ]
        );
        assert_eq!(plan.vendored(), ["lib_a", "lib_b"]);
        assert_eq!(
            text(&plan, "Cargo.toml"),
            APP_MANIFEST.replace("../outside/lib_a", "vendor/lib_a")
        );
        let lib_a = text(&plan, "vendor/lib_a/Cargo.toml");
        assert!(lib_a.contains("lib_b = { path = \"../lib_b\" }"), "{lib_a}");
        assert!(!lib_a.contains("test_only"), "{lib_a}");
        assert!(!lib_a.contains("[workspace]"), "{lib_a}");
    }

    #[test]
    fn inside_members_and_path_deps_are_taken_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let root_manifest = "[workspace]\nmembers = [\".\", \"crates/*\"]\nexclude = [\"crates/skip\"]\n\n\
            [package]\nname = \"app\"\nversion = \"0.1.0\"\n\n\
            [dependencies]\ninner = { path = \"crates/inner\" } # inside\n";
        let inner_manifest =
            "# Inner.\n[package]\nname = \"inner\"\nversion = \"0.1.0\"\n\n[dev-dependencies]\n";
        write_files(
            dir.path(),
            &[
                ("Cargo.toml", root_manifest),
                ("src/lib.rs", "//! app\n"),
                ("crates/inner/Cargo.toml", inner_manifest),
                ("crates/inner/src/lib.rs", "//! inner\n"),
                ("crates/inner/build.rs", "fn main() {}\n"),
                ("crates/inner/target/x", "built"),
                (
                    "crates/inner/target/CACHEDIR.TAG",
                    "Signature: 8a477f597d28d172789f06886806bc55",
                ),
                (
                    "crates/tool/Cargo.toml",
                    "[package]\nname = \"tool\"\nversion = \"0.1.0\"\n",
                ),
                ("crates/tool/src/main.rs", "fn main() {}\n"),
                (
                    "crates/skip/Cargo.toml",
                    "[package]\nname = \"skip\"\nversion = \"0.1.0\"\n",
                ),
            ],
        );
        let plan = SnapshotPlan::collect(dir.path()).unwrap();
        assert_eq!(
            paths(&plan),
            [
                "Cargo.toml",
                "crates/inner/Cargo.toml",
                "crates/inner/build.rs",
                "crates/inner/src/lib.rs",
                "crates/tool/Cargo.toml",
                "crates/tool/src/main.rs",
                "src/lib.rs",
            ]
        );
        assert!(plan.vendored().is_empty());
        assert_eq!(text(&plan, "Cargo.toml"), root_manifest);
        assert_eq!(text(&plan, "crates/inner/Cargo.toml"), inner_manifest);
    }

    #[test]
    fn chainlog_own_snapshot_has_its_member_crates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let plan = SnapshotPlan::collect(root).unwrap();
        let files = paths(&plan);
        for needed in [
            "Cargo.toml",
            "Cargo.lock",
            "build.rs",
            "crates/chainlog-mock/Cargo.toml",
            "crates/chainlog-mock/src/lib.rs",
            "crates/chainlog-build/Cargo.toml",
            "crates/chainlog-build/src/lib.rs",
        ] {
            assert!(files.contains(&needed), "{needed} missing");
        }
        assert!(plan.vendored().is_empty());
        assert!(
            files
                .iter()
                .all(|f| !f.contains("target/") && !f.split('/').any(|p| p.starts_with('.'))),
            "{files:?}"
        );
        let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert_eq!(text(&plan, "Cargo.toml"), manifest);
    }

    #[test]
    fn crate_in_a_workspace_takes_its_lock_and_resolves_inheritance() {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[
                (
                    "Cargo.toml",
                    "[workspace]\nmembers = [\"app\", \"util\"]\n\
                     [workspace.package]\nversion = \"0.3.0\"\n\
                     [workspace.dependencies]\nutil = { path = \"util\" }\n",
                ),
                ("Cargo.lock", "version = 4\n"),
                (
                    "app/Cargo.toml",
                    "[package]\nname = \"app\"\nversion.workspace = true\n\n\
                     [dependencies]\nutil = { workspace = true }\n",
                ),
                ("app/src/lib.rs", "//! app\n"),
                (
                    "util/Cargo.toml",
                    "[package]\nname = \"util\"\nversion.workspace = true\n",
                ),
                ("util/src/lib.rs", "//! util\n"),
            ],
        );
        let plan = SnapshotPlan::collect(&dir.path().join("app")).unwrap();
        let lock = plan.files().find(|(p, _)| *p == "Cargo.lock").unwrap().1;
        assert_eq!(
            lock,
            &SnapshotSource::File(dir.path().canonicalize().unwrap().join("Cargo.lock"))
        );
        let app = text(&plan, "Cargo.toml");
        assert!(app.contains("version = \"0.3.0\""), "{app}");
        assert!(app.contains("util = { path = \"vendor/util\" }"), "{app}");
        let util = text(&plan, "vendor/util/Cargo.toml");
        assert!(util.contains("version = \"0.3.0\""), "{util}");
    }

    #[test]
    fn missing_path_dep_is_refused_naming_it_and_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &[("app/Cargo.toml", APP_MANIFEST)]);
        let err = SnapshotPlan::collect(&dir.path().join("app")).unwrap_err();
        assert!(
            matches!(&err, ArtifactError::MissingDependency { name, .. } if name == "lib_a"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("`lib_a`"), "{message}");
        assert!(message.contains("Cargo.toml"), "{message}");

        // A folder without a manifest is missing as well.
        fs::create_dir_all(dir.path().join("outside/lib_a/src")).unwrap();
        let err = SnapshotPlan::collect(&dir.path().join("app")).unwrap_err();
        assert!(
            matches!(err, ArtifactError::MissingDependency { .. }),
            "{err:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_dep_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        outside_layout(dir.path());
        fs::rename(dir.path().join("outside"), dir.path().join("real")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("real/lib_a"),
            dir.path().join("outside/lib_a"),
        )
        .unwrap();
        let err = SnapshotPlan::collect(&dir.path().join("app")).unwrap_err();
        assert!(
            matches!(&err, ArtifactError::SymlinkDependency { name, .. } if name == "lib_a"),
            "{err:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn dependency_file_symlinked_out_of_its_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        outside_layout(dir.path());
        let secret = dir.path().join("secret.rs");
        fs::write(&secret, "// elsewhere\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("outside/lib_a/src/more.rs")).unwrap();
        let err = SnapshotPlan::collect(&dir.path().join("app")).unwrap_err();
        assert!(
            matches!(&err, ArtifactError::SymlinkOutOfTree { package, .. } if package == "lib_a"),
            "{err:?}"
        );
    }

    #[test]
    fn two_outside_packages_of_one_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let lib = "[package]\nname = \"lib\"\nversion = \"0.1.0\"\n";
        write_files(
            dir.path(),
            &[
                (
                    "app/Cargo.toml",
                    "[package]\nname = \"app\"\n[dependencies]\none = { path = \"../a/lib\", package = \"lib\" }\n\
                     [build-dependencies]\ntwo = { path = \"../b/lib\", package = \"lib\" }\n",
                ),
                ("a/lib/Cargo.toml", lib),
                ("b/lib/Cargo.toml", lib),
            ],
        );
        let err = SnapshotPlan::collect(&dir.path().join("app")).unwrap_err();
        assert!(
            matches!(&err, ArtifactError::DuplicatePackage { name, .. } if name == "lib"),
            "{err:?}"
        );
    }

    #[test]
    fn absolute_path_left_in_a_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        let manifest = format!(
            "[package]\nname = \"app\"\n\n[package.metadata]\nhome = \"{}\"\n",
            app.display()
        );
        write_files(dir.path(), &[("app/Cargo.toml", &manifest)]);
        let err = SnapshotPlan::collect(&app).unwrap_err();
        assert!(
            matches!(&err, ArtifactError::AbsolutePathInSnapshot { file, .. } if file == "Cargo.toml"),
            "{err:?}"
        );
    }

    #[test]
    fn no_manifest_holds_an_absolute_path_after_vendoring() {
        let dir = tempfile::tempdir().unwrap();
        outside_layout(dir.path());
        let plan = SnapshotPlan::collect(&dir.path().join("app")).unwrap();
        let root = dir.path().to_string_lossy().into_owned();
        let canonical = dir.path().canonicalize().unwrap();
        for (path, source) in plan.files() {
            let bytes = String::from_utf8(source.read().unwrap()).unwrap();
            for needle in [root.as_str(), &canonical.to_string_lossy()] {
                assert!(!bytes.contains(needle), "`{path}` holds `{needle}`");
            }
        }
    }

    /// Proves the point of the plan: a crate whose path dependencies live outside it (one
    /// in a workspace, inheriting from it), materialized alone, builds with cargo offline.
    #[test]
    fn snapshot_builds_alone_with_cargo() {
        let source = tempfile::tempdir().unwrap();
        write_files(
            source.path(),
            &[
                (
                    "app/Cargo.toml",
                    "[workspace]\nmembers = [\"crates/*\"]\n\n\
                     [package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                     [dependencies]\nlib_a = { path = \"../outside/lib_a\" }\n\
                     inner = { path = \"crates/inner\" }\n",
                ),
                ("app/src/main.rs", "fn main() { lib_a::a(); inner::i(); }\n"),
                (
                    "app/crates/inner/Cargo.toml",
                    "[package]\nname = \"inner\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
                ),
                ("app/crates/inner/src/lib.rs", "pub fn i() {}\n"),
                (
                    "outside/Cargo.toml",
                    "[workspace]\nmembers = [\"lib_a\", \"lib_b\"]\n\n\
                     [workspace.package]\nedition = \"2021\"\n\n\
                     [workspace.dependencies]\nlib_b = { path = \"lib_b\" }\n",
                ),
                (
                    "outside/lib_a/Cargo.toml",
                    "[package]\nname = \"lib_a\"\nversion = \"0.1.0\"\nedition.workspace = true\n\n\
                     [dependencies]\nlib_b.workspace = true\n",
                ),
                ("outside/lib_a/src/lib.rs", "pub fn a() { lib_b::b(); }\n"),
                (
                    "outside/lib_b/Cargo.toml",
                    "[package]\nname = \"lib_b\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
                     [build-dependencies]\nbuild_helper = { path = \"../build_helper\" }\n",
                ),
                (
                    "outside/lib_b/build.rs",
                    "fn main() { build_helper::h(); }\n",
                ),
                ("outside/lib_b/src/lib.rs", "pub fn b() {}\n"),
                (
                    "outside/build_helper/Cargo.toml",
                    "[package]\nname = \"build_helper\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
                ),
                ("outside/build_helper/src/lib.rs", "pub fn h() {}\n"),
            ],
        );
        let plan = SnapshotPlan::collect(&source.path().join("app")).unwrap();
        assert_eq!(plan.vendored(), ["build_helper", "lib_a", "lib_b"]);
        let out = tempfile::tempdir().unwrap();
        let snapshot = out.path().join("code");
        plan.materialize(&snapshot).unwrap();
        // Nothing may still point at the original folders.
        drop(source);

        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .args(["build", "--offline", "--quiet"])
            .current_dir(&snapshot)
            .env("CARGO_TARGET_DIR", out.path().join("target"))
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cargo build failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(out.path().join("target/debug").is_dir());
    }

    #[test]
    fn relative_and_normalize_agree_on_snapshot_paths() {
        assert_eq!(relative("", "vendor/a"), "vendor/a");
        assert_eq!(relative("vendor/a", "vendor/b"), "../b");
        assert_eq!(relative("vendor/a", ""), "../..");
        assert_eq!(relative("crates/x", "crates/x"), ".");
        assert_eq!(normalize("./crates/../crates/x"), "crates/x");
        assert_eq!(normalize("../a"), "../a");
        assert!(wildcard("chainlog-*", "chainlog-mock"));
        assert!(!wildcard("chainlog-?", "chainlog-mock"));
    }
}
