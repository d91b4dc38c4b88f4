//! I/O: secrets (Cloudflare token, WireGuard keys) read from a file or a systemd credential,
//! refused when others can read them, and held in a type that never prints its content.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroize::Zeroizing;

use crate::decode::{Ctx, Decode, Node, Table};

/// Where a secret comes from. Secrets never sit in the TOML itself.
///
/// `credential` names a systemd credential (`LoadCredential=<name>:<path>` in the unit), read
/// from `$CREDENTIALS_DIRECTORY/<name>`; `file` is a path that must not be readable by group or
/// others. When both are given, the credential is used under systemd and the file otherwise
/// (handy for `edge-ddns --once` by hand).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SecretSource {
    /// systemd credential name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Secret file path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl SecretSource {
    /// A secret read from a file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            credential: None,
            file: Some(path.into()),
        }
    }

    /// A secret read from a systemd credential.
    pub fn credential(name: impl Into<String>) -> Self {
        Self {
            credential: Some(name.into()),
            file: None,
        }
    }
}

/// A secret value; `Debug` and `Display` print `[redacted]`, and the memory is zeroed on drop.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a value (tests, UAPI).
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString([redacted])")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file does not exist.
    #[error("secret file {path} does not exist")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read secret file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Group or others may read the file.
    #[error(
        "secret file {path} is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A systemd credential that others may read: its source is wrong, not the copy that
    /// systemd made (that copy cannot be changed by the user).
    #[error(
        "systemd credential {path} is readable by others (mode {mode:04o}); check the unit's `LoadCredential=` source and `systemctl cat` for a `SetCredential=` override"
    )]
    CredentialPermissions {
        /// The credential's path under `$CREDENTIALS_DIRECTORY`.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is empty.
    #[error("secret file {path} is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Neither a file nor a credential was given.
    #[error("no secret source: give `file` or `credential`")]
    NoSource,
    /// A credential was named but the process has no credentials directory.
    #[error(
        "systemd credential `{name}` is configured but $CREDENTIALS_DIRECTORY is not set; add `LoadCredential={name}:/path/to/secret` to the unit, or use {{ file = \"/path\" }}"
    )]
    NoCredentialsDirectory {
        /// The credential name.
        name: String,
    },
}

impl SecretError {
    /// True when the only problem is that the secret does not exist yet (an install-time
    /// state that `edgectl config check` reports as a warning).
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            SecretError::Missing { .. } | SecretError::NoCredentialsDirectory { .. }
        )
    }
}

/// Where a secret is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretPath {
    /// A systemd credential: the copy systemd made under `$CREDENTIALS_DIRECTORY`.
    Credential(PathBuf),
    /// A plain file.
    File(PathBuf),
}

impl SecretPath {
    /// The path.
    pub fn path(&self) -> &Path {
        match self {
            SecretPath::Credential(p) | SecretPath::File(p) => p,
        }
    }
}

impl SecretSource {
    /// Where the secret is read from: the credential under systemd, else the file.
    pub fn resolve(&self) -> Result<SecretPath, SecretError> {
        let cred_dir = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty());
        match (&self.credential, &self.file, cred_dir) {
            (Some(name), _, Some(dir)) => Ok(SecretPath::Credential(Path::new(&dir).join(name))),
            (_, Some(file), _) => Ok(SecretPath::File(file.clone())),
            (Some(name), None, None) => {
                Err(SecretError::NoCredentialsDirectory { name: name.clone() })
            }
            (None, None, _) => Err(SecretError::NoSource),
        }
    }

    /// The path the secret is read from: the credential under systemd, else the file.
    pub fn path(&self) -> Result<PathBuf, SecretError> {
        self.resolve().map(|p| p.path().to_owned())
    }

    /// Checks the secret exists and is private, without reading it.
    pub fn check(&self) -> Result<(), SecretError> {
        check_mode(&self.resolve()?).map(|_| ())
    }

    /// Reads the secret, trimming surrounding whitespace.
    pub fn load(&self) -> Result<SecretString, SecretError> {
        let resolved = self.resolve()?;
        check_mode(&resolved)?;
        let path = resolved.path().to_owned();
        let text =
            Zeroizing::new(
                fs::read_to_string(&path).map_err(|source| SecretError::Read {
                    path: path.clone(),
                    source,
                })?,
            );
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(SecretError::Empty { path });
        }
        Ok(SecretString::new(trimmed.to_owned()))
    }
}

/// Refuses a secret others may read. A plain file must be private to its owner (no group
/// or other bits). A credential lives in a directory that systemd made private to the unit
/// (read-only, no access for anyone else), and systemd 257 hands it out with mode 0440 (the
/// group bit is the unit's own group): there only the other bits count, and the user could not
/// change the copy's mode anyway.
fn check_mode(resolved: &SecretPath) -> Result<u32, SecretError> {
    let path = resolved.path();
    let meta = fs::metadata(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            SecretError::Missing {
                path: path.to_owned(),
            }
        } else {
            SecretError::Read {
                path: path.to_owned(),
                source,
            }
        }
    })?;
    let mode = meta.mode() & 0o7777;
    match resolved {
        SecretPath::File(_) if mode & 0o077 != 0 => Err(SecretError::Permissions {
            path: path.to_owned(),
            mode,
        }),
        SecretPath::Credential(_) if mode & 0o007 != 0 => Err(SecretError::CredentialPermissions {
            path: path.to_owned(),
            mode,
        }),
        _ => Ok(mode),
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.credential, &self.file) {
            (Some(c), Some(p)) => write!(
                f,
                "systemd credential {c} (file {} outside systemd)",
                p.display()
            ),
            (Some(c), None) => write!(f, "systemd credential {c}"),
            (None, Some(p)) => write!(f, "file {}", p.display()),
            (None, None) => f.write_str("nothing"),
        }
    }
}

impl Decode for SecretSource {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        if node.value().as_str().is_some() {
            node.error(
                ctx,
                format!(
                    "`{}` must not hold the secret itself: secrets never sit in the TOML",
                    node.key()
                ),
            )
            .hint(format!(
                "write the secret to a file readable only by root (chmod 600) and use `{} = {{ file = \"/etc/edge/...\" }}`, or `{{ credential = \"NAME\" }}` with systemd LoadCredential=",
                node.key().rsplit('.').next().unwrap_or("secret")
            ));
            return None;
        }
        let mut t = Table::from_node(ctx, node.clone())?;
        let file: Option<String> = t.opt(ctx, "file");
        let cred: Option<String> = t.opt(ctx, "credential");
        let span = t.span();
        let key = node.key().to_owned();
        t.finish(ctx);
        let mut ok = true;
        if let Some(f) = &file
            && !Path::new(f).is_absolute()
        {
            ctx.error(
                span.clone(),
                &key,
                format!("secret file `{f}` must be an absolute path"),
            )
            .hint("write the full path, e.g. \"/etc/edge/cloudflare.token\"");
            ok = false;
        }
        if let Some(c) = &cred
            && (c.is_empty() || c.contains('/'))
        {
            ctx.error(
                span.clone(),
                &key,
                format!("`{c}` is not a valid systemd credential name"),
            );
            ok = false;
        }
        if file.is_none() && cred.is_none() {
            ctx.error(
                span.clone(),
                &key,
                format!("`{key}` needs `file` or `credential`"),
            )
            .hint("e.g. { file = \"/etc/edge/secret\" } or { credential = \"name\" }");
            ok = false;
        }
        let out = ok.then(|| SecretSource {
            credential: cred,
            file: file.map(PathBuf::from),
        });
        if let Some(s) = &out {
            ctx.note_secret(&key, span, s.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_world_readable_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        fs::write(&p, "s3cret\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = SecretSource::file(p.clone()).load().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("chmod 600 {}", p.display())), "{msg}");
        assert!(msg.contains("0644"), "{msg}");
        assert!(!msg.contains("s3cret"));
    }

    #[test]
    fn a_private_file_is_read_and_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        fs::write(&p, "  s3cret\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let s = SecretSource::file(p).load().unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert_eq!(format!("{s:?} {s}"), "SecretString([redacted]) [redacted]");
    }

    /// systemd 257 hands credentials out with mode 0440 in a directory private to the unit:
    /// accepted, while the same mode on a plain file is refused.
    #[test]
    fn a_credential_with_the_group_bit_is_accepted_a_plain_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cloudflare-token");
        fs::write(&p, "s3cret\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o440)).unwrap();
        let cred = SecretPath::Credential(p.clone());
        assert_eq!(check_mode(&cred).unwrap(), 0o440);
        assert!(matches!(
            check_mode(&SecretPath::File(p.clone())),
            Err(SecretError::Permissions { mode: 0o440, .. })
        ));
        // Readable by others: refused, without a chmod hint the user could not follow.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
        let e = check_mode(&cred).unwrap_err();
        assert!(matches!(
            e,
            SecretError::CredentialPermissions { mode: 0o444, .. }
        ));
        assert!(!e.to_string().contains("chmod"), "{e}");
    }

    #[test]
    fn missing_files_are_reported_as_absent() {
        let e = SecretSource::file("/nonexistent/edge/token")
            .load()
            .unwrap_err();
        assert!(e.is_absent());
    }
}
