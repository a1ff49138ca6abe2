//! The lifecycle of the session with one contact, as one enum whose
//! variants hold exactly what each state needs.
//!
//! ```text
//! None        ── messages waiting ───────────▶ Initiating
//! Initiating  ── first session cell opened ──▶ Established (Initiator)
//! any state   ── the peer's init completes ──▶ Established (Responder)
//!                (ignored while Initiating if our fingerprint is the smaller)
//! ```

use super::init::{InitId, OutgoingInit};
use super::session::{Role, Session};
use super::writer::Writer;
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// Where the session with one contact stands.
pub(crate) enum SessionState {
    /// No session: we have sent no init and accepted none.
    None,
    /// We started the session and may send on it, but the peer has not
    /// answered on it yet: our init goes out again with every
    /// retransmission, and a simultaneous start is settled by fingerprints.
    Initiating {
        session: Session,
        init: OutgoingInit,
    },
    /// Both sides have the session.
    Established {
        session: Session,
        /// Which side started it.
        role: Role,
        /// The init that started it (kept for the saved state).
        init_id: InitId,
    },
}

impl SessionState {
    /// The session, in either state that has one.
    pub(crate) fn session(&self) -> Option<&Session> {
        match self {
            Self::None => None,
            Self::Initiating { session, .. } | Self::Established { session, .. } => Some(session),
        }
    }

    pub(crate) fn session_mut(&mut self) -> Option<&mut Session> {
        match self {
            Self::None => None,
            Self::Initiating { session, .. } | Self::Established { session, .. } => Some(session),
        }
    }

    /// The peer answered on the session we started: `Initiating` becomes
    /// `Established` and our init is dropped. Returns whether that
    /// happened.
    pub(crate) fn confirm(&mut self) -> bool {
        match std::mem::replace(self, Self::None) {
            Self::Initiating { session, init } => {
                *self = Self::Established {
                    session,
                    role: Role::Initiator,
                    init_id: init.id,
                };
                true
            }
            other => {
                *self = other;
                false
            }
        }
    }

    /// Saved as in format 1: `has_session || [role || init_id || confirmed
    /// || session] || has_init || [init]`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Self::None => {
                w.bool(false);
                w.bool(false);
            }
            Self::Initiating { session, init } => {
                encode_session(w, Role::Initiator, init.id, false, session);
                w.bool(true);
                init.encode(w);
            }
            Self::Established {
                session,
                role,
                init_id,
            } => {
                encode_session(w, *role, *init_id, true, session);
                w.bool(false);
            }
        }
    }

    /// Reads what [`encode`](Self::encode) wrote. A combination it never
    /// writes (an init without an unconfirmed session we started, or the
    /// other way round) is refused.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let session = if r.u8()? == 1 {
            let role = match r.u8()? {
                0 => Role::Initiator,
                1 => Role::Responder,
                _ => return Err(WireError::BadField("role")),
            };
            let init_id: InitId = r.array()?;
            let confirmed = r.u8()? == 1;
            Some((role, init_id, confirmed, Session::decode(r)?))
        } else {
            None
        };
        let init = if r.u8()? == 1 {
            Some(OutgoingInit::decode(r)?)
        } else {
            None
        };
        match (session, init) {
            (None, None) => Ok(Self::None),
            (Some((Role::Initiator, init_id, false, session)), Some(init))
                if init.id == init_id =>
            {
                Ok(Self::Initiating { session, init })
            }
            // A responder's session is established whatever its flag says
            // (format 1 never looked at it).
            (Some((role, init_id, confirmed, session)), None)
                if confirmed || role == Role::Responder =>
            {
                Ok(Self::Established {
                    session,
                    role,
                    init_id,
                })
            }
            _ => Err(WireError::BadField("session state")),
        }
    }
}

fn encode_session(w: &mut Writer, role: Role, init_id: InitId, confirmed: bool, s: &Session) {
    w.bool(true);
    w.u8(match role {
        Role::Initiator => 0,
        Role::Responder => 1,
    });
    w.bytes(&init_id);
    w.bool(confirmed);
    s.encode(w);
}
