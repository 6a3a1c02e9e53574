//! What a process used, from Linux's /proc: peak resident memory (`VmHWM`)
//! and CPU time. Used for the server (`--server-pid`) and the generator
//! itself; elsewhere than Linux the figures are simply absent.

/// `VmHWM` of `pid` in kB: the peak resident set since it started.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
}

/// User + system CPU seconds of `pid` (`self` for this process) so far.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its `)` are fixed.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports in clock ticks, USER_HZ, which is 100 on every supported
    // architecture's ABI.
    Some((utime + stime) as f64 / 100.0)
}

/// CPU seconds of the server (when its pid is known) and of this process,
/// read at the start of a phase.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    server_pid: Option<u32>,
    server: Option<f64>,
    own: Option<f64>,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            server: server_pid.and_then(|pid| cpu_seconds(&pid.to_string())),
            own: cpu_seconds("self"),
        }
    }

    /// CPU seconds since `start`: (server, generator).
    pub fn seconds(&self) -> (Option<f64>, Option<f64>) {
        let server = self
            .server
            .zip(
                self.server_pid
                    .and_then(|pid| cpu_seconds(&pid.to_string())),
            )
            .map(|(a, b)| b - a);
        let own = self.own.zip(cpu_seconds("self")).map(|(a, b)| b - a);
        (server, own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_rss_and_cpu_time() {
        if !std::path::Path::new("/proc/self/status").exists() {
            return;
        }
        let pid = std::process::id();
        assert!(peak_rss_kb(pid).unwrap() > 0);
        assert!(cpu_seconds("self").unwrap() >= 0.0);
    }
}
