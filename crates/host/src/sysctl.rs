//! Kernel parameters under `/proc/sys`. Network ones (`net/...`) belong to the
//! network namespace of the thread that writes them: write them through
//! [`crate::NetNs::run`] to set another namespace's.

use std::path::Path;

use crate::{Error, Result};

/// Writes `value` to `/proc/sys/<key>`, `key` with slashes (`net/ipv4/ip_forward`).
pub fn set(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(|e| Error::Io(path, e))
}

/// Reads `/proc/sys/<key>`, trimmed.
pub fn get(key: &str) -> Result<String> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::read_to_string(&path).map(|s| s.trim().to_string()).map_err(|e| Error::Io(path, e))
}
