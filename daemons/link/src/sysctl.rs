//! I/O: reads and writes `/proc/sys` files. The files under `/proc/sys/net` belong to the
//! network namespace of the calling thread, so the daemon (and a test thread that entered
//! a namespace) sees its own namespace's values.

use std::io;
use std::path::PathBuf;

use crate::model::SysctlKey;

fn path(key: &SysctlKey) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.path())
}

/// Reads a sysctl; `None` when the file does not exist (feature or interface absent).
pub fn read(key: &SysctlKey) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path(key)) {
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a sysctl.
pub fn write(key: &SysctlKey, value: &str) -> io::Result<()> {
    std::fs::write(path(key), format!("{value}\n"))
}
