//! The comparison as a table: a row per server and run, then a summary
//! with medians over the runs.

use super::{Comparison, Run};
use crate::loadgen::Report;

/// Medians and ratios over a comparison's runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Runs of each server.
    pub runs: usize,
    /// The relay's median CPU ns per delivery.
    pub relay_ns_median: Option<f64>,
    /// Redis's median CPU ns per delivery.
    pub redis_ns_median: Option<f64>,
    /// Per run: Redis's CPU per delivery over the relay's.
    pub ratios: Vec<f64>,
    /// Redis's median over the relay's median.
    pub ratio_of_medians: Option<f64>,
    /// Runs in which the relay's p99 fan-out latency was below Redis's
    /// (or Redis delivered nothing inside the window: it fell behind).
    pub relay_p99_below: usize,
    /// Cells the relay's clients lost, over all runs.
    pub relay_lost: u64,
    /// Messages Redis's clients lost, over all runs.
    pub redis_lost: u64,
}

/// The median of `v`; the mean of the middle two for an even count.
fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        f64::midpoint(v[mid - 1], v[mid])
    } else {
        v[mid]
    })
}

impl Summary {
    /// The summary of `runs`.
    pub fn of(runs: &[Run]) -> Self {
        let relay_ns: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.relay.server_cpu_ns_per_delivery)
            .collect();
        let redis_ns: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.redis.as_ref()?.server_cpu_ns_per_delivery)
            .collect();
        let ratios = runs
            .iter()
            .filter_map(|r| {
                let ours = r.relay.server_cpu_ns_per_delivery?;
                let theirs = r.redis.as_ref()?.server_cpu_ns_per_delivery?;
                Some(theirs / ours.max(1e-9))
            })
            .collect();
        let relay_ns_median = median(relay_ns);
        let redis_ns_median = median(redis_ns);
        Self {
            runs: runs.len(),
            ratio_of_medians: relay_ns_median
                .zip(redis_ns_median)
                .map(|(ours, theirs)| theirs / ours.max(1e-9)),
            relay_ns_median,
            redis_ns_median,
            ratios,
            relay_p99_below: runs
                .iter()
                .filter(|r| {
                    r.redis.as_ref().is_some_and(|redis| {
                        redis.cells_delivered == 0
                            || r.relay.fanout_latency_p99_ms < redis.fanout_latency_p99_ms
                    })
                })
                .count(),
            relay_lost: runs.iter().map(|r| r.relay.lost_cells).sum(),
            redis_lost: runs
                .iter()
                .filter_map(|r| r.redis.as_ref())
                .map(|r| r.lost_cells)
                .sum(),
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

/// Thousands separated by commas.
fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A row of the Markdown table.
pub fn row(r: &Report) -> String {
    format!(
        "| {} | {} × {} | {} ms | {} | {} % | {} | {:.1} / {:.1} ms | {} | {} KiB/s | {} % |",
        r.server,
        r.clients,
        r.shards,
        r.round_ms,
        thousands(r.delivered_cells_per_s),
        opt(r.server_cpu_percent, 1),
        opt(r.server_cpu_ns_per_delivery, 0),
        r.fanout_latency_p50_ms,
        r.fanout_latency_p99_ms,
        thousands(r.lost_cells as f64),
        thousands(r.download_bytes_per_client_s / 1024.0),
        opt(r.loadgen_cpu_percent, 1),
    )
}

/// The Markdown table's header.
pub const TABLE_HEADER: &str = "| server | clients × shards | round | deliveries/s | server CPU (one core) | CPU ns per delivery | fan-out p50 / p99 | lost | download per client | loadgen CPU |\n|---|---|---|---|---|---|---|---|---|---|";

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{TABLE_HEADER}")?;
        for run in &self.runs {
            writeln!(f, "{}", row(&run.relay))?;
            if let Some(redis) = &run.redis {
                writeln!(f, "{}", row(redis))?;
            }
        }
        writeln!(f)?;
        let s = &self.summary;
        if let [run] = self.runs.as_slice()
            && let (Some(redis), Some(ratio)) = (&run.redis, s.ratio_of_medians)
        {
            writeln!(
                f,
                "anonchat-relay: {ratio:.2}x less CPU per delivery than redis-server; p99 {:.1} ms vs {:.1} ms; lost {} vs {}",
                run.relay.fanout_latency_p99_ms,
                redis.fanout_latency_p99_ms,
                run.relay.lost_cells,
                redis.lost_cells
            )?;
        } else if let (Some(ratio), Some(ours), Some(theirs)) =
            (s.ratio_of_medians, s.relay_ns_median, s.redis_ns_median)
        {
            let each: Vec<String> = s.ratios.iter().map(|r| format!("{r:.2}x")).collect();
            let lowest = s.ratios.iter().copied().fold(f64::INFINITY, f64::min);
            writeln!(
                f,
                "anonchat-relay: {ratio:.2}x less CPU per delivery than redis-server, median of {} alternated runs ({ours:.0} vs {theirs:.0} ns); run by run {}, lowest {lowest:.2}x; p99 below Redis's in {} of {} runs; lost {} vs {} in all",
                s.runs,
                each.join(", "),
                s.relay_p99_below,
                s.runs,
                s.relay_lost,
                s.redis_lost,
            )?;
        } else if let Some(ours) = s.relay_ns_median
            && (s.runs > 1 || self.redis_skipped.is_none())
        {
            writeln!(
                f,
                "anonchat-relay: median of {} runs {ours:.0} ns per delivery; lost {} in all",
                s.runs, s.relay_lost
            )?;
            if self.runs.iter().any(|r| r.redis.is_some()) && s.redis_ns_median.is_none() {
                writeln!(
                    f,
                    "redis-server delivered no message published inside the window before the run ended (it fell behind): no ratio; lost {} in all",
                    s.redis_lost
                )?;
            }
        }
        if let Some(why) = &self.redis_skipped {
            writeln!(f, "{why}")?;
        }
        if let Some(line) = &self.daemon {
            writeln!(f, "{line}")?;
        }
        write!(f, "measured on {}", self.machine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    fn report(server: &str, ns: f64, p99: f64, lost: u64) -> Report {
        Report {
            server: server.into(),
            clients: 2,
            shards: 1,
            cell_size: 512,
            round_ms: 100,
            duration_s: 1.0,
            rounds: 10,
            cells_sent: 20,
            cells_delivered: 40,
            delivered_cells_per_s: 40.0,
            delivered_bytes_per_s: 1.0,
            download_bytes_per_client_s: 1.0,
            fanout_latency_p50_ms: 1.0,
            fanout_latency_p99_ms: p99,
            fanout_latency_max_ms: p99,
            lost_cells: lost,
            server_cpu_percent: Some(1.0),
            server_cpu_ns_per_delivery: Some(ns),
            loadgen_cpu_percent: Some(1.0),
        }
    }

    /// Medians are taken per server over the runs (not of the per-run
    /// ratios), the middle two averaged for an even count; ratios are
    /// Redis's over the relay's, run by run, in order; p99 and lost are
    /// counted over every run. Breaks if a median is taken unsorted, the
    /// ratio is turned over, or a run's loss is dropped.
    #[test]
    fn the_summary_takes_medians_per_server_and_ratios_per_run() {
        let runs = vec![
            Run {
                relay: report("anonchat-relay", 300.0, 10.0, 0),
                redis: Some(report("redis-server", 1200.0, 50.0, 0)),
            },
            Run {
                relay: report("anonchat-relay", 200.0, 60.0, 3),
                redis: Some(report("redis-server", 1500.0, 50.0, 7)),
            },
            Run {
                relay: report("anonchat-relay", 250.0, 10.0, 0),
                redis: Some(report("redis-server", 1000.0, 50.0, 0)),
            },
        ];
        let s = Summary::of(&runs);
        assert_eq!(s.runs, 3);
        assert_eq!(s.relay_ns_median, Some(250.0));
        assert_eq!(s.redis_ns_median, Some(1200.0));
        assert_eq!(s.ratios, vec![4.0, 7.5, 4.0]);
        assert_eq!(s.ratio_of_medians, Some(4.8));
        assert_eq!(s.relay_p99_below, 2);
        assert_eq!((s.relay_lost, s.redis_lost), (3, 7));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
    }

    /// A Redis that fell behind and delivered nothing inside the window
    /// has no CPU per delivery (not a division by zero), gives no ratio,
    /// and counts as the relay's p99 being below. Breaks if zero
    /// deliveries still yield a figure.
    #[test]
    fn a_redis_that_delivered_nothing_gives_no_ratio() {
        let mut stalled = report("redis-server", 0.0, 0.0, 20_000_000);
        stalled.cells_delivered = 0;
        let measured = crate::loadgen::Measured {
            server: "redis-server",
            clients: 2,
            shards: 1,
            cell_size: 512,
            round_ms: 100,
            duration: std::time::Duration::from_secs(1),
            rounds: 10,
            cells_sent: 20,
            cells_delivered: 0,
            bytes_received: 0,
            latencies: crate::loadgen::Latencies::default(),
            lost_cells: 40,
            server_cpu: Some(crate::procstat::CpuSpan {
                cpu: std::time::Duration::from_millis(900),
                wall: std::time::Duration::from_secs(1),
            }),
            loadgen_cpu: None,
        };
        assert_eq!(measured.report().server_cpu_ns_per_delivery, None);
        stalled.server_cpu_ns_per_delivery = None;
        let runs = vec![Run {
            relay: report("anonchat-relay", 130.0, 150.0, 0),
            redis: Some(stalled),
        }];
        let s = Summary::of(&runs);
        assert_eq!(s.ratio_of_medians, None);
        assert!(s.ratios.is_empty());
        assert_eq!(s.relay_p99_below, 1);
    }
}
