//! The history of a run (`bench flash-sale --history FILE`): one JSON line
//! per purchase, pay and cancel, with when it was sent, when its answer came
//! and what the answer was, for [`crate::check`] to hold against the final
//! state. A request whose answer never came (connection lost, node killed,
//! timeout) is *indeterminate*: it may or may not have taken effect.
//!
//! Each connection writes into its own buffer and hands full buffers to the
//! shared file, so recording costs one formatted line per request and no
//! lock per request; with `--history` off nothing is built at all.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Bytes a connection gathers before writing them out.
const FLUSH_AT: usize = 64 * 1024;

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Purchase,
    Pay,
    Cancel,
    /// Not a request: a node was killed at `invoke_us` (written by the drill).
    Crash,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub op: Op,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sale: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
    /// Microseconds since the Unix epoch when the request left.
    pub invoke_us: u64,
    /// When its answer came; `None`: indeterminate.
    #[serde(default)]
    pub complete_us: Option<u64>,
    /// The HTTP status; `None`: indeterminate.
    #[serde(default)]
    pub status: Option<u16>,
    /// `won`, `replayed`, a problem slug, `ok` (a 2xx pay or cancel),
    /// `error` (another answer) or `indeterminate`.
    pub outcome: String,
    /// The order: the one a 202 answered, or the one paid or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// The order's status in a 2xx answer to pay or cancel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_status: Option<String>,
    /// Which node a crash killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl Record {
    /// A request with no answer: it may or may not have happened.
    pub fn is_indeterminate(&self) -> bool {
        self.status.is_none()
    }
}

/// The open history file of a run.
#[derive(Debug)]
pub struct History {
    epoch: Instant,
    epoch_us: u64,
    file: Mutex<File>,
    /// When the crowd's clock started.
    started: OnceLock<Instant>,
}

impl History {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("creating the history file {}", path.display()))?;
        let epoch_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Ok(Self {
            epoch: Instant::now(),
            epoch_us,
            file: Mutex::new(file),
            started: OnceLock::new(),
        })
    }

    /// The crowd's clock started at `at` (kept once).
    pub fn mark_started(&self, at: Instant) {
        let _ = self.started.set(at);
    }

    /// When the crowd's clock started, once it has.
    pub fn started(&self) -> Option<Instant> {
        self.started.get().copied()
    }

    /// `at` in microseconds since the Unix epoch, on this history's clock.
    pub fn micros(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch).as_micros();
        self.epoch_us
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    /// A buffer for one connection.
    pub fn buffer(&self) -> Buffer<'_> {
        Buffer {
            history: self,
            bytes: Vec::with_capacity(FLUSH_AT + 1024),
            error: None,
        }
    }

    /// Writes one record at once (crash markers and other rare lines).
    pub fn write(&self, record: &Record) -> anyhow::Result<()> {
        let mut buffer = self.buffer();
        buffer.push(record);
        buffer.finish()
    }

    fn write_bytes(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .write_all(bytes)
    }
}

/// One connection's lines on their way to the file.
pub struct Buffer<'a> {
    history: &'a History,
    bytes: Vec<u8>,
    error: Option<std::io::Error>,
}

impl Buffer<'_> {
    pub fn micros(&self, at: Instant) -> u64 {
        self.history.micros(at)
    }

    pub fn push(&mut self, record: &Record) {
        if serde_json::to_writer(&mut self.bytes, record).is_ok() {
            self.bytes.push(b'\n');
        }
        if self.bytes.len() >= FLUSH_AT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if let Err(err) = self.history.write_bytes(&self.bytes) {
            self.error.get_or_insert(err);
        }
        self.bytes.clear();
    }

    /// Writes what is left; the first write error, if any.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.flush();
        match self.error.take() {
            Some(err) => Err(err).context("writing the history"),
            None => Ok(()),
        }
    }
}

/// Reads a history file back, line by line.
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let file =
        File::open(path).with_context(|| format!("opening the history {}", path.display()))?;
    let mut records = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        records.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a history record", path.display(), n + 1))?,
        );
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn records_written_by_several_buffers_read_back_whole() {
        let dir = std::env::temp_dir().join(format!("stampede-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        let history = History::create(&path).unwrap();
        let record = |n: u64| Record {
            op: Op::Purchase,
            user: format!("u{n}"),
            sale: "s".into(),
            key: Some(format!("k{n}")),
            quantity: Some(1),
            invoke_us: n,
            complete_us: n.is_multiple_of(2).then_some(n + 1),
            status: n.is_multiple_of(2).then_some(202),
            outcome: if n.is_multiple_of(2) {
                "won"
            } else {
                "indeterminate"
            }
            .into(),
            order: n.is_multiple_of(2).then(|| format!("o{n}")),
            order_status: None,
            node: None,
        };
        let (mut a, mut b) = (history.buffer(), history.buffer());
        for n in 0..2_000 {
            if n % 3 == 0 { &mut a } else { &mut b }.push(&record(n));
        }
        a.finish().unwrap();
        b.finish().unwrap();
        let mut back = read(&path).unwrap();
        back.sort_by_key(|r| r.invoke_us);
        assert_eq!(back, (0..2_000).map(record).collect::<Vec<_>>());
        assert!(back[1].is_indeterminate() && !back[0].is_indeterminate());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
