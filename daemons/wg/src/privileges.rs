//! I/O: dropping privileges after setup: switch to a configured user and keep only
//! `CAP_NET_ADMIN` (needed for fwmark, forced socket buffers and route changes), or no
//! capability at all.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid, User};

/// Errors of the privilege drop.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// The user does not exist.
    #[error("user {user} not found")]
    LookupUser {
        /// User name.
        user: String,
    },
    /// A system call of the drop failed.
    #[error("failed to {action} while dropping privileges to {user}")]
    Drop {
        /// What failed.
        action: &'static str,
        /// User name.
        user: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Switches the calling thread (and, through glibc, the process' uid/gid) to `user`,
/// keeping `CAP_NET_ADMIN` in the calling thread when `keep_net_admin`. Threads created
/// afterwards from this thread inherit its capabilities; threads created before lose all.
pub fn drop_to(user: &str, keep_net_admin: bool) -> Result<(), PrivilegeError> {
    let u = User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| PrivilegeError::LookupUser {
            user: user.to_string(),
        })?;
    let fail = |action: &'static str| {
        let user = user.to_string();
        move |e: std::io::Error| PrivilegeError::Drop {
            action,
            user,
            source: e,
        }
    };
    let keep: CapsHashSet = if keep_net_admin {
        [Capability::CAP_NET_ADMIN].into_iter().collect()
    } else {
        CapsHashSet::new()
    };
    // Nothing we drop from the bounding set can come back through exec either.
    for c in caps::all() {
        if !keep.contains(&c) {
            let _ = caps::drop(None, CapSet::Bounding, c);
        }
    }
    // SAFETY: prctl(PR_SET_KEEPCAPS, 1) has no memory-safety preconditions.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(fail("keep capabilities")(std::io::Error::last_os_error()));
    }
    nix::unistd::setgroups(&[u.gid]).map_err(|e| fail("setgroups")(e.into()))?;
    nix::unistd::setresgid(u.gid, u.gid, u.gid).map_err(|e| fail("setgid")(e.into()))?;
    nix::unistd::setresuid(u.uid, u.uid, u.uid).map_err(|e| fail("setuid")(e.into()))?;
    let io = |e: caps::errors::CapsError| std::io::Error::other(e.to_string());
    caps::set(None, CapSet::Permitted, &keep)
        .map_err(|e| fail("set permitted capabilities")(io(e)))?;
    caps::set(None, CapSet::Effective, &keep)
        .map_err(|e| fail("set effective capabilities")(io(e)))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| fail("clear inheritable capabilities")(io(e)))?;
    let _ = caps::clear(None, CapSet::Ambient);
    // SAFETY: prctl(PR_SET_KEEPCAPS, 0) has no memory-safety preconditions.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    if Uid::effective().is_root() || Gid::effective().as_raw() == 0 && u.gid.as_raw() != 0 {
        return Err(fail("verify")(std::io::Error::other(
            "still root after setuid",
        )));
    }
    tracing::info!(user, keep_net_admin, "privileges dropped");
    Ok(())
}
