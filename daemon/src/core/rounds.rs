//! The relay link's side of the core: the two operations of a round, each
//! with one job. [`Core::receive_batch`] opens what is ours in a batch;
//! [`Core::prepare_cell`] builds the one cell this client sends in a round,
//! real or cover. The link decides *when* to call them; neither does I/O
//! other than saving the session state.

use anonchat_ipc::{Event, LinkState};
use anonchat_protocol::wire::RelayAddress;
use rand::Rng as _;

use super::{Core, messages};
use crate::error::{Error, Result};

impl Core {
    /// Where to connect: relay, shard and the round to resume after.
    /// `None` while locked or without an identity.
    pub fn link_target(&self) -> Option<(RelayAddress, u32, Option<u64>)> {
        let inner = self.lock();
        inner.unlocked.as_ref()?;
        let p = inner.public.as_ref()?;
        Some((p.relay().clone(), p.shard(), inner.relay.round))
    }

    /// Records the round length the relay announced (used to tell a
    /// sender with a full outbox how long to wait).
    pub fn set_round_ms(&self, round_ms: u32) {
        self.lock().round_ms = Some(round_ms);
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
        let mut guard = self.lock();
        let inner = &mut *guard;
        let unlocked = inner.unlocked.as_mut().ok_or(Error::Locked)?;
        let mut events = Vec::new();
        for cell in cells {
            events.extend(unlocked.router.receive_cell(&mut *inner.rng, round, cell));
        }
        if unlocked.dirty()
            && let Err(e) = unlocked.save(&self.settings.paths)
        {
            // What was opened stays in RAM; no acknowledgement of it goes
            // out before a save succeeds (prepare_cell saves first).
            tracing::error!(error = %e, "cannot save session state after a batch");
        }
        inner.relay.round = Some(round);
        let out = messages::apply(inner, now, events);
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
        let unlocked = inner.unlocked.as_mut().ok_or(Error::Locked)?;
        let (mut cell, events) = unlocked.router.next_cell(&mut *inner.rng, round, now);
        if unlocked.dirty()
            && let Err(e) = unlocked.save(&self.settings.paths)
        {
            // Never send a cell whose key use is not on disk.
            tracing::error!(error = %e, "cannot save session state; sending cover instead");
            inner.rng.fill_bytes(&mut cell);
            return Ok(cell);
        }
        let out = messages::apply(inner, now, events);
        drop(guard);
        self.emit_all(out);
        Ok(cell)
    }
}
