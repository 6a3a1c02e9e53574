//! What can be tuned when opening the store, with the durability each choice
//! buys.

/// When a commit counts as done: SQLite's `PRAGMA synchronous` on the writer.
///
/// Both modes run in WAL mode and keep the database consistent whatever
/// happens; they differ in what a commit survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// `PRAGMA synchronous=FULL`: every `COMMIT` fsyncs the write-ahead log
    /// before it returns, so an answered write (a 2xx) survives `kill -9`, an
    /// OS crash and a power loss (I5). The default: from about 64 rows per
    /// commit up it costs the same as `Normal` (docs/stack.md), because one
    /// fsync serves the whole group.
    #[default]
    Full,
    /// `PRAGMA synchronous=NORMAL`: commits reach the OS but the log is fsynced
    /// only at checkpoints. A process crash (`kill -9`) loses nothing — the log
    /// is in the OS page cache — but an OS crash or power loss may roll back the
    /// last commits, answered ones included. Only for machines where that is
    /// acceptable, e.g. tests and benchmarks.
    Normal,
}

impl Synchronous {
    /// The setting's name in configuration: `full` or `normal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Normal => "normal",
        }
    }

    /// Parses a configuration value (`full` or `normal`, any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "full" => Some(Self::Full),
            "normal" => Some(Self::Normal),
            _ => None,
        }
    }

    pub(crate) fn pragma_value(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
        }
    }
}

/// How to open a [`SqliteStore`](crate::SqliteStore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteSettings {
    /// What a commit survives; see [`Synchronous`].
    pub synchronous: Synchronous,
    /// Read-only connections, hence reads running at once; more wait for one.
    /// Zero counts as one.
    pub readers: usize,
}

impl Default for SqliteSettings {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            readers: 4,
        }
    }
}
