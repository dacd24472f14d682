//! File helpers: secret files are 0600 and never replace an existing file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::CtlError;

/// Writes `contents` to a new file with mode 0600, synced to disk.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), CtlError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(CtlError::io("cannot create", path))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(CtlError::io("cannot chmod", path))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .and_then(|()| keyd::sync_dir(path))
        .map_err(CtlError::io("cannot write", path))
}

/// Creates a directory readable only by its owner.
pub fn create_private_dir(path: &Path) -> Result<(), CtlError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(CtlError::io("cannot create directory", path))
}

/// Whether `path` is absent or an empty directory.
pub fn is_absent_or_empty(path: &Path) -> bool {
    match fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Serialises `value` as pretty JSON with a trailing newline.
pub fn pretty_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CtlError> {
    let mut out = serde_json::to_vec_pretty(value)?;
    out.push(b'\n');
    Ok(out)
}

/// Replaces `path` atomically with `contents` (write a temporary file beside it, sync,
/// rename), with the given mode.
pub fn replace_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CtlError> {
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
            .map_err(CtlError::io("cannot create", &tmp))?;
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(CtlError::io("cannot chmod", &tmp))?;
        f.write_all(contents)
            .and_then(|()| f.sync_all())
            .map_err(CtlError::io("cannot write", &tmp))?;
        fs::rename(&tmp, path)
            .and_then(|()| keyd::sync_dir(path))
            .map_err(CtlError::io("cannot replace", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
