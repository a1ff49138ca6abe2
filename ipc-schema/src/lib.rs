#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod types;

#[cfg(feature = "client")]
pub mod client;

pub use error::{ErrorCode, INVALID_REQUEST, PARSE_ERROR, rpc_error};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::proc_macros::rpc;
use jsonrpsee::types::ErrorObjectOwned;
pub use types::*;

/// The API version. A front-end refuses a daemon of another version (and
/// says so), rather than guessing.
pub const API_VERSION: u32 = 1;

/// Events the daemon keeps in RAM for `events.subscribe`'s replay (the
/// newest ones; also bounded in bytes by the daemon).
pub const REPLAY_EVENTS: usize = 1000;

/// Batches `daemon.traffic` averages over.
pub const TRAFFIC_BATCHES: usize = 20;

/// Longest JSON-RPC line either side accepts, in bytes.
pub const MAX_LINE: usize = 256 * 1024;

/// The most JSON a `messages.history` or `messages.history_page` reply
/// spends on its entries, in bytes: well under [`MAX_LINE`], and room for
/// the largest message (16 KiB of control characters, six bytes each in
/// JSON). A page holds at least one entry.
pub const HISTORY_PAGE_BYTES: usize = MAX_LINE / 2;

/// The whole API. Method names are namespaced with a dot; parameters are
/// passed by name (a JSON object).
#[rpc(server, client)]
pub trait Anonchat {
    /// Daemon, identity and relay state; the API version.
    #[method(name = "daemon.status")]
    async fn status(&self) -> Result<Status, ErrorObjectOwned>;

    /// The relay link's download and upload now (see [`Traffic`]).
    #[method(name = "daemon.traffic")]
    async fn traffic(&self) -> Result<Traffic, ErrorObjectOwned>;

    /// Stops the daemon (after answering). Undelivered messages are kept
    /// (sealed) and go out after the next start.
    #[method(name = "daemon.shutdown")]
    async fn shutdown(&self) -> Result<(), ErrorObjectOwned>;

    /// The daemon's persisted configuration.
    #[method(name = "daemon.config")]
    async fn config(&self) -> Result<DaemonConfig, ErrorObjectOwned>;

    /// Sets the SOCKS5 proxy for the relay link (`socks5://HOST:PORT`, e.g.
    /// Tor's `socks5://127.0.0.1:9050`), or removes it with `null`. Saved
    /// at once and in force after restarts; while set, the daemon never
    /// connects to the relay directly. The link redials.
    #[method(name = "daemon.set_proxy", param_kind = map)]
    async fn set_proxy(&self, proxy: Option<String>) -> Result<DaemonConfig, ErrorObjectOwned>;

    /// Creates the identity. Without a passphrase the keys are stored
    /// unprotected (and `daemon.status` says so).
    #[method(name = "identity.create", param_kind = map)]
    async fn identity_create(
        &self,
        name: String,
        relay: String,
        passphrase: Option<String>,
        shard: Option<u32>,
    ) -> Result<IdentityInfo, ErrorObjectOwned>;

    /// Our identity (public data; works while locked).
    #[method(name = "identity.show")]
    async fn identity_show(&self) -> Result<IdentityInfo, ErrorObjectOwned>;

    /// The public identity file (armored text) to give to contacts.
    #[method(name = "identity.export")]
    async fn identity_export(&self) -> Result<String, ErrorObjectOwned>;

    /// Loads the keys with the passphrase and connects to the relay.
    #[method(name = "identity.unlock", param_kind = map)]
    async fn identity_unlock(&self, passphrase: String) -> Result<(), ErrorObjectOwned>;

    /// Forgets every key and the history until the next unlock.
    #[method(name = "identity.lock")]
    async fn identity_lock(&self) -> Result<(), ErrorObjectOwned>;

    /// Imports a contact's identity file (checked strictly) under `name`.
    #[method(name = "contacts.add", param_kind = map)]
    async fn contacts_add(
        &self,
        identity_file_text: String,
        name: String,
    ) -> Result<ContactInfo, ErrorObjectOwned>;

    /// Every contact.
    #[method(name = "contacts.list")]
    async fn contacts_list(&self) -> Result<Vec<ContactInfo>, ErrorObjectOwned>;

    /// Forgets a contact.
    #[method(name = "contacts.remove", param_kind = map)]
    async fn contacts_remove(&self, name: String) -> Result<(), ErrorObjectOwned>;

    /// Marks a contact verified if `fingerprint` (digit groups or hex)
    /// matches the one in its identity file.
    #[method(name = "contacts.verify", param_kind = map)]
    async fn contacts_verify(
        &self,
        name: String,
        fingerprint: String,
    ) -> Result<ContactInfo, ErrorObjectOwned>;

    /// Queues a message to a contact; progress arrives as events.
    #[method(name = "messages.send", param_kind = map)]
    async fn messages_send(
        &self,
        to: String,
        text: String,
    ) -> Result<SentMessage, ErrorObjectOwned>;

    /// The conversation with a contact, oldest first (RAM only): the last
    /// `limit` entries if given, and never more than fit in
    /// [`HISTORY_PAGE_BYTES`] of JSON (the newest ones). Front-ends page
    /// with `messages.history_page` to get everything.
    #[method(name = "messages.history", param_kind = map)]
    async fn messages_history(
        &self,
        with: String,
        limit: Option<u32>,
    ) -> Result<Vec<HistoryEntry>, ErrorObjectOwned>;

    /// One page of the conversation, going back in time: the newest
    /// entries older than `before` (or the newest of all without it), at
    /// most `limit` of them and at most [`HISTORY_PAGE_BYTES`] of JSON
    /// (always at least one if any remain), oldest first; `more` says
    /// whether older ones remain. `client::history` pages through it.
    #[method(name = "messages.history_page", param_kind = map)]
    async fn messages_history_page(
        &self,
        with: String,
        before: Option<HistoryCursor>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ErrorObjectOwned>;

    /// Creates a group owned by us, and invites the contacts `with` (each
    /// joins when they accept).
    #[method(name = "groups.create", param_kind = map)]
    async fn groups_create(
        &self,
        name: String,
        with: Option<Vec<String>>,
    ) -> Result<GroupInfo, ErrorObjectOwned>;

    /// Invites a contact to a group we own.
    #[method(name = "groups.invite", param_kind = map)]
    async fn groups_invite(&self, group: String, contact: String) -> Result<(), ErrorObjectOwned>;

    /// Accepts an invitation (by the group's name or id).
    #[method(name = "groups.accept", param_kind = map)]
    async fn groups_accept(&self, group: String) -> Result<(), ErrorObjectOwned>;

    /// Declines an invitation.
    #[method(name = "groups.decline", param_kind = map)]
    async fn groups_decline(&self, group: String) -> Result<(), ErrorObjectOwned>;

    /// Invitations waiting for an answer.
    #[method(name = "groups.invitations")]
    async fn groups_invitations(&self) -> Result<Vec<Invitation>, ErrorObjectOwned>;

    /// Leaves a group: its members are told, its keys and history here
    /// are dropped.
    #[method(name = "groups.leave", param_kind = map)]
    async fn groups_leave(&self, group: String) -> Result<(), ErrorObjectOwned>;

    /// Removes a member (a contact's name, or a fingerprint's hex) from a
    /// group we own: a new epoch whose keys they never get.
    #[method(name = "groups.remove", param_kind = map)]
    async fn groups_remove(&self, group: String, member: String) -> Result<(), ErrorObjectOwned>;

    /// Every group we are in.
    #[method(name = "groups.list")]
    async fn groups_list(&self) -> Result<Vec<GroupInfo>, ErrorObjectOwned>;

    /// A group's members.
    #[method(name = "groups.members", param_kind = map)]
    async fn groups_members(&self, group: String) -> Result<Vec<GroupMember>, ErrorObjectOwned>;

    /// Events: messages received, delivery states, contacts, relay state;
    /// from now on, without replay. On the wire each one carries its
    /// `stream` and `seq` too (a [`SequencedEvent`]); this client reads
    /// the [`Event`] only. Scripts that must not miss anything use
    /// `events.subscribe`.
    #[subscription(name = "messages.subscribe" => "messages.event", unsubscribe = "messages.unsubscribe", item = Event)]
    async fn events(&self) -> SubscriptionResult;

    /// Where the event stream stands: this daemon run's stream id and the
    /// range of events it still holds (the last [`REPLAY_EVENTS`]).
    #[method(name = "events.position")]
    async fn events_position(&self) -> Result<EventPosition, ErrorObjectOwned>;

    /// Events with their sequence numbers. With `since` (the `seq` of the
    /// last event the client saw) and `stream` (that event's stream), the
    /// daemon first replays every event after `since`, then goes on live:
    /// nothing is missed or repeated. It refuses, with
    /// [`ErrorCode::EventsTooOld`], a `since` whose followers it no longer
    /// holds, and, with [`ErrorCode::UnknownEventStream`], a `stream` of
    /// another daemon run; both errors carry the [`EventPosition`] as
    /// `data`. Without `since`: from now on.
    #[subscription(name = "events.subscribe" => "events.event", unsubscribe = "events.unsubscribe", item = SequencedEvent, param_kind = map)]
    async fn events_since(&self, since: Option<u64>, stream: Option<String>) -> SubscriptionResult;
}

/// Whether `c` must not reach a terminal or a notification as it is
/// (front-ends show such text escaped or blanked): the control
/// characters (C0, DEL, C1), which can move the cursor, rewrite lines, set
/// the window title or start a new line, and Unicode's invisible format
/// characters (bidirectional embeddings, overrides and isolates, zero-width
/// and tag characters, line and paragraph separators…), which can reorder
/// or hide what is shown. Kept: ZWNJ and ZWJ (U+200C, U+200D), which
/// scripts and emoji need to join letters.
#[must_use]
pub fn is_hidden(c: char) -> bool {
    matches!(c,
        '\0'..='\x1f' | '\x7f'..='\u{9f}'
        | '\u{ad}'
        | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
        | '\u{890}'..='\u{891}' | '\u{8e2}' | '\u{180e}'
        | '\u{200b}' | '\u{200e}' | '\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        | '\u{110bd}' | '\u{110cd}' | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0001}' | '\u{e0020}'..='\u{e007f}'
    )
}
