//! What anonymity costs this user now: the bytes the relay link receives
//! (every cell of the shard, every round) and sends (one cell per round),
//! averaged over the last batches, for `daemon.traffic` and
//! `anonctl status`.

use std::collections::VecDeque;

use anonchat_ipc::{TRAFFIC_BATCHES, Traffic};

/// The last batches' sizes and the link's shape. Bounded: at most
/// [`TRAFFIC_BATCHES`] entries.
#[derive(Debug, Default)]
pub struct TrafficMeter {
    /// (cells, bytes on the wire) of the last batches, oldest first.
    recent: VecDeque<(u32, u64)>,
    round_ms: Option<u32>,
    /// Bytes of one client frame on the wire (the one cell per round).
    frame_bytes: u64,
    /// Real cells sent since the daemon started, and of them group cells.
    real_cells: u64,
    group_cells: u64,
}

const DAY_S: u64 = 24 * 3600;

impl TrafficMeter {
    /// A new link: its round length and client frame size.
    pub fn link(&mut self, round_ms: u32, frame_bytes: usize) {
        self.round_ms = Some(round_ms);
        self.frame_bytes = frame_bytes as u64;
    }

    /// One batch received.
    pub fn batch(&mut self, cells: usize, wire_bytes: usize) {
        if self.recent.len() >= TRAFFIC_BATCHES {
            self.recent.pop_front();
        }
        self.recent.push_back((cells as u32, wire_bytes as u64));
    }

    /// Real cells sent (not cover), since the daemon started.
    pub fn real_cells(&mut self, total: u64, group: u64) {
        self.real_cells = total;
        self.group_cells = group;
    }

    /// The figures now.
    pub fn traffic(&self) -> Traffic {
        let n = self.recent.len() as u64;
        let rounds_per_ms = self.round_ms.filter(|&ms| ms > 0 && n > 0);
        let per_s = |bytes_per_round: u64| {
            rounds_per_ms.map(|ms| bytes_per_round.saturating_mul(1000) / u64::from(ms))
        };
        let down = per_s(self.recent.iter().map(|&(_, b)| b).sum::<u64>() / n.max(1));
        Traffic {
            batches: n as u32,
            round_ms: self.round_ms,
            shard_clients: self.recent.back().map(|&(c, _)| c),
            download_bytes_per_s: down,
            download_bytes_per_day: down.map(|d| d.saturating_mul(DAY_S)),
            upload_bytes_per_s: per_s(self.frame_bytes),
            real_cells_sent: self.real_cells,
            group_cells_sent: self.group_cells,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figure: 200 clients of 512-byte cells at 500 ms rounds
    /// download about 205 KB/s, about 17.7 GB a day; only the last
    /// batches count (breaks if the average keeps every batch, or if the
    /// rate forgets the round length).
    #[test]
    fn download_is_the_average_batch_times_the_rounds_per_second() {
        let mut m = TrafficMeter::default();
        assert_eq!(m.traffic().download_bytes_per_s, None);
        m.link(500, 560);
        // An old, small shard: pushed out by the newer batches.
        for _ in 0..5 {
            m.batch(2, 2 * 512 + 576);
        }
        let batch = 200 * 512 + 16 + 560;
        for _ in 0..TRAFFIC_BATCHES {
            m.batch(200, batch);
        }
        let t = m.traffic();
        assert_eq!(t.batches as usize, TRAFFIC_BATCHES);
        assert_eq!(t.shard_clients, Some(200));
        assert_eq!(t.download_bytes_per_s, Some(2 * batch as u64));
        assert_eq!(t.download_bytes_per_day, Some(2 * batch as u64 * DAY_S));
        assert_eq!(t.upload_bytes_per_s, Some(1120));
        assert!((204_000..206_000).contains(&t.download_bytes_per_s.unwrap()));
    }
}
