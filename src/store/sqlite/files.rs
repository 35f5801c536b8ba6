//! The database's files on disk: parent directories made 0700, and the database with its
//! `-wal` and `-shm` companions kept 0600 (review finding 17).

use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// Creates the database's missing parent directories, readable by their owner only (0700).
/// Existing directories are left as they are: one may be the working directory, or shared.
pub(super) fn create_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// The database file and the files SQLite keeps beside it.
pub(super) fn database_files(path: &Path) -> [PathBuf; 4] {
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [
        path.to_path_buf(),
        with("-wal"),
        with("-shm"),
        with("-journal"),
    ]
}

/// Makes the database readable and writable by its owner only (0600): creates the file so
/// when it does not exist yet (an empty file is an empty database to SQLite, which then
/// gives its -wal and -shm files the same mode), and narrows an existing one, or one of its
/// companions, that others may read (logged). The process umask is left alone: changing it
/// would change it for every thread. A file Warden may not change (another owner) is logged
/// and left as it is.
pub(super) fn private_files(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        match options.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(StoreError::File {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        for file in database_files(path) {
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 == 0 {
                continue;
            }
            let narrowed = mode & 0o700;
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(narrowed)) {
                Ok(()) => tracing::warn!(
                    path = %file.display(),
                    was = format!("{mode:o}"),
                    now = format!("{narrowed:o}"),
                    "store file was readable by others; narrowed to its owner"
                ),
                Err(e) => tracing::warn!(
                    path = %file.display(),
                    mode = format!("{mode:o}"),
                    error = %e,
                    "store file is readable by others and could not be narrowed"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
