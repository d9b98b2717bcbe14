//! Peak resident memory of a process, read from `/proc` (Linux).

use std::time::Duration;

/// Follows a child process's peak RSS until it exits (VmHWM disappears with the process).
pub(super) fn watch_peak_rss(pid: u32) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak: f64 = 0.0;
        while let Some(v) = peak_rss_mib(pid) {
            peak = peak.max(v);
            std::thread::sleep(Duration::from_millis(20));
        }
        peak
    })
}

/// VmHWM of a process, in MiB; `None` once it has exited.
pub(super) fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
