//! The relay link's side of the core: the two operations of a round, each
//! with one job. [`Core::receive_batch`] opens what is ours in a batch;
//! [`Core::prepare_cell`] builds the one cell this client sends in a round,
//! real or cover. The link decides *when* to call them; neither does I/O
//! other than saving the session state.

use anonchat_ipc::{Event, LinkState};
use anonchat_protocol::e2e::{RoundClock, RoundError};
use anonchat_protocol::wire::RelayAddress;
use rand::Rng as _;

use super::{Core, Inner, MAX_RESUME_MS, messages};
use crate::error::{Error, Result};

impl Core {
    /// Where to connect: relay, shard and the round to resume after.
    /// `None` while locked or without an identity. The resume point is
    /// given only after a short outage (see `Resume`): a resume links the
    /// new connection to the old one.
    pub fn link_target(&self) -> Option<(RelayAddress, u32, Option<u64>)> {
        let now = self.now_ms();
        let inner = self.lock();
        inner.unlocked.as_ref()?;
        let p = inner.public.as_ref()?;
        let r = inner.resume;
        let fresh = now.saturating_sub(r.at_ms) <= r.window_ms.min(MAX_RESUME_MS);
        Some((p.relay().clone(), p.shard(), r.round.filter(|_| fresh)))
    }

    /// Records what the relay announced at join: the round length (the
    /// end-to-end layer checks rounds against the wall clock with it; it
    /// also tells a sender with a full outbox how long to wait) and how
    /// much backlog it holds (how long an outage may be resumed). A length
    /// outside the documented range is refused, whatever the relay says.
    pub fn joined(&self, round_ms: u32, open_round: u64, oldest_held: u64) -> Result<()> {
        self.check_welcome(round_ms, open_round, oldest_held)?;
        let mut inner = self.lock();
        inner.round_ms = Some(round_ms);
        inner.resume.window_ms = open_round
            .saturating_sub(oldest_held)
            .saturating_mul(u64::from(round_ms));
        drop(inner);
        let cell_size = self.settings.cell_size;
        self.traffic_meter()
            .link(round_ms, anonchat_protocol::wire::frame_wire_len(cell_size));
        Ok(())
    }

    /// Checks what the relay announced at join against the wall clock,
    /// without touching the state (no lock: the link calls it before it
    /// starts answering). See [`RoundClock::check_welcome`].
    pub fn check_welcome(&self, round_ms: u32, open_round: u64, oldest_held: u64) -> Result<()> {
        RoundClock::new(u64::from(round_ms))
            .and_then(|c| c.check_welcome(open_round, oldest_held, self.now_ms()))
            .map_err(Error::RelayRefused)
    }

    /// Whether a cell for `round` would pass the wall-clock check now (no
    /// lock). The link checks the round a job will prepare for before it
    /// starts the job, so that a lied round number closes the connection
    /// at once, not after work whose length depends on what it read.
    pub fn round_acceptable(&self, round_ms: u32, round: u64) -> bool {
        RoundClock::new(u64::from(round_ms))
            .and_then(|c| c.check(round, self.now_ms()))
            .is_ok()
    }

    /// Records the round length alone (tests that drive a core without a
    /// relay).
    pub fn set_round_ms(&self, round_ms: u32) -> Result<()> {
        let now = self.now_ms() / u64::from(round_ms.max(1));
        self.joined(round_ms, now, now)
    }

    /// Gives the router the relay's round length, so that it can check
    /// rounds against the wall clock.
    fn apply_round_ms(inner: &mut Inner) -> Result<()> {
        let unlocked = inner.unlocked.as_mut().ok_or(Error::Locked)?;
        let round_ms = inner
            .round_ms
            .ok_or(Error::RelayRefused(RoundError::NoRoundLength))?;
        unlocked
            .router
            .set_round_ms(u64::from(round_ms))
            .map_err(Error::RelayRefused)
    }

    /// Records the link's state (shown by `status`, announced as an event).
    pub fn set_link(&self, state: LinkState, error: Option<String>) {
        let mut inner = self.lock();
        if inner.relay.state == state && error.is_none() {
            return;
        }
        inner.relay.state = state;
        if error.is_some() || state == LinkState::Connected {
            inner.relay.last_error = error;
        }
        let round = inner.relay.round;
        drop(inner);
        self.emit(Event::RelayStateChanged { state, round });
    }

    /// Feeds the batch of `round`: opens the cells addressed to us, updates
    /// the history, emits the events, saves the state if it moved, and
    /// records `round` as the point a reconnect resumes after.
    /// [`Error::Locked`] while locked.
    pub fn receive_batch(&self, round: u64, cells: &[&[u8]]) -> Result<()> {
        let now = self.now_ms();
        // What this batch took on the wire: its header frame and its body.
        let cell_size = self.settings.cell_size;
        self.traffic_meter().batch(
            cells.len(),
            anonchat_protocol::wire::frame_wire_len(cell_size)
                + anonchat_protocol::wire::sealed_body_len(cells.len() as u32, cell_size),
        );
        let mut guard = self.lock();
        let inner = &mut *guard;
        Self::apply_round_ms(inner)?;
        let unlocked = inner.unlocked.as_mut().ok_or(Error::Locked)?;
        // A batch whose round the wall clock refutes is refused whole (the
        // link then drops the connection).
        let events = unlocked
            .router
            .receive_batch(&mut *inner.rng, round, now, cells)
            .map_err(Error::RelayRefused)?;
        if unlocked.dirty()
            && let Err(e) = unlocked.save(&self.settings.paths)
        {
            // What was opened stays in RAM; no acknowledgement of it goes
            // out before a save succeeds (prepare_cell saves first).
            tracing::error!(error = %e, "cannot save session state after a batch");
        }
        inner.relay.round = Some(round);
        inner.resume.round = Some(round);
        inner.resume.at_ms = now;
        let group_events = unlocked.router.take_group_events();
        let mut out = messages::apply(inner, now, events);
        out.extend(super::group_events::apply(inner, now, group_events));
        drop(guard);
        self.emit_all(out);
        Ok(())
    }

    /// The one cell to send in `round`: the next real cell of some contact,
    /// or cover. A real cell is handed out only once the state it advanced
    /// is on disk, so no key is ever used twice after a crash; if the save
    /// fails the cell is replaced by cover. Always exactly one cell of the
    /// session cell size. [`Error::Locked`] while locked.
    pub fn prepare_cell(&self, round: u64) -> Result<Vec<u8>> {
        let now = self.now_ms();
        let mut guard = self.lock();
        let inner = &mut *guard;
        Self::apply_round_ms(inner)?;
        let unlocked = inner.unlocked.as_mut().ok_or(Error::Locked)?;
        let (mut cell, events) = unlocked
            .router
            .next_cell(&mut *inner.rng, round, now)
            .map_err(Error::RelayRefused)?;
        if unlocked.dirty()
            && let Err(e) = unlocked.save(&self.settings.paths)
        {
            // Never send a cell whose key use is not on disk.
            tracing::error!(error = %e, "cannot save session state; sending cover instead");
            inner.rng.fill_bytes(&mut cell);
            return Ok(cell);
        }
        let group_events = unlocked.router.take_group_events();
        self.traffic_meter().real_cells(
            unlocked.router.real_cells_sent(),
            unlocked.router.group_cells_sent(),
        );
        let mut out = messages::apply(inner, now, events);
        out.extend(super::group_events::apply(inner, now, group_events));
        drop(guard);
        self.emit_all(out);
        Ok(cell)
    }
}
