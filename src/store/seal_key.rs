//! The secret that seals the upstream responses kept for idempotency keys, and webhook
//! subscriptions' signing secrets (`store.seal_key_file`): read from a file the operator
//! provides (a mounted Kubernetes Secret, say), or else from `<database name>.seal-key` beside
//! the database, made (0600, 256 random bits) on first start.
//!
//! What it protects is the database's files without the key: a copy of `warden.db` (and its
//! `-wal`), an SQLite backup or dump, a file handed over for debugging. A key beside the
//! database does not protect a copy of the whole directory or disk, nor a host where Warden's
//! user or root reads files; a key kept apart from the database (and its backups) does better.

use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Path, PathBuf};

use super::sqlite::Location;

/// The shortest secret accepted, in bytes (after surrounding whitespace is trimmed).
pub const MIN_LEN: usize = 32;

/// The sealing secret for the store at `url`: from `file` when it is set (it must exist), else
/// from the default file beside the database (made when absent). An in-memory store, whose
/// records die with the process, gets a random secret.
pub fn load(url: &str, file: &str) -> Result<Vec<u8>, String> {
    let configured = file.trim();
    if !configured.is_empty() {
        let path = Path::new(configured);
        warn_if_shared(path);
        return read(path);
    }
    match Location::parse(url).map_err(|e| e.to_string())? {
        Location::Memory => Ok(rand::random::<[u8; 32]>().to_vec()),
        Location::File(db) => {
            let path = default_path(&db);
            create_if_absent(&path)?;
            narrow(&path);
            read(&path)
        }
    }
}

/// `data/warden.db` → `data/warden.seal-key`: beside the database, but not matched by
/// `warden.db*`, the pattern that copies the database with its `-wal`.
pub fn default_path(db: &Path) -> PathBuf {
    let stem = db
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "warden".to_owned());
    db.with_file_name(format!("{stem}.seal-key"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let trimmed = bytes.trim_ascii();
    if trimmed.len() < MIN_LEN {
        return Err(format!(
            "{} holds {} bytes; a seal key is at least {MIN_LEN} (e.g. `openssl rand -hex 32`)",
            path.display(),
            trimmed.len()
        ));
    }
    Ok(trimmed.to_vec())
}

/// Writes 256 random bits (hex) to `path` unless it exists: written to a private temporary
/// file first, then linked into place, so a process starting at the same time reads either
/// no file or the whole key, and never replaces one another process made.
fn create_if_absent(path: &Path) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    let fail = |e: std::io::Error| format!("cannot create {}: {e}", path.display());
    let nonce: u64 = rand::random();
    let temp = path.with_file_name(format!(".seal-key.{nonce:016x}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut f| {
        let key = hex::encode(rand::random::<[u8; 32]>());
        f.write_all(format!("{key}\n").as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "seal key for stored responses created");
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

/// Narrows the default key file to its owner (0600) if others may read it, and says so.
fn narrow(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let narrowed = mode & 0o700;
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(narrowed)) {
                Ok(()) => tracing::warn!(
                    path = %path.display(),
                    was = format!("{mode:o}"),
                    "seal key file was readable by others; narrowed to its owner"
                ),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    error = %e,
                    "seal key file is readable by others and could not be narrowed"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Warns when someone other than Warden may read a configured key file (left as it is: it may
/// be a read-only mount). Group read is Warden's own when the file's group is one of the
/// process's groups: that is how a Kubernetes Secret reaches a non-root container under
/// `fsGroup` (owned by root, group = fsGroup, mode 0440), and it is not a warning.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            let mut groups: Vec<u32> = rustix::process::getgroups()
                .unwrap_or_default()
                .into_iter()
                .map(|g| g.as_raw())
                .collect();
            groups.push(rustix::process::getegid().as_raw());
            if readable_by_strangers(mode, meta.gid(), &groups) {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{mode:o}"),
                    "the seal key file is readable by others than Warden (for a Kubernetes \
                     Secret, set defaultMode: 0400 or 0440 with fsGroup)"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Whether a file with `mode` and group `file_gid` may be read by someone who is neither its
/// owner nor in one of `own_groups` (the process's groups).
#[cfg(unix)]
fn readable_by_strangers(mode: u32, file_gid: u32, own_groups: &[u32]) -> bool {
    mode & 0o007 != 0 || (mode & 0o070 != 0 && !own_groups.contains(&file_gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_key_is_made_once_beside_the_database_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("warden.db");
        let url = format!("sqlite://{}", db.display());
        let first = load(&url, "").unwrap();
        assert_eq!(first.len(), 64, "256 bits in hex");
        let path = dir.path().join("warden.seal-key");
        assert!(path.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(
                load(&url, "").unwrap(),
                first,
                "the same key at every start"
            );
            assert_eq!(mode(&path), 0o600, "narrowed");
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, [std::ffi::OsString::from("warden.seal-key")]);
    }

    #[cfg(unix)]
    #[test]
    fn group_read_is_a_warning_only_when_the_group_is_not_wardens() {
        // Kubernetes Secret under fsGroup 65532: root-owned, group 65532, 0440.
        assert!(!readable_by_strangers(0o440, 65532, &[65532]));
        assert!(!readable_by_strangers(0o400, 0, &[65532]));
        assert!(!readable_by_strangers(0o600, 0, &[]));
        assert!(readable_by_strangers(0o440, 0, &[65532]), "root's group");
        assert!(readable_by_strangers(0o604, 65532, &[65532]), "world");
        assert!(readable_by_strangers(0o644, 65532, &[65532]), "world");
    }

    #[test]
    fn a_configured_key_must_exist_and_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let url = "sqlite://unused.db";
        let file = path.to_str().unwrap();
        assert!(load(url, file).unwrap_err().contains("cannot read"));
        std::fs::write(&path, "short\n").unwrap();
        assert!(load(url, file).unwrap_err().contains("at least 32"));
        let secret = "k".repeat(40);
        std::fs::write(&path, format!("  {secret}\n")).unwrap();
        assert_eq!(load(url, file).unwrap(), secret.as_bytes());
        assert!(!dir.path().join("unused.seal-key").exists());
    }

    #[test]
    fn an_in_memory_store_gets_a_random_key() {
        let a = load("sqlite::memory:", "").unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, load("sqlite::memory:", "").unwrap());
    }
}
