//! Reads the process's CPU time and resident memory from `/proc`, for Flink's
//! `Status.JVM.CPU.Load` (0..1 over all cores) and the RSS checks of benchmarks.

use std::time::Instant;

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// utime + stime of this process, in seconds.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks_per_second())
}

/// Resident set size of this process in bytes.
pub fn resident_set_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Total physical memory of the machine in bytes.
pub fn physical_memory_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages > 0 && page > 0 {
        pages as u64 * page as u64
    } else {
        0
    }
}

/// CPU load of this process since the previous sample, as a fraction of all cores.
pub struct CpuLoad {
    last: Option<(Instant, f64)>,
    cores: f64,
}

impl Default for CpuLoad {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuLoad {
    pub fn new() -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
        CpuLoad {
            last: process_cpu_seconds().map(|s| (Instant::now(), s)),
            cores,
        }
    }

    /// Load since the last call (or since creation); 0 when /proc is unreadable.
    pub fn sample(&mut self) -> f64 {
        let now = Instant::now();
        let Some(cpu) = process_cpu_seconds() else {
            return 0.0;
        };
        let load = match self.last {
            Some((then, cpu_then)) => {
                let wall = now.duration_since(then).as_secs_f64();
                if wall > 0.0 {
                    ((cpu - cpu_then) / (wall * self.cores)).clamp(0.0, 1.0)
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, cpu));
        load
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc() {
        assert!(process_cpu_seconds().is_some());
        assert!(resident_set_bytes().unwrap_or(0) > 0);
        assert!(physical_memory_bytes() > 0);
        let mut load = CpuLoad::new();
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let l = load.sample();
        assert!((0.0..=1.0).contains(&l), "{l}");
    }
}
