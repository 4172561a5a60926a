//! Reads a process's resident memory and CPU time from `/proc`.

use std::time::Duration;

use crate::Error;

/// Memory and CPU of a process at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcSample {
    /// Resident set size in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Peak resident set size in KiB (`VmHWM`), since the process started.
    pub hwm_kib: u64,
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
        hwm_kib: parse_kib(&status, "VmHWM:").unwrap_or(0),
        cpu: parse_cpu(&stat, clock_ticks())
            .ok_or_else(|| Error::Server("cannot read utime/stime from /proc stat".into()))?,
    })
}

/// Samples process `pid` plus its direct children (nginx's master and worker), summed.
pub fn sample_tree(pid: u32) -> Result<ProcSample, Error> {
    let mut total = sample(pid)?;
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
    {
        if let Ok(s) = sample(child) {
            total.rss_kib += s.rss_kib;
            total.hwm_kib += s.hwm_kib;
            total.cpu += s.cpu;
        }
    }
    Ok(total)
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
///
/// ```
/// assert_eq!(sse_bench::procfs::parse_rss("Name:\tx\nVmRSS:\t   1234 kB\n"), Some(1234));
/// ```
pub fn parse_rss(status: &str) -> Option<u64> {
    parse_kib(status, "VmRSS:")
}

fn parse_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `TcpExt` counters of this network namespace that tell how a connect storm went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// `ListenOverflows`: SYNs or ACKs dropped because a listen queue was full.
    pub listen_overflows: u64,
    /// `ListenDrops`: every connection dropped at a listening socket (overflows included).
    pub listen_drops: u64,
    /// `TCPSynRetrans`: SYNs sent again (clients whose first SYN went unanswered).
    pub syn_retrans: u64,
}

impl TcpCounters {
    /// Reads `/proc/net/netstat` (system-wide for this namespace: other traffic counts too).
    pub fn read() -> Option<TcpCounters> {
        parse_netstat(&std::fs::read_to_string("/proc/net/netstat").ok()?)
    }

    /// The increase since `before`.
    pub fn since(&self, before: &TcpCounters) -> TcpCounters {
        TcpCounters {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(before.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(before.listen_drops),
            syn_retrans: self.syn_retrans.saturating_sub(before.syn_retrans),
        }
    }
}

/// The storm counters from the text of `/proc/net/netstat` (a names line, then a values line).
///
/// ```
/// let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\nTcpExt: 0 5 7 9\n";
/// let c = sse_bench::procfs::parse_netstat(text).unwrap();
/// assert_eq!((c.listen_overflows, c.listen_drops, c.syn_retrans), (5, 7, 9));
/// ```
pub fn parse_netstat(text: &str) -> Option<TcpCounters> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    Some(TcpCounters {
        listen_overflows: get("ListenOverflows")?,
        listen_drops: get("ListenDrops").unwrap_or(0),
        syn_retrans: get("TCPSynRetrans").unwrap_or(0),
    })
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
