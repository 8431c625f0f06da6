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

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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

#[derive(Serialize, Deserialize)]
struct Record {
    kind: RevocationKind,
    id: String,
    at: u64,
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

/// The revocations in memory, mirrored by the file.
#[derive(Debug)]
pub struct RevocationStore {
    path: PathBuf,
    file: File,
    sessions: HashMap<String, u64>,
    users: HashMap<String, u64>,
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
        let mut contents = Vec::new();
        file.read_to_end(&mut contents).map_err(io_err)?;
        let mut sessions = HashMap::new();
        let mut users = HashMap::new();
        let mut good_len = 0usize;
        let lines: Vec<&[u8]> = contents.split_inclusive(|&b| b == b'\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let complete = line.ends_with(b"\n");
            match serde_json::from_slice::<Record>(line) {
                Ok(rec) if complete => {
                    let map = match rec.kind {
                        RevocationKind::Session => &mut sessions,
                        RevocationKind::User => &mut users,
                    };
                    let at = map.entry(rec.id).or_insert(rec.at);
                    *at = (*at).max(rec.at);
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
            file,
            sessions,
            users,
        })
    }

    /// Appends a revocation and waits for it to reach the disk (fsync) before
    /// updating memory.
    ///
    /// # Errors
    /// On I/O failure; memory is then unchanged.
    pub fn revoke(&mut self, kind: RevocationKind, id: &str, at: u64) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(&Record {
            kind,
            id: id.to_owned(),
            at,
        })
        .map_err(|e| StoreError::Io {
            path: self.path.clone(),
            source: e.into(),
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| StoreError::Io {
                path: self.path.clone(),
                source,
            })?;
        let map = match kind {
            RevocationKind::Session => &mut self.sessions,
            RevocationKind::User => &mut self.users,
        };
        let entry = map.entry(id.to_owned()).or_insert(at);
        *entry = (*entry).max(at);
        Ok(())
    }

    /// Whether a token for `user_id` / `session_id`, issued at `issued` (seconds since
    /// the epoch), is revoked.
    #[must_use]
    pub fn is_revoked(&self, user_id: &str, session_id: &str, issued: u64) -> bool {
        self.sessions.contains_key(session_id)
            || self.users.get(user_id).is_some_and(|&at| issued <= at)
    }

    /// Number of records held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.sessions.len() + self.users.len()
    }

    /// Whether the store holds no revocation.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
            let mut s = RevocationStore::open(&path).unwrap();
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
            let mut s = RevocationStore::open(&path).unwrap();
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
