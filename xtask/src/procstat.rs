//! CPU time of the server under test, from /proc.
//!
//! - `/proc/<pid>/stat` fields 14 and 15 (utime, stime) in clock ticks
//!   (`getconf CLK_TCK`, normally 100 per second): the process's CPU time,
//!   all threads, including threads that have exited. This is the figure.
//! - `/proc/<pid>/task/<tid>/schedstat` field 1: nanoseconds on a CPU, per
//!   live thread; summed over the threads, a finer cross-check.
//!
//! A server is its root pid plus every process whose parent it is (nginx's
//! master and its worker; authgate is one process).

use std::path::Path;

/// CPU time of a set of processes at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct CpuSample {
    /// utime + stime, clock ticks.
    pub(crate) ticks: u64,
    /// Sum of schedstat run time of the live threads, ns.
    pub(crate) sched_ns: u64,
    /// How many processes were read.
    pub(crate) processes: usize,
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
pub(crate) fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The fields after `comm` of `/proc/<pid>/stat` (field 3 is index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// `root` and its child processes.
pub(crate) fn family(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // Field 4 (ppid) is index 1 after comm.
            if pid != root
                && stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
                    == Some(root)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

fn sched_ns(pid: u32) -> u64 {
    let mut total = 0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    for t in tasks.flatten() {
        let p = t.path().join("schedstat");
        total += read_first_u64(&p).unwrap_or(0);
    }
    total
}

fn read_first_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of `pids` now.
pub(crate) fn sample(pids: &[u32]) -> CpuSample {
    let mut s = CpuSample::default();
    for &pid in pids {
        let Some(f) = stat_fields(pid) else {
            continue;
        };
        // utime is field 14 (index 11), stime field 15 (index 12).
        let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        s.ticks += get(11) + get(12);
        s.sched_ns += sched_ns(pid);
        s.processes += 1;
    }
    s
}

/// (busy, total) jiffies of one CPU from /proc/stat.
pub(crate) fn core_ticks(cpu: usize) -> (u64, u64) {
    let want = format!("cpu{cpu}");
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    for line in s.lines() {
        let mut it = line.split_whitespace();
        if it.next() != Some(want.as_str()) {
            continue;
        }
        let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
        if v.len() < 8 {
            return (0, 0);
        }
        // user nice system idle iowait irq softirq steal
        let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        return (busy, busy + v[3] + v[4]);
    }
    (0, 0)
}

/// The 1/5/15 minute load averages.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
