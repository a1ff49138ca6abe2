//! The sessions with one contact: the one both sides have proven (if any)
//! and the one being started (if any), each holding exactly what its stage
//! needs.
//!
//! ```text
//! no session, messages waiting ─▶ starting: Initiating (our INIT out)
//! (also with a session, if the peer has not been heard for long while
//!  our messages wait: it may have lost that session)
//! Initiating ── the peer's ACCEPT opens ──▶ active (Initiator)
//! the peer's INIT ── answered ──▶ starting: Responding (our ACCEPT out)
//!                   (ignored while Initiating if our fingerprint is the smaller)
//! Responding ── a cell of the peer opens under it ──▶ active (Responder),
//!                                                     replacing the old one
//! ```
//!
//! A confirmed session is therefore replaced only by one the peer has
//! proven live: a replayed or forged INIT costs one answer and changes
//! nothing else.

use super::handshake::{Incarnation, Initiator};
use super::init::{InitId, OutgoingInit};
use super::session::{Role, Session};
use super::writer::{Writer, read_bool};
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// The session both sides have.
pub(crate) struct Active {
    /// Boxed, so that it never moves (a move leaves an unwiped copy).
    pub(crate) session: Box<Session>,
    /// Which side started it.
    pub(crate) role: Role,
    /// The peer's INIT it answered (a responder's), whose late copies are
    /// then not answered again.
    pub(crate) their_init: Option<InitId>,
    /// The round index by which the session was proven (RAM only; after a
    /// restart, the last round read before the save, which is no
    /// earlier). Copies of `their_init` in rounds up to it are replays or
    /// late copies; a copy in a later round was sealed by the peer after
    /// the session began, so it restored a state from before it: answered.
    pub(crate) proven_at: u64,
}

/// A session start in progress.
pub(crate) enum Starting {
    /// We sent an INIT (`out`, whose id the ACCEPT names) and wait for the
    /// ACCEPT.
    Initiating {
        hs: Box<Initiator>,
        out: OutgoingInit,
    },
    /// We answered the peer's INIT `their_init` with an ACCEPT (`out`); the
    /// session waits for the peer's first cell to prove it.
    Responding {
        their_init: InitId,
        session: Box<Session>,
        out: OutgoingInit,
        /// When we answered (ms), to give up on an INIT nobody follows up.
        since_ms: u64,
        /// The incarnation the INIT carried.
        peer_incarnation: Incarnation,
    },
}

impl Starting {
    /// The handshake message we are sending.
    pub(crate) fn out_mut(&mut self) -> &mut OutgoingInit {
        match self {
            Self::Initiating { out, .. } | Self::Responding { out, .. } => out,
        }
    }

    pub(crate) fn out(&self) -> &OutgoingInit {
        match self {
            Self::Initiating { out, .. } | Self::Responding { out, .. } => out,
        }
    }
}

/// Where the sessions with one contact stand.
#[derive(Default)]
pub(crate) struct Sessions {
    pub(crate) active: Option<Active>,
    pub(crate) starting: Option<Starting>,
}

const STARTING_NONE: u8 = 0;
const STARTING_INITIATING: u8 = 1;
const STARTING_RESPONDING: u8 = 2;

impl Sessions {
    /// The session being started, if it has keys yet (a responder's).
    pub(crate) fn starting_session(&self) -> Option<&Session> {
        match &self.starting {
            Some(Starting::Responding { session, .. }) => Some(session),
            _ => None,
        }
    }

    /// `has_active || [role || session] || starting kind || ...`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bool(self.active.is_some());
        if let Some(a) = &self.active {
            w.u8(match a.role {
                Role::Initiator => 0,
                Role::Responder => 1,
            });
            w.bool(a.their_init.is_some());
            w.bytes(&a.their_init.unwrap_or_default());
            a.session.encode(w);
        }
        match &self.starting {
            None => w.u8(STARTING_NONE),
            Some(Starting::Initiating { hs, out }) => {
                w.u8(STARTING_INITIATING);
                out.encode(w);
                hs.encode(w);
            }
            Some(Starting::Responding {
                their_init,
                session,
                out,
                since_ms,
                peer_incarnation,
            }) => {
                w.u8(STARTING_RESPONDING);
                w.bytes(their_init);
                w.u64(*since_ms);
                w.u64(*peer_incarnation);
                session.encode(w);
                out.encode(w);
            }
        }
    }

    /// Reads what [`encode`](Self::encode) wrote; anything else is refused.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let active = if read_bool(r)? {
            let role = match r.u8()? {
                0 => Role::Initiator,
                1 => Role::Responder,
                _ => return Err(WireError::BadField("role")),
            };
            let known = read_bool(r)?;
            let their_init: InitId = r.array()?;
            Some(Active {
                session: Box::new(Session::decode(r)?),
                role,
                their_init: known.then_some(their_init),
                // Set by the router from the last round read.
                proven_at: u64::MAX,
            })
        } else {
            None
        };
        let starting = match r.u8()? {
            STARTING_NONE => None,
            STARTING_INITIATING => {
                let out = OutgoingInit::decode(r)?;
                Some(Starting::Initiating {
                    hs: Box::new(Initiator::decode(r)?),
                    out,
                })
            }
            STARTING_RESPONDING => Some(Starting::Responding {
                their_init: r.array()?,
                since_ms: r.u64()?,
                peer_incarnation: r.u64()?,
                session: Box::new(Session::decode(r)?),
                out: OutgoingInit::decode(r)?,
            }),
            _ => return Err(WireError::BadField("session start")),
        };
        Ok(Self { active, starting })
    }
}

/// Skips a session state saved by format 1 or 2 (protocol v1): its keys
/// come from the v1 session start, which v2 does not continue. Layout:
/// `has_session || [role || init_id || confirmed || ratchet || 4 keys] ||
/// has_init || [init_id || u16 len || data]`.
pub(crate) fn skip_v1(r: &mut Reader<'_>) -> Result<(), WireError> {
    if read_bool(r)? {
        r.take(1 + 8 + 1)?;
        // Ratchet: dhs, has_dhr + dhr, rk, two chains (flag + key), ns,
        // nr, pn, then the skipped keys (dh, n, key).
        r.take(32 + 33 + 32 + 33 + 33 + 12)?;
        let skipped = r.u32()? as usize;
        if skipped > super::ratchet::MAX_SKIPPED_KEYS {
            return Err(WireError::BadField("skipped keys"));
        }
        r.take(skipped * (32 + 4 + 32))?;
        r.take(4 * 32)?;
    }
    if read_bool(r)? {
        r.take(8)?;
        let len = usize::from(r.u16()?);
        r.take(len)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::ratchet::MAX_SKIPPED_KEYS;

    /// A v1 session state laid out as `skip_v1` reads it, with `skipped`
    /// skipped keys and an INIT of `init_len` bytes, then a marker.
    fn v1_state(skipped: u32, init_len: u16) -> Vec<u8> {
        let mut s = vec![1u8];
        s.extend(std::iter::repeat_n(5u8, 1 + 8 + 1));
        s.extend(std::iter::repeat_n(6u8, 32 + 33 + 32 + 33 + 33 + 12));
        s.extend_from_slice(&skipped.to_be_bytes());
        s.extend(std::iter::repeat_n(7u8, skipped as usize * (32 + 4 + 32)));
        s.extend(std::iter::repeat_n(8u8, 4 * 32));
        s.push(1);
        s.extend_from_slice(&[9; 8]);
        s.extend_from_slice(&init_len.to_be_bytes());
        s.extend(std::iter::repeat_n(10u8, usize::from(init_len)));
        s.extend_from_slice(b"END");
        s
    }

    /// A v1 session is skipped exactly, whatever its skipped keys and
    /// INIT hold, up to the bound on skipped keys; one more is refused.
    /// Checked against the record sizes' `*` and `+` changed, and the
    /// bound's `>` turned into `>=` or `==`.
    #[test]
    fn v1_sessions_are_skipped_exactly() {
        for (skipped, init) in [(0, 0), (2, 100), (MAX_SKIPPED_KEYS as u32, 3)] {
            let s = v1_state(skipped, init);
            let mut r = Reader::new(&s);
            skip_v1(&mut r).unwrap();
            assert_eq!(r.take(3).unwrap(), b"END", "{skipped} {init}");
            r.expect_end().unwrap();
        }
        let over = v1_state(MAX_SKIPPED_KEYS as u32 + 1, 0);
        assert!(skip_v1(&mut Reader::new(&over)).is_err());
        assert!(skip_v1(&mut Reader::new(&[0, 0])).is_ok());
    }
}
