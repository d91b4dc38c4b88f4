//! I/O: process metrics read from /proc on each scrape (CPU, memory, file descriptors).

use std::fs;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Collects `edge_process_*` metrics from `/proc/self`.
#[derive(Debug)]
pub struct ProcessCollector {
    ticks_per_second: f64,
    page_size: f64,
    boot_time: f64,
}

impl ProcessCollector {
    /// Reads the constants the conversion needs.
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("btime "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0);
        Self {
            ticks_per_second: if ticks > 0 { ticks as f64 } else { 100.0 },
            page_size: if page > 0 { page as f64 } else { 4096.0 },
            boot_time,
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

/// Fields of /proc/self/stat after the command name.
fn stat_fields() -> Option<Vec<String>> {
    let s = fs::read_to_string("/proc/self/stat").ok()?;
    let after = s.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(f) = stat_fields() else {
            return Ok(());
        };
        // Fields are numbered from 3 (state) in proc(5); index = n - 3.
        let num = |n: usize| {
            f.get(n - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cpu = (num(14) + num(15)) / self.ticks_per_second;
        let start = self.boot_time + num(22) / self.ticks_per_second;
        let vsize = num(23);
        let rss = num(24) * self.page_size;
        let fds = fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0);

        let c = ConstCounter::new(cpu);
        c.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            c.metric_type(),
        )?)?;
        for (name, help, v) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                rss,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                vsize,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                start,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                fds as f64,
            ),
        ] {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_metrics_report_real_values() {
        let r = crate::new_registry();
        let text = crate::encode(&r).unwrap();
        let rss: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("edge_process_resident_memory_bytes "))
            .expect("rss line")
            .parse()
            .unwrap();
        assert!(
            rss > 1_000_000.0,
            "a test process holds more than 1 MB: {rss}"
        );
        assert!(text.contains("edge_process_cpu_seconds_total "), "{text}");
    }
}
