//! The command line's grammar: the options and subcommands, parsed by clap.
//! Their doc comments are the help text of `anonctl --help` and the man pages.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The exit codes, shown at the end of `anonctl --help`.
const EXIT_CODES: &str = "Exit codes: 0 ok, 1 the daemon refused or failed (message says why), \
2 usage error, 3 daemon unreachable, 4 daemon of another API version, 5 timed out (send --wait).";

/// anonchat's command line. Talks to your anonchatd over its local socket;
/// never holds a key. Add --json to any command for machine-readable output.
#[derive(Parser, Debug)]
#[command(name = "anonctl", version, about, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    /// The daemon's socket (default: $XDG_RUNTIME_DIR/anonchatd.sock).
    #[arg(long, global = true, env = "ANONCHAT_SOCKET")]
    pub(crate) socket: Option<PathBuf>,
    /// Print JSON (one object per line for streams) instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
    /// Create your identity (the seed's "generate connection data").
    Init {
        /// Your nickname, as contacts will see it.
        #[arg(long)]
        name: String,
        /// The relay's address line: anonchat://HOST:PORT/#KEY
        #[arg(long)]
        relay: String,
        /// Read the passphrase from this file (first line).
        #[arg(long, conflicts_with = "no_passphrase")]
        passphrase_file: Option<PathBuf>,
        /// Store the keys without a passphrase (anyone who reads your home can take them).
        #[arg(long)]
        no_passphrase: bool,
        /// The relay shard to listen on (your contacts must use the same relay and shard).
        #[arg(long)]
        shard: Option<u32>,
        /// Reach the relay only through this SOCKS5 proxy, e.g. socks5://127.0.0.1:9050
        /// (Tor). Saved in the daemon's configuration: in force after restarts.
        #[arg(long)]
        proxy: Option<String>,
    },
    /// Unlock the keys (asks for the passphrase).
    Unlock {
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Forget the keys and the history until the next unlock.
    Lock,
    /// Show your identity; `id export [FILE|-]` writes your identity file.
    Id {
        #[command(subcommand)]
        action: Option<IdCmd>,
    },
    /// Add or remove a contact.
    Contact {
        #[command(subcommand)]
        action: ContactCmd,
    },
    /// List your contacts.
    Contacts,
    /// Mark a contact verified after comparing fingerprints (asks if none is given).
    Verify {
        name: String,
        fingerprint: Option<String>,
    },
    /// Groups: create, invite, accept, leave, remove, list, members.
    /// Address a group as #NAME wherever a contact's name goes (send,
    /// history, chat): `anonctl send '#friends' hello`.
    Group {
        #[command(subcommand)]
        action: GroupCmd,
    },
    /// Send a message to a contact, or to a group as #NAME (the text from
    /// stdin if not given).
    Send {
        name: String,
        text: Option<String>,
        /// Wait until the contact's daemon (every member, for a group) acknowledged it (and, if 64
        /// messages are already waiting, until there is room).
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with --wait.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// The conversation with a contact (RAM only), with delivery marks; all
    /// of it, read page by page. Control and invisible characters in the
    /// text are shown escaped (\x1b, \u{202e}); --json gives it exact.
    History {
        name: String,
        /// Only the last N messages.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Stream events (messages, delivery states, relay state). With --json
    /// each event carries its `stream` and `seq`: after a restart of the
    /// script, `--stream S --since N` first replays what followed event N
    /// (the daemon keeps the last 1000 in RAM), or says it is too old or
    /// from before a daemon restart (exit code 1).
    Watch {
        /// The `seq` of the last event seen: replay what followed it.
        #[arg(long, requires = "stream")]
        since: Option<u64>,
        /// The `stream` of that event (the daemon run's id).
        #[arg(long, requires = "since")]
        stream: Option<String>,
    },
    /// Chat interactively with a contact; Ctrl-D leaves.
    Chat { name: String },
    /// Daemon, identity and relay state, with warnings.
    Status,
    /// Call a JSON-RPC method directly: `anonctl rpc daemon.status`.
    Rpc {
        method: String,
        params: Option<String>,
    },
    /// Show the daemon's configuration; `config proxy URL|none` sets the proxy.
    Config {
        #[command(subcommand)]
        action: Option<ConfigCmd>,
    },
    /// Start or stop the daemon.
    Daemon {
        #[command(subcommand)]
        action: DaemonCmd,
    },
    /// Print shell completions: `anonctl completions bash > /etc/bash_completion.d/anonctl`.
    Completions { shell: clap_complete::Shell },
    /// Write man pages (anonctl.1 and one per command) to DIR.
    Man { dir: PathBuf },
    /// A whole conversation on this machine: a relay, two daemons, two friends.
    Demo {
        /// Round length of the demo relay, in milliseconds.
        #[arg(long, default_value_t = 200)]
        round_ms: u64,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum GroupCmd {
    /// Create a group you own and invite contacts (each joins on accepting).
    Create {
        name: String,
        /// Contacts to invite, comma separated: --with alice,bob
        #[arg(long, value_delimiter = ',')]
        with: Vec<String>,
    },
    /// Invite a contact to a group you own.
    Invite { group: String, contact: String },
    /// Accept an invitation (see `group invitations`).
    Accept { group: String },
    /// Decline an invitation.
    Decline { group: String },
    /// Invitations waiting for your answer.
    Invitations,
    /// Leave a group (its members are told; its history here is dropped).
    Leave { group: String },
    /// Remove a member from a group you own (a contact's name, or 16+ hex
    /// digits of a fingerprint): they read nothing sent afterwards.
    Remove { group: String, member: String },
    /// Your groups.
    List,
    /// A group's members, and whether you can read each of them.
    Members { group: String },
}

#[derive(Subcommand, Debug)]
pub(crate) enum IdCmd {
    /// Write your public identity file (to FILE, or - for stdout).
    Export { file: Option<String> },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ContactCmd {
    /// Import a friend's identity file under a name of your choosing.
    Add {
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// Mark verified without asking (only if you compared fingerprints already).
        #[arg(long)]
        yes: bool,
    },
    /// Remove a contact.
    Remove { name: String },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ConfigCmd {
    /// Reach the relay only through this SOCKS5 proxy (socks5://HOST:PORT,
    /// Tor: socks5://127.0.0.1:9050), or `none` to connect directly. Saved;
    /// while set, the daemon never connects to the relay directly.
    Proxy { url: String },
}

#[derive(Subcommand, Debug)]
pub(crate) enum DaemonCmd {
    /// Start anonchatd in the background if it is not running.
    Start {
        #[arg(long, env = "ANONCHAT_HOME")]
        home: Option<PathBuf>,
        /// SOCKS5 proxy for the relay connection, e.g. socks5://127.0.0.1:9050 (Tor);
        /// the daemon saves it (see `anonctl config`).
        #[arg(long)]
        proxy: Option<String>,
    },
    /// Ask the daemon to stop.
    Stop,
}
