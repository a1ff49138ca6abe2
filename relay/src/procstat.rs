//! CPU time of a process from `/proc/PID/stat`, read the same way for every
//! process the benchmark measures (the relay, `redis-server`, a daemon, the
//! load generator itself): user plus system time of all its threads.

use std::time::{Duration, Instant};

/// utime + stime of a process, in clock ticks, from `/proc/PID/stat`; `None`
/// if the process is gone or the file cannot be read (not Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 where it cannot be read).
pub fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A process's CPU time over a span of wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: u32,
    ticks: u64,
    at: Instant,
}

/// What a [`CpuMeter`] measured.
#[derive(Debug, Clone, Copy)]
pub struct CpuSpan {
    /// CPU time used (user and system, all threads).
    pub cpu: Duration,
    /// Wall-clock time it was measured over.
    pub wall: Duration,
}

impl CpuSpan {
    /// CPU use in percent of one core.
    pub fn percent(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9) * 100.0
    }
}

impl CpuMeter {
    /// Starts measuring `pid`; `None` if its stat file cannot be read.
    pub fn start(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            ticks: cpu_ticks(pid)?,
            at: Instant::now(),
        })
    }

    /// The CPU time since [`Self::start`]; `None` if the process is gone.
    pub fn stop(&self, ticks_per_s: f64) -> Option<CpuSpan> {
        let ticks = cpu_ticks(self.pid)?.saturating_sub(self.ticks);
        Some(CpuSpan {
            cpu: Duration::from_secs_f64(ticks as f64 / ticks_per_s),
            wall: self.at.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_reads_our_own_process() {
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(cpu_ticks(u32::MAX).is_none());
    }

    /// Spinning for 300 ms shows as CPU time (breaks if the fields read
    /// are not utime and stime: a wrong index reads a field that does not
    /// grow, and this fails).
    #[test]
    fn a_busy_loop_shows_as_cpu_time() {
        let m = CpuMeter::start(std::process::id()).unwrap();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let span = m.stop(clock_ticks_per_s()).unwrap();
        assert!(span.cpu >= Duration::from_millis(150), "{span:?}");
    }
}
