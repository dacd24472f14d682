//! Files a client writes: secret files are 0600 and never replace an existing file;
//! public files are replaced atomically.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A file operation that failed, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct FileError {
    /// What was being done (`cannot create`, `cannot write`, ...).
    pub what: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The error.
    #[source]
    pub source: std::io::Error,
}

/// A closure wrapping an I/O error with what was done to which file.
pub fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_owned();
    move |source| FileError { what, path, source }
}

/// Writes `contents` to a new file with mode 0600, synced to disk.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("cannot create", path))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io("cannot chmod", path))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .and_then(|()| crate::sync_dir(path))
        .map_err(io("cannot write", path))
}

/// Creates a directory readable only by its owner.
pub fn create_private_dir(path: &Path) -> Result<(), FileError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(io("cannot create directory", path))
}

/// Whether `path` is absent or an empty directory.
pub fn is_absent_or_empty(path: &Path) -> bool {
    match fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Replaces `path` atomically with `contents` (write a temporary file beside it, sync,
/// rename), with the given mode.
pub fn replace_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("cannot create", &tmp))?;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(io("cannot chmod", &tmp))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(io("cannot write", &tmp))?;
        fs::rename(&tmp, path)
            .and_then(|()| crate::sync_dir(path))
            .map_err(io("cannot replace", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
