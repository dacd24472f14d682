//! File helpers: secret files are 0600 and never replace an existing file (the
//! library's, shared with any Rust client), and pretty JSON.

pub use keyd::files::{create_private_dir, is_absent_or_empty, replace_atomic, write_private};

use crate::error::CtlError;

/// Serialises `value` as pretty JSON with a trailing newline.
pub fn pretty_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CtlError> {
    let mut out = serde_json::to_vec_pretty(value)?;
    out.push(b'\n');
    Ok(out)
}
