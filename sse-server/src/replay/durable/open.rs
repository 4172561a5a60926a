//! Opening the store file at start-up: the data directory, an explicit reset, redb's own open, an
//! integrity check and the first load, each failure told as an [`Error::DataDir`] that names the file
//! and says what to do.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError};

use super::format::{self, Damage, Loaded};
use crate::error::Error;
use crate::replay::retention::Retention;

/// redb's page cache (its default is far larger, and would duplicate the in-memory window).
const REDB_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The file being opened, for the error messages.
pub(super) struct Opening<'a> {
    pub(super) dir: &'a Path,
    pub(super) path: &'a Path,
}

impl Opening<'_> {
    /// An error about the file.
    pub(super) fn fail(&self, reason: String) -> Error {
        Error::DataDir {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    /// An error about a file that is damaged or not ours.
    fn damaged(&self, what: String) -> Error {
        self.fail(format!(
            "{what}. The file is damaged or is not an sse-server replay store; move it away, or \
             start with --reset-data-dir (DurableStoreBuilder::reset) to discard it and its events"
        ))
    }

    /// Creates the data directory, and removes the file when a reset is asked for.
    pub(super) fn prepare(&self, reset: bool) -> Result<(), Error> {
        std::fs::create_dir_all(self.dir).map_err(|e| Error::DataDir {
            path: PathBuf::from(self.dir),
            reason: format!("cannot create the data directory: {e}; choose another --data-dir"),
        })?;
        if reset {
            match std::fs::remove_file(self.path) {
                Ok(()) => {
                    tracing::warn!(path = %self.path.display(), "discarded the replay store (reset requested)")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.fail(format!("cannot remove it to start fresh: {e}"))),
            }
        }
        Ok(())
    }

    /// Opens (or creates) the file with redb.
    pub(super) fn database(&self) -> Result<Database, Error> {
        let exists = self.path.exists();
        // redb checks its invariants with debug assertions; a garbled file must still end in an error.
        let opened = catch_unwind(AssertUnwindSafe(|| {
            // The window is mirrored in memory and the file is read once, at start-up: a small page
            // cache is enough for the writes.
            let mut builder = Database::builder();
            builder.set_cache_size(REDB_CACHE_BYTES);
            if exists {
                builder.open(self.path)
            } else {
                builder.create(self.path)
            }
        }));
        match opened {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => Err(self.fail(
                "another process (or store) has it open; stop it or use another --data-dir".into(),
            )),
            Ok(Err(DatabaseError::Storage(redb::StorageError::Io(e))))
                if e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Err(self.fail(format!("cannot open it: {e}; fix its permissions")))
            }
            Ok(Err(e)) => Err(self.damaged(format!("cannot open it: {e}"))),
            Err(panic) => Err(self.damaged(format!("cannot open it: {}", panic_message(&*panic)))),
        }
    }

    /// Verifies every page checksum. redb does so on open only after an unclean shutdown; doing it
    /// always reports bit rot in a cleanly closed file instead of replaying it.
    pub(super) fn verify(&self, db: &mut Database) -> Result<(), Error> {
        match catch_unwind(AssertUnwindSafe(|| db.check_integrity())) {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(self.damaged(
                "it failed its integrity check (redb rolled it back to its last intact commit, \
                 so recent events may be missing; restart to serve what is left)"
                    .into(),
            )),
            Ok(Err(e)) => Err(self.damaged(format!("it failed its integrity check: {e}"))),
            Err(panic) => Err(self.damaged(format!(
                "it failed its integrity check: {}",
                panic_message(&*panic)
            ))),
        }
    }

    /// Loads the file and commits the trimming that `retention` at `now_ms` requires.
    pub(super) fn load(
        &self,
        db: &Database,
        retention: &Retention,
        now_ms: u64,
        fresh_epoch: u64,
    ) -> Result<Loaded, Error> {
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            format::load(db, retention, now_ms, fresh_epoch)
        }));
        let loaded = match loaded {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(Damage(what))) => return Err(self.damaged(format!("cannot read it: {what}"))),
            Err(panic) => {
                return Err(self.damaged(format!("cannot read it: {}", panic_message(&*panic))));
            }
        };
        format::commit(db, &loaded.ops, loaded.counter).map_err(|e| {
            self.fail(format!(
                "cannot write it: {e}; check free space and permissions"
            ))
        })?;
        Ok(loaded)
    }
}

/// What a caught panic said, for the error message.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown failure");
    format!("its structure is inconsistent ({text})")
}
