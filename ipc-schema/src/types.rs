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
    /// Dialing the relay or in the handshake.
    Connecting,
    /// Joined the shard; cells flow every round.
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

/// The relay part of [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayStatus {
    /// The connection's state.
    pub state: LinkState,
    /// The relay address (`anonchat://…`), if an identity exists.
    pub address: Option<String>,
    /// Our shard on the relay, if an identity exists.
    pub shard: Option<u32>,
    /// The last round received from the relay.
    pub round: Option<u64>,
    /// The last connection error, if any.
    pub last_error: Option<String>,
    /// The SOCKS5 proxy (e.g. Tor) the link goes through, if configured:
    /// then the daemon never connects to the relay directly.
    #[serde(default)]
    pub proxy: Option<String>,
}

/// The result of `daemon.traffic`: what anonymity costs this user now.
/// Every client of a shard receives every cell of the shard every round
/// (that is what hides the recipient), so the download grows with the
/// shard's size and shrinks with longer rounds. Figures are averages over
/// the last batches received (at most
/// [`TRAFFIC_BATCHES`](crate::TRAFFIC_BATCHES)), times the rounds per
/// second; `None` before the first batch.
///
/// A method of its own rather than fields of [`Status`]: existing clients
/// build `Status` values field by field, and a new field would break them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Batches the averages are over.
    pub batches: u32,
    /// The round length of the relay link, in milliseconds.
    pub round_ms: Option<u32>,
    /// Cells in the last batch: the clients in your shard that sent a cell
    /// that round, your anonymity set.
    pub shard_clients: Option<u32>,
    /// Bytes per second the relay link receives (batch headers and
    /// bodies).
    pub download_bytes_per_s: Option<u64>,
    /// The same, for a day.
    pub download_bytes_per_day: Option<u64>,
    /// Bytes per second the relay link sends (one cell per round).
    pub upload_bytes_per_s: Option<u64>,
    /// Real cells (not cover) this daemon sent since it started: one per
    /// message fragment, acknowledgement cell or key exchange cell. For
    /// you and your tests only; the relay cannot tell them from cover.
    #[serde(default)]
    pub real_cells_sent: u64,
    /// Of them, group cells (one per fragment of a group message, and
    /// group acknowledgements).
    #[serde(default)]
    pub group_cells_sent: u64,
}

/// The daemon's persisted configuration (`daemon.config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonConfig {
    /// The SOCKS5 proxy for the relay link (`socks5://HOST:PORT`), if any.
    pub proxy: Option<String>,
}

/// The result of `daemon.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's [`API_VERSION`](crate::API_VERSION).
    pub api_version: u32,
    /// The daemon's package version.
    pub daemon_version: String,
    /// Whether an identity exists and its keys are loaded.
    pub identity: IdentityState,
    /// `Some(false)` when the keys on disk are not protected by a passphrase.
    pub keys_protected: Option<bool>,
    /// The relay connection.
    pub relay: RelayStatus,
    /// Number of contacts.
    pub contacts: u32,
    /// Outgoing messages not yet acknowledged (kept, sealed, until they
    /// are).
    pub undelivered: u32,
    /// Plain sentences for the user: unprotected keys, relay unreachable,
    /// undelivered messages lost on exit.
    pub warnings: Vec<String>,
}

/// Our own identity (public data only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityInfo {
    /// The nickname in our identity file.
    pub name: String,
    /// Twelve groups of five digits, to read aloud.
    pub fingerprint: String,
    /// The fingerprint as 64 hex digits.
    pub fingerprint_hex: String,
    /// Our relay's address (`anonchat://HOST:PORT/#KEY`).
    pub relay: String,
    /// Our shard on that relay.
    pub shard: u32,
    /// When the identity was created, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// Whether the keys on disk are protected by a passphrase.
    pub keys_protected: bool,
}

/// A contact, as `contacts.*` return it (public data only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactInfo {
    /// The name you gave the contact.
    pub name: String,
    /// The nickname in the contact's identity file.
    pub nickname: String,
    /// Twelve groups of five digits, to compare aloud.
    pub fingerprint: String,
    /// The fingerprint as 64 hex digits.
    pub fingerprint_hex: String,
    /// Whether the fingerprint was checked with `contacts.verify`.
    pub verified: bool,
    /// The contact's relay address, from its identity file.
    pub relay: String,
    /// The contact's shard on that relay.
    pub shard: u32,
}

/// The result of `messages.send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentMessage {
    /// The message id (per contact, increasing).
    pub id: u64,
    /// Its delivery state (`queued` when just sent).
    pub state: Delivery,
}

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the contact to us.
    In,
    /// From us to the contact.
    Out,
}

/// Delivery state of an outgoing message (`received` for incoming ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Waiting to go out.
    Queued,
    /// Every fragment sent at least once, not yet acknowledged.
    Sent,
    /// Acknowledged by the contact's daemon.
    Delivered,
    /// An incoming message.
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

/// One message of a conversation (`messages.history`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The message id (per contact and direction).
    pub id: u64,
    /// Sent or received.
    pub direction: Direction,
    /// The message text.
    pub text: String,
    /// Milliseconds since the Unix epoch, by the daemon's clock.
    pub time_ms: u64,
    /// Delivery state (`received` for incoming messages).
    pub state: Delivery,
    /// In a group conversation: who sent an incoming message (the
    /// contact's name, or the first 16 hex digits of the fingerprint of a
    /// member who is not a contact). Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// In a group conversation: how many members hold an outgoing message,
    /// of how many it must reach ("delivered to 3 of 4"). Absent
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<DeliveredTo>,
}

/// "Delivered to `to` of `of` members" (group messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveredTo {
    /// Members who acknowledged the message.
    pub to: u32,
    /// Members it must reach: every other member we share a contact with.
    pub of: u32,
}

/// A group, as `groups.list` and `groups.create` return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Its name (address it as `#name`).
    pub name: String,
    /// Its id, 32 hex digits (`#` and at least 8 of them also address it).
    pub id: String,
    /// Whether we own it (only the owner invites and removes).
    pub owner: bool,
    /// Bumped on every membership change.
    pub epoch: u32,
    /// Every member, us included.
    pub members: Vec<GroupMember>,
    /// Contacts invited who have not answered yet.
    pub invited: Vec<String>,
    /// Our messages not yet held by every member.
    pub undelivered: u32,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The contact's name, if the member is our contact.
    pub contact: Option<String>,
    /// The member's fingerprint, 64 hex digits.
    pub fingerprint_hex: String,
    /// Us.
    pub me: bool,
    /// The group's owner.
    pub owner: bool,
    /// Whether we can read them and they us in the current epoch (their
    /// sender key arrived). A member who is not our contact never is:
    /// exchange identity files with them.
    pub readable: bool,
}

/// An invitation to a group, waiting for `groups.accept`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The group's name.
    pub group: String,
    /// The group's id, 32 hex digits.
    pub id: String,
    /// The contact who invites (the owner).
    pub from: String,
    /// How many members it has.
    pub members: u32,
}

impl HistoryEntry {
    /// Where this entry is, for `before` in `messages.history_page`.
    pub fn cursor(&self) -> HistoryCursor {
        HistoryCursor {
            direction: self.direction,
            id: self.id,
        }
    }

    /// The length in bytes of this entry serialized as JSON, as it goes
    /// over the socket (control characters take six bytes each there).
    pub fn json_len(&self) -> usize {
        /// Counts bytes instead of keeping them.
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut n = Count(0);
        // Serializing plain fields to a writer that cannot fail: no error.
        let _ = serde_json::to_writer(&mut n, self);
        n.0
    }
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

/// A message's place in a conversation: `before` in
/// `messages.history_page`. Ids are per contact and direction, so the
/// direction is part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HistoryCursor {
    /// Which way the message went.
    pub direction: Direction,
    /// Its id.
    pub id: u64,
}

/// One page of a conversation (`messages.history_page`): the newest
/// entries before the cursor that fit in
/// [`HISTORY_PAGE_BYTES`](crate::HISTORY_PAGE_BYTES) of JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Oldest first.
    pub entries: Vec<HistoryEntry>,
    /// Whether older entries remain: ask again with `before` set to the
    /// first entry's [`cursor`](HistoryEntry::cursor).
    pub more: bool,
}

/// What `messages.subscribe` streams, tagged by `type`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A contact's message arrived.
    MessageReceived {
        /// The contact's name.
        contact: String,
        /// The message id (per contact).
        id: u64,
        /// The message text.
        text: String,
        /// Arrival time, in milliseconds since the Unix epoch.
        time_ms: u64,
    },
    /// An outgoing message changed delivery state.
    DeliveryChanged {
        /// The contact's name.
        contact: String,
        /// The message id, as `messages.send` returned it.
        id: u64,
        /// The new state.
        state: Delivery,
    },
    /// A contact was added.
    ContactAdded {
        /// The contact's name.
        contact: String,
    },
    /// A contact was removed.
    ContactRemoved {
        /// The contact's name.
        contact: String,
    },
    /// A contact was marked verified.
    ContactVerified {
        /// The contact's name.
        contact: String,
    },
    /// The relay connection changed state.
    RelayStateChanged {
        /// The new state.
        state: LinkState,
        /// The last round received, if any.
        round: Option<u64>,
    },
    /// The keys and the history were dropped (`identity.lock`).
    Locked,
    /// The keys were loaded (`identity.unlock`, or a new identity).
    Unlocked,
    /// The subscriber fell behind and `missed` events were dropped; re-read
    /// `messages.history` to catch up.
    Lagged {
        /// Events dropped.
        missed: u64,
    },
    /// A group message arrived.
    GroupMessageReceived {
        /// The group's name.
        group: String,
        /// The group's id (32 hex digits; tells apart groups of one name).
        group_id: String,
        /// Who sent it (as in [`HistoryEntry::sender`]).
        sender: String,
        /// The sender's id for it.
        id: u64,
        /// The message text.
        text: String,
        /// Arrival time, in milliseconds since the Unix epoch.
        time_ms: u64,
    },
    /// One of our group messages changed state, or reached more members.
    GroupDeliveryChanged {
        /// The group's name.
        group: String,
        /// The group's id.
        group_id: String,
        /// The id `messages.send` returned.
        id: u64,
        /// `sent`, or `delivered` once every member holds it.
        state: Delivery,
        /// How many members hold it, of how many.
        delivered_to: DeliveredTo,
    },
    /// A contact invites us to a group (`groups.accept` or
    /// `groups.decline`).
    GroupInvited {
        /// The group's name.
        group: String,
        /// The group's id.
        id: String,
        /// The contact who invites.
        from: String,
        /// How many members it has.
        #[serde(default)]
        members: u32,
    },
    /// A group's membership changed (or we joined it).
    GroupMembersChanged {
        /// The group's name.
        group: String,
        /// The group's id.
        group_id: String,
        /// How many members it has now.
        members: u32,
    },
    /// A group's owner removed us.
    GroupRemoved {
        /// The group's name.
        group: String,
        /// The group's id.
        group_id: String,
    },
}

/// An event as `events.subscribe` (and `messages.subscribe`) sends it:
/// the [`Event`]'s own members plus where it stands in the daemon's event
/// stream. On the wire one flat object:
/// `{"stream":"…","seq":42,"type":"message_received",…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedEvent {
    /// This daemon run's stream id (random, new at every daemon start):
    /// sequence numbers are only meaningful within one stream.
    pub stream: String,
    /// The event's number in the stream: 1, 2, 3, … without gaps. A
    /// [`Event::Lagged`] is not in the sequence: its `seq` is the last one
    /// it stands for (the next event has `seq + 1`).
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Where the daemon's event stream stands (`events.position`, and the
/// `data` of `events.subscribe`'s "too old" and "unknown stream" errors).
/// A subscription with `since = s` replays events `s + 1 ..= last`; it can
/// if `oldest <= s + 1` and `s <= last`, in this `stream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPosition {
    /// This daemon run's stream id.
    pub stream: String,
    /// The oldest event the daemon still holds (`last + 1` if it holds
    /// none).
    pub oldest: u64,
    /// The newest event's number (0 before the first event).
    pub last: u64,
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
            Self::GroupMessageReceived {
                group, id, text, ..
            } => write!(
                f,
                "GroupMessageReceived {{ group: {group:?}, id: {id}, len: {} }}",
                text.len()
            ),
            Self::GroupDeliveryChanged {
                group,
                id,
                state,
                delivered_to,
                ..
            } => write!(
                f,
                "GroupDeliveryChanged {{ group: {group:?}, id: {id}, state: {state:?}, {} of {} }}",
                delivered_to.to, delivered_to.of
            ),
            Self::GroupInvited { group, from, .. } => {
                write!(f, "GroupInvited {{ group: {group:?}, from: {from:?} }}")
            }
            Self::GroupMembersChanged { group, members, .. } => {
                write!(
                    f,
                    "GroupMembersChanged {{ group: {group:?}, members: {members} }}"
                )
            }
            Self::GroupRemoved { group, .. } => write!(f, "GroupRemoved({group:?})"),
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
    fn sequenced_events_are_flat_and_plain_clients_can_read_them() {
        let e = SequencedEvent {
            stream: "s1".into(),
            seq: 7,
            event: Event::Locked,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"stream":"s1","seq":7,"type":"locked"}"#);
        assert_eq!(serde_json::from_str::<SequencedEvent>(&json).unwrap(), e);
        // `messages.subscribe`'s item is `Event`: the extra members are
        // ignored, for every shape of variant.
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), Event::Locked);
        let e = SequencedEvent {
            stream: "s1".into(),
            seq: 8,
            event: Event::Lagged { missed: 2 },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e.event);
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
    fn json_len_is_the_serialized_length() {
        for text in [
            "",
            "hi \"there\"",
            "\u{1b}[31m\u{1b}]0;x\u{7}",
            "é\u{202e}\n\t\\",
        ] {
            let e = HistoryEntry {
                id: u64::MAX,
                direction: Direction::Out,
                text: text.into(),
                time_ms: 1_795_608_175_040,
                state: Delivery::Delivered,
                sender: Some("carol".into()),
                delivered_to: Some(DeliveredTo { to: 2, of: 3 }),
            };
            assert_eq!(e.json_len(), serde_json::to_string(&e).unwrap().len());
            assert_eq!(
                e.cursor(),
                HistoryCursor {
                    direction: Direction::Out,
                    id: u64::MAX
                }
            );
        }
        let page = HistoryPage {
            entries: Vec::new(),
            more: true,
        };
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"entries":[],"more":true}"#
        );
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
            sender: None,
            delivered_to: None,
        };
        let g = Event::GroupMessageReceived {
            group: "friends".into(),
            group_id: "00".repeat(16),
            sender: "bob".into(),
            id: 1,
            text: "the secret plan".into(),
            time_ms: 0,
        };
        let printed = format!("{e:?} {h:?} {g:?}");
        assert!(!printed.contains("secret"), "{printed}");
    }
}
