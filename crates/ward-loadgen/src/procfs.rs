//! What `/proc` says about a process: resident memory and CPU time (Linux only).

use std::sync::OnceLock;

/// Resident memory of a process, now and at its peak.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    /// `VmRSS` in bytes.
    pub(crate) rss: u64,
    /// `VmHWM` (peak resident set) in bytes.
    pub(crate) peak: u64,
}

/// Reads `VmRSS` and `VmHWM` from `/proc/PID/status`; `None` if the process is gone or this is
/// not Linux.
pub(crate) fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    };
    Some(Memory { rss: field("VmRSS:")?, peak: field("VmHWM:")? })
}

/// Resident memory split into anonymous (heap, stacks) and file-backed pages (`RssAnon`,
/// `RssFile` in bytes). File-backed pages include the SQLite database mapped by its
/// `mmap_size`: they grow with the file, are bounded by that setting and are reclaimable, so
/// a leak shows in the anonymous part.
pub(crate) fn memory_split(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("RssAnon:")?, field("RssFile:")?))
}

/// Open file descriptors of a process (entries of `/proc/PID/fd`); `None` if unreadable.
pub(crate) fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// User plus system CPU time a process has used, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// CPU time the whole machine has spent busy (not idle, waiting for I/O or stolen), in seconds
/// summed over all cores, from `/proc/stat`.
pub(crate) fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy is user, nice, system, irq and
    // softirq (guest time is already in user; steal is time the hypervisor took away).
    let busy: u64 = v.iter().take(7).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
    Some(busy as f64 / clock_ticks())
}

/// Cores this machine has online.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `CLK_TCK`, asked of `getconf` once (100 on practically every Linux).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let m = memory(std::process::id()).expect("own status");
        assert!(m.rss > 0 && m.peak >= m.rss);
        assert!(cpu_seconds(std::process::id()).is_some());
        // Standard input, output and error at least.
        assert!(open_fds(std::process::id()).is_some_and(|n| n >= 3));
        let (anon, file) = memory_split(std::process::id()).expect("own RssAnon and RssFile");
        assert!(anon > 0 && anon + file <= m.peak + m.rss);
        assert!(machine_busy_seconds().is_some());
    }
}
