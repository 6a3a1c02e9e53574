//! The run's trace: a digest of every step (FNV-1a, stable across runs and
//! builds) and the last lines, printed when a check fails.

use std::collections::VecDeque;

const TAIL: usize = 40;

pub(crate) struct Trace {
    digest: u64,
    tail: VecDeque<String>,
}

impl Trace {
    pub(crate) fn new() -> Self {
        Self {
            digest: 0xcbf2_9ce4_8422_2325,
            tail: VecDeque::with_capacity(TAIL),
        }
    }

    pub(crate) fn record(&mut self, line: String) {
        for byte in line.bytes().chain(std::iter::once(b'\n')) {
            self.digest ^= u64::from(byte);
            self.digest = self.digest.wrapping_mul(0x0100_0000_01b3);
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }

    pub(crate) fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}
