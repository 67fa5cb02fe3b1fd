//! Process memory figures for the status bar and benchmarks.

/// Resident memory now, in bytes.
pub fn current_rss() -> Option<u64> {
    #[cfg(target_os = "linux")]
    if let Some(bytes) = proc_status_bytes("VmRSS:") {
        return Some(bytes);
    }
    memory_stats::memory_stats().map(|stats| stats.physical_mem as u64)
}

/// The highest resident memory so far, in bytes (Linux; `None` elsewhere).
pub fn peak_rss() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        proc_status_bytes("VmHWM:")
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(target_os = "linux")]
fn proc_status_bytes(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    let kib: u64 = line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// `1.5 GB`, `320 MB`, `12 KB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else if value < 10.0 { format!("{value:.1} {}", UNITS[unit]) } else { format!("{value:.0} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rss_is_reported_and_human_readable() {
        assert!(super::current_rss().unwrap_or(1) > 0);
        assert_eq!(super::human_bytes(999), "999 B");
        assert_eq!(super::human_bytes(1_500_000), "1.5 MB");
        assert_eq!(super::human_bytes(2_600_000_000), "2.6 GB");
    }
}
