//! The manifest folder as a source of changes: each scan stats every manifest file and
//! reads only those whose identity (size, times, inode) moved, so the loader's own reads
//! never count as changes, and turns what changed into upserts and removals.
//!
//! A file that cannot be used (unreadable, empty, broken YAML, a symlink loop) keeps the
//! definitions it last had, and its problem is reported once per change of the file:
//! deleting a file is how its definitions go away. That also keeps definitions from
//! flickering while a tool rewrites a file in place (truncate, then write).
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::read::{self as manifests, ManifestError};
use crate::compiler::Change;
use crate::definitions::{Definition, DefinitionId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What identifies one version of a file without reading it. Symlinks are followed, so a
/// ConfigMap's `..data` swap shows as a new inode behind the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Fingerprint {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

#[derive(Debug, Default)]
struct FileState {
    /// Of the version last looked at, good or not.
    seen: Option<Fingerprint>,
    /// Hash of the text the definitions came from.
    good_text: Option<u64>,
    /// Sorted by id; shared with the compiler.
    definitions: Vec<Arc<Definition>>,
    /// The problem last reported, so it is reported once.
    problem: Option<String>,
}

impl FileState {
    fn find(&self, id: &DefinitionId) -> Option<&Arc<Definition>> {
        self.definitions
            .binary_search_by(|d| d.id.cmp(id))
            .ok()
            .map(|at| &self.definitions[at])
    }
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    pub changes: Vec<Change>,
    /// Problems not reported before.
    pub problems: Vec<ManifestError>,
    /// Files whose problem went away.
    pub recovered: Vec<PathBuf>,
    /// Files read (not merely looked at).
    pub files_read: usize,
}

/// The definitions of a folder's files as last read.
#[derive(Debug)]
pub struct ManifestFolder {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// Which files define each id, sorted; the first is served, the others are reported.
    owners: HashMap<DefinitionId, Vec<Arc<Path>>>,
    /// One allocation per file path, shared by `owners`.
    paths: HashMap<PathBuf, Arc<Path>>,
    reported_duplicates: BTreeSet<(DefinitionId, Vec<PathBuf>)>,
    folder_problem: Option<String>,
}

fn text_hash(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

enum Look {
    Gone,
    NotAFile,
    Unchanged,
    Problem(Fingerprint, String),
    Read(Fingerprint, u64, Vec<Definition>),
}

impl ManifestFolder {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ManifestFolder {
            dir: dir.into(),
            files: BTreeMap::new(),
            owners: HashMap::new(),
            paths: HashMap::new(),
            reported_duplicates: BTreeSet::new(),
            folder_problem: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Looks at every file and returns what changed since the last scan.
    pub fn scan(&mut self) -> Scan {
        let mut scan = Scan::default();
        let names = match manifest_names(&self.dir) {
            Ok(names) => {
                if self.folder_problem.take().is_some() {
                    scan.recovered.push(self.dir.clone());
                }
                names
            }
            Err(message) => {
                // A folder being replaced is briefly missing: keep everything.
                let message = format!("{message}; keeping the definitions read before");
                if self.folder_problem.as_deref() != Some(message.as_str()) {
                    scan.problems.push(ManifestError {
                        file: self.dir.clone(),
                        message: message.clone(),
                    });
                    self.folder_problem = Some(message);
                }
                return scan;
            }
        };
        let mut touched: BTreeSet<DefinitionId> = BTreeSet::new();
        let known: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in known.iter().filter(|p| !names.contains(*p)) {
            self.forget(path, &mut touched);
        }
        let unseen = FileState::default();
        let names: Vec<PathBuf> = names.into_iter().collect();
        // Reading and parsing is most of a start-up load: on every core.
        let looks = crate::parallel::map(&names, |path| {
            look(path, self.files.get(path).unwrap_or(&unseen))
        });
        for (path, looked) in names.into_iter().zip(looks) {
            match looked {
                Look::Unchanged => {}
                Look::Gone | Look::NotAFile => self.forget(&path, &mut touched),
                Look::Problem(fingerprint, problem) => {
                    let state = self.files.entry(path.clone()).or_default();
                    state.seen = Some(fingerprint);
                    let message = if state.definitions.is_empty() {
                        problem
                    } else {
                        format!(
                            "{problem}; keeping its last good {} definition(s) (delete the file to remove them)",
                            state.definitions.len()
                        )
                    };
                    if state.problem.as_deref() != Some(message.as_str()) {
                        scan.problems.push(ManifestError {
                            file: path.clone(),
                            message: message.clone(),
                        });
                        state.problem = Some(message);
                    }
                }
                Look::Read(fingerprint, hash, definitions) => {
                    scan.files_read += 1;
                    let state = self.files.entry(path.clone()).or_default();
                    state.seen = Some(fingerprint);
                    if state.problem.take().is_some() {
                        scan.recovered.push(path.clone());
                    }
                    if state.good_text == Some(hash) {
                        continue;
                    }
                    state.good_text = Some(hash);
                    // Sorted by id; of a definition named twice in one file the last counts.
                    let new: Vec<Arc<Definition>> = definitions
                        .into_iter()
                        .map(|d| (d.id.clone(), Arc::new(d)))
                        .collect::<BTreeMap<_, _>>()
                        .into_values()
                        .collect();
                    let old = std::mem::replace(&mut state.definitions, new);
                    let shared = self
                        .paths
                        .entry(path.clone())
                        .or_insert_with(|| Arc::from(path.as_path()))
                        .clone();
                    let state = &self.files[&path];
                    for gone in old.iter().filter(|d| state.find(&d.id).is_none()) {
                        if let Some(files) = self.owners.get_mut(&gone.id) {
                            files.retain(|f| **f != *path);
                        }
                        touched.insert(gone.id.clone());
                    }
                    for definition in &state.definitions {
                        let files = self.owners.entry(definition.id.clone()).or_default();
                        if let Err(at) = files.binary_search(&shared) {
                            files.insert(at, shared.clone());
                        }
                        let before = old
                            .binary_search_by(|d| d.id.cmp(&definition.id))
                            .ok()
                            .map(|at| &old[at]);
                        if before != Some(definition) {
                            touched.insert(definition.id.clone());
                        }
                    }
                }
            }
        }
        for id in touched {
            scan.changes.push(self.resolve(&id, &mut scan.problems));
        }
        scan
    }

    /// A file that is gone takes its definitions with it.
    fn forget(&mut self, path: &Path, touched: &mut BTreeSet<DefinitionId>) {
        self.paths.remove(path);
        if let Some(state) = self.files.remove(path) {
            for definition in state.definitions {
                if let Some(files) = self.owners.get_mut(&definition.id) {
                    files.retain(|f| **f != *path);
                }
                touched.insert(definition.id.clone());
            }
        }
    }

    /// The change that makes the compiler hold what the files now say about `id`.
    fn resolve(&mut self, id: &DefinitionId, problems: &mut Vec<ManifestError>) -> Change {
        let files: Vec<PathBuf> = self
            .owners
            .get(id)
            .map(|f| f.iter().map(|p| p.to_path_buf()).collect())
            .unwrap_or_default();
        let Some(first) = files.first() else {
            self.owners.remove(id);
            return Change::Remove(id.clone());
        };
        if files.len() > 1 && self.reported_duplicates.insert((id.clone(), files.clone())) {
            for other in &files[1..] {
                problems.push(ManifestError {
                    file: other.clone(),
                    message: format!(
                        "{id} is also defined in {}, which is the one served; this copy is ignored",
                        first.display()
                    ),
                });
            }
        }
        let definition = self.files[first]
            .find(id)
            .expect("owners list only files that define the id");
        Change::Upsert(definition.clone())
    }
}

/// Manifest files of the folder by name, whatever they point at.
fn manifest_names(dir: &Path) -> Result<BTreeSet<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read folder: {e}"))?;
    Ok(entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| manifests::is_manifest(path))
        .collect())
}

fn look(path: &Path, state: &FileState) -> Look {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        // Deleted between listing and looking.
        Err(_) if std::fs::symlink_metadata(path).is_err() => return Look::Gone,
        // A dangling symlink or a loop: unusable for now, which is not deletion.
        Err(error) => {
            let fingerprint = std::fs::symlink_metadata(path)
                .map(|m| Fingerprint::of(&m))
                .expect("checked above");
            if state.seen == Some(fingerprint) {
                return Look::Unchanged;
            }
            return Look::Problem(fingerprint, format!("cannot read: {error}"));
        }
    };
    if !metadata.is_file() {
        return Look::NotAFile;
    }
    let fingerprint = Fingerprint::of(&metadata);
    if state.seen == Some(fingerprint) {
        return Look::Unchanged;
    }
    let text = match manifests::read_text(path) {
        Ok(text) => text,
        Err(problem) => return Look::Problem(fingerprint, problem),
    };
    // Still being written: look again on the next event or rescan.
    if std::fs::metadata(path).map(|m| Fingerprint::of(&m)).ok() != Some(fingerprint) {
        return Look::Unchanged;
    }
    if text.trim().is_empty() {
        return Look::Problem(fingerprint, "the file is empty".to_string());
    }
    let hash = text_hash(&text);
    if state.good_text == Some(hash) {
        return Look::Read(fingerprint, hash, Vec::new());
    }
    match manifests::parse_text(path, &text) {
        Ok(found) => Look::Read(
            fingerprint,
            hash,
            found.into_iter().map(|l| l.definition).collect(),
        ),
        Err(errors) => Look::Problem(
            fingerprint,
            errors
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

#[cfg(test)]
mod tests;
