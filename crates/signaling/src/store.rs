//! Persistent revocations: an append-only file of JSON lines, fsync'd after each append.
//!
//! ```text
//! {"kind":"session","id":"s-123","at":1800000000}\n
//! {"kind":"user","id":"alice","at":1800000042}\n
//! ```
//!
//! `at` is the revocation time in seconds since the Unix epoch. A session revocation
//! refuses that session id forever; a user revocation refuses every token of that user
//! issued (`iat`, else `nbf`) at or before `at`, so the host can issue fresh tokens later.
//!
//! Opening replays the file. A torn last line (a crash mid-append) is cut off; a corrupt
//! line anywhere else is an error, so the server fails closed rather than forgetting a
//! revocation.
//!
//! Size: memory holds one entry per distinct revoked id, the file one line per
//! revocation, both for ever (a revocation cannot safely expire without a bound on token
//! lifetime, which the tokens do not promise). At about 60 bytes a line, a million
//! revocations take some 60 MB of disk and less than 200 MB of memory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

/// What a revocation applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    /// One session id.
    Session,
    /// Every token of one user id issued up to the revocation time.
    User,
}

/// Errors of the revocation store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing or syncing the file failed.
    #[error("revocation store I/O on {path}: {source}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line other than the last is not a revocation record.
    #[error("revocation store {path} is corrupt at line {line}")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// The revocations in memory, mirrored by the file. Shared by reference: appends
/// serialise on the file, while [`RevocationStore::is_revoked`] only ever waits for
/// an in-memory update, never for a disk write.
#[derive(Debug)]
pub struct RevocationStore {
    path: PathBuf,
    /// Held across an append and its fsync.
    file: Mutex<File>,
    /// Held only for in-memory reads and updates.
    revoked: Mutex<Revoked>,
}

impl RevocationStore {
    /// Opens (or creates) the store at `path` and replays it.
    ///
    /// # Errors
    /// On I/O failure or a corrupt record.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err)?;
        // A file just created is only durable once its directory entry is.
        sync_parent_dir(&path).map_err(io_err)?;
        let mut contents = Vec::new();
        file.read_to_end(&mut contents).map_err(io_err)?;
        let mut revoked = Revoked::default();
        let mut good_len = 0usize;
        let lines: Vec<&[u8]> = contents.split_inclusive(|&b| b == b'\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let complete = line.ends_with(b"\n");
            match serde_json::from_slice::<Record>(line) {
                Ok(rec) if complete => {
                    revoked.insert(rec.kind, rec.id, rec.at);
                    good_len += line.len();
                }
                // A torn final append: drop it.
                _ if i + 1 == lines.len() && !complete => break,
                _ => return Err(StoreError::Corrupt { path, line: i + 1 }),
            }
        }
        if good_len != contents.len() {
            file.set_len(good_len as u64).map_err(io_err)?;
            file.seek(SeekFrom::End(0)).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        Ok(Self {
            path,
            file: Mutex::new(file),
            revoked: Mutex::new(revoked),
        })
    }

    /// Appends a revocation and waits for it to reach the disk (fsync) before
    /// updating memory. Blocks for the disk write: call it off the async runtime.
    ///
    /// # Errors
    /// On I/O failure; memory is then unchanged, and a partly written record is cut
    /// off again so that the next append starts on a line of its own.
    pub fn revoke(&self, kind: RevocationKind, id: &str, at: u64) -> Result<(), StoreError> {
        let io_err = |source| StoreError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(&Record {
            kind,
            id: id.to_owned(),
            at,
        })
        .map_err(|e| io_err(e.into()))?;
        line.push(b'\n');
        let mut file = lock(&self.file);
        let len = file.metadata().map_err(io_err)?.len();
        if let Err(e) = file.write_all(&line).and_then(|()| file.sync_data()) {
            // Best effort: if this fails too, reopening cuts a torn last line anyway.
            let _ = file.set_len(len).and_then(|()| file.sync_data());
            return Err(io_err(e));
        }
        lock(&self.revoked).insert(kind, id.to_owned(), at);
        Ok(())
    }

    /// Whether a token for `user_id` / `session_id`, issued at `issued` (seconds since
    /// the epoch), is revoked.
    #[must_use]
    pub fn is_revoked(&self, user_id: &str, session_id: &str, issued: u64) -> bool {
        let revoked = lock(&self.revoked);
        revoked.sessions.contains_key(session_id)
            || revoked.users.get(user_id).is_some_and(|&at| issued <= at)
    }

    /// Number of records held.
    #[must_use]
    pub fn len(&self) -> usize {
        let revoked = lock(&self.revoked);
        revoked.sessions.len() + revoked.users.len()
    }

    /// Whether the store holds no revocation.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    kind: RevocationKind,
    id: String,
    at: u64,
}

/// Revocation time by session id and by user id (the latest one per id).
#[derive(Debug, Default)]
struct Revoked {
    sessions: HashMap<String, u64>,
    users: HashMap<String, u64>,
}

impl Revoked {
    fn insert(&mut self, kind: RevocationKind, id: String, at: u64) {
        let map = match kind {
            RevocationKind::Session => &mut self.sessions,
            RevocationKind::User => &mut self.users,
        };
        let entry = map.entry(id).or_insert(at);
        *entry = (*entry).max(at);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(unix)]
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_parent_dir(_path: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("callsec-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn persists_across_reopen() {
        let path = temp_path("reopen");
        {
            let s = RevocationStore::open(&path).unwrap();
            assert!(s.is_empty());
            s.revoke(RevocationKind::Session, "s1", 100).unwrap();
            s.revoke(RevocationKind::User, "bob", 200).unwrap();
        }
        let s = RevocationStore::open(&path).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s.is_revoked("alice", "s1", 0));
        assert!(s.is_revoked("bob", "s9", 200));
        assert!(
            !s.is_revoked("bob", "s9", 201),
            "tokens issued after a user revocation pass"
        );
        assert!(!s.is_revoked("alice", "s2", 0));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn torn_tail_is_dropped_and_corruption_refused() {
        let path = temp_path("torn");
        std::fs::write(
            &path,
            b"{\"kind\":\"session\",\"id\":\"s1\",\"at\":1}\n{\"kind\":\"sess",
        )
        .unwrap();
        {
            let s = RevocationStore::open(&path).unwrap();
            assert!(s.is_revoked("x", "s1", 0));
            s.revoke(RevocationKind::Session, "s2", 2).unwrap();
        }
        let s = RevocationStore::open(&path).unwrap();
        assert!(s.is_revoked("x", "s2", 0));
        std::fs::write(
            &path,
            b"garbage\n{\"kind\":\"session\",\"id\":\"s1\",\"at\":1}\n",
        )
        .unwrap();
        assert!(matches!(
            RevocationStore::open(&path),
            Err(StoreError::Corrupt { line: 1, .. })
        ));
        std::fs::remove_file(&path).unwrap();
    }
}
