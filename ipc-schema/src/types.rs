//! Parameter, result and event types. Public data only: nothing here can
//! hold a key. Message text appears in `HistoryEntry` and `Event`, never in
//! logs (the daemon logs counts, not values).

use serde::{Deserialize, Serialize};

/// Whether the daemon has an identity and holds its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityState {
    /// No identity yet: `identity.create`.
    None,
    /// Keys on disk, not in memory: `identity.unlock`.
    Locked,
    /// Keys in memory; the daemon is chatting.
    Unlocked,
}

/// The relay connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Not trying (no identity, or locked).
    Offline,
    Connecting,
    Connected,
    /// Failed; retrying with backoff.
    Retrying,
}

impl IdentityState {
    /// The wire name (as serialized), for display.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Locked => "locked",
            Self::Unlocked => "unlocked",
        }
    }
}

impl LinkState {
    /// The wire name (as serialized), for display.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Retrying => "retrying",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStatus {
    pub state: LinkState,
    /// The relay address (`anonchat://…`), if an identity exists.
    pub address: Option<String>,
    pub shard: Option<u32>,
    /// The last round received from the relay.
    pub round: Option<u64>,
    /// The last connection error, if any.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub api_version: u32,
    pub daemon_version: String,
    pub identity: IdentityState,
    /// `Some(false)` when the keys on disk are not protected by a passphrase.
    pub keys_protected: Option<bool>,
    pub relay: RelayStatus,
    pub contacts: u32,
    /// Outgoing messages not yet delivered (lost if the daemon exits).
    pub undelivered: u32,
    /// Plain sentences for the user: unprotected keys, relay unreachable,
    /// undelivered messages lost on exit.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    pub name: String,
    /// Twelve groups of five digits, to read aloud.
    pub fingerprint: String,
    pub fingerprint_hex: String,
    pub relay: String,
    pub shard: u32,
    pub created_unix: u64,
    pub keys_protected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactInfo {
    /// The name you gave the contact.
    pub name: String,
    /// The nickname in the contact's identity file.
    pub nickname: String,
    pub fingerprint: String,
    pub fingerprint_hex: String,
    pub verified: bool,
    pub relay: String,
    pub shard: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    pub id: u64,
    pub state: Delivery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    Out,
}

/// Delivery state of an outgoing message (`received` for incoming ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    Queued,
    Sent,
    Delivered,
    Received,
}

impl Delivery {
    /// The wire name (as serialized), for display.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Received => "received",
        }
    }

    /// The mark front-ends show: … queued, ✓ sent, ✓✓ delivered.
    pub fn mark(self) -> &'static str {
        match self {
            Self::Queued => "…",
            Self::Sent => "✓",
            Self::Delivered => "✓✓",
            Self::Received => "",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: u64,
    pub direction: Direction,
    pub text: String,
    /// Milliseconds since the Unix epoch, by the daemon's clock.
    pub time_ms: u64,
    pub state: Delivery,
}

impl std::fmt::Debug for HistoryEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print message text by accident.
        f.debug_struct("HistoryEntry")
            .field("id", &self.id)
            .field("direction", &self.direction)
            .field("len", &self.text.len())
            .field("time_ms", &self.time_ms)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// What `messages.subscribe` streams, tagged by `type`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    MessageReceived {
        contact: String,
        id: u64,
        text: String,
        time_ms: u64,
    },
    DeliveryChanged {
        contact: String,
        id: u64,
        state: Delivery,
    },
    ContactAdded {
        contact: String,
    },
    ContactRemoved {
        contact: String,
    },
    ContactVerified {
        contact: String,
    },
    RelayStateChanged {
        state: LinkState,
        round: Option<u64>,
    },
    Locked,
    Unlocked,
    /// The subscriber fell behind and `missed` events were dropped; re-read
    /// `messages.history` to catch up.
    Lagged {
        missed: u64,
    },
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MessageReceived {
                contact, id, text, ..
            } => write!(
                f,
                "MessageReceived {{ contact: {contact:?}, id: {id}, len: {} }}",
                text.len()
            ),
            Self::DeliveryChanged { contact, id, state } => {
                write!(
                    f,
                    "DeliveryChanged {{ contact: {contact:?}, id: {id}, state: {state:?} }}"
                )
            }
            Self::ContactAdded { contact } => write!(f, "ContactAdded({contact:?})"),
            Self::ContactRemoved { contact } => write!(f, "ContactRemoved({contact:?})"),
            Self::ContactVerified { contact } => write!(f, "ContactVerified({contact:?})"),
            Self::RelayStateChanged { state, round } => {
                write!(
                    f,
                    "RelayStateChanged {{ state: {state:?}, round: {round:?} }}"
                )
            }
            Self::Locked => f.write_str("Locked"),
            Self::Unlocked => f.write_str("Unlocked"),
            Self::Lagged { missed } => write!(f, "Lagged {{ missed: {missed} }}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_type_in_snake_case() {
        let e = Event::DeliveryChanged {
            contact: "bob".into(),
            id: 3,
            state: Delivery::Delivered,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"type":"delivery_changed","contact":"bob","id":3,"state":"delivered"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    }

    #[test]
    fn display_names_are_the_wire_names() {
        let wire = |v: serde_json::Value| v.as_str().unwrap().to_owned();
        for s in [
            IdentityState::None,
            IdentityState::Locked,
            IdentityState::Unlocked,
        ] {
            assert_eq!(s.as_str(), wire(serde_json::to_value(s).unwrap()));
        }
        for s in [
            LinkState::Offline,
            LinkState::Connecting,
            LinkState::Connected,
            LinkState::Retrying,
        ] {
            assert_eq!(s.as_str(), wire(serde_json::to_value(s).unwrap()));
        }
        for s in [
            Delivery::Queued,
            Delivery::Sent,
            Delivery::Delivered,
            Delivery::Received,
        ] {
            assert_eq!(s.as_str(), wire(serde_json::to_value(s).unwrap()));
        }
        assert_eq!(Delivery::Delivered.mark(), "✓✓");
    }

    #[test]
    fn debug_never_prints_message_text() {
        let e = Event::MessageReceived {
            contact: "bob".into(),
            id: 1,
            text: "the secret plan".into(),
            time_ms: 0,
        };
        let h = HistoryEntry {
            id: 1,
            direction: Direction::In,
            text: "the secret plan".into(),
            time_ms: 0,
            state: Delivery::Received,
        };
        let printed = format!("{e:?} {h:?}");
        assert!(!printed.contains("secret"), "{printed}");
    }
}
