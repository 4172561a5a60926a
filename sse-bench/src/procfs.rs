//! Reads a process's resident memory and CPU time from `/proc`.

use std::time::Duration;

use crate::Error;

/// Memory and CPU of a process at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcSample {
    /// Resident set size in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// Samples process `pid`.
pub fn sample(pid: u32) -> Result<ProcSample, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(ProcSample {
        rss_kib: parse_rss(&status)
            .ok_or_else(|| Error::Server("no VmRSS in /proc status".into()))?,
        cpu: parse_cpu(&stat, clock_ticks())
            .ok_or_else(|| Error::Server("cannot read utime/stime from /proc stat".into()))?,
    })
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
///
/// ```
/// assert_eq!(sse_bench::procfs::parse_rss("Name:\tx\nVmRSS:\t   1234 kB\n"), Some(1234));
/// ```
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime from the text of `/proc/<pid>/stat`.
///
/// ```
/// let stat = "42 (a b) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0";
/// let cpu = sse_bench::procfs::parse_cpu(stat, 100).unwrap();
/// assert_eq!(cpu, std::time::Duration::from_secs(2));
/// ```
pub fn parse_cpu(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_micros(
        ticks * 1_000_000 / ticks_per_second.max(1),
    ))
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}
