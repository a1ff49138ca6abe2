//! `anonctl`: the command line of anonchat, a thin client of `anonchatd`.

#![forbid(unsafe_code)]
// Doc comments here are clap's help text, read by people in a terminal.
#![allow(clippy::doc_markdown)]

mod chat;
mod daemonctl;
mod demo;
mod fail;
mod show;

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anonchat_ipc::{AnonchatClient as _, Delivery, Event};
use clap::{CommandFactory as _, Parser, Subcommand};
use fail::Fail;
use jsonrpsee::async_client::Client;
use jsonrpsee::core::client::ClientT as _;
use zeroize::Zeroizing;

const EXIT_CODES: &str = "Exit codes: 0 ok, 1 the daemon refused or failed (message says why), \
2 usage error, 3 daemon unreachable, 4 daemon of another API version, 5 timed out (send --wait).";

/// anonchat's command line. Talks to your anonchatd over its local socket;
/// never holds a key. Add --json to any command for machine-readable output.
#[derive(Parser, Debug)]
#[command(name = "anonctl", version, about, after_help = EXIT_CODES)]
struct Cli {
    /// The daemon's socket (default: $XDG_RUNTIME_DIR/anonchatd.sock).
    #[arg(long, global = true, env = "ANONCHAT_SOCKET")]
    socket: Option<PathBuf>,
    /// Print JSON (one object per line for streams) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
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
    /// Send a message (the text from stdin if not given).
    Send {
        name: String,
        text: Option<String>,
        /// Wait until the contact's daemon acknowledged it.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait with --wait.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// The conversation with a contact (RAM only), with delivery marks.
    History {
        name: String,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Stream events (messages, delivery states, relay state).
    Watch,
    /// Chat interactively with a contact; Ctrl-D leaves.
    Chat { name: String },
    /// Daemon, identity and relay state, with warnings.
    Status,
    /// Call a JSON-RPC method directly: `anonctl rpc daemon.status`.
    Rpc {
        method: String,
        params: Option<String>,
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
enum IdCmd {
    /// Write your public identity file (to FILE, or - for stdout).
    Export { file: Option<String> },
}

#[derive(Subcommand, Debug)]
enum ContactCmd {
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
enum DaemonCmd {
    /// Start anonchatd in the background if it is not running.
    Start {
        #[arg(long, env = "ANONCHAT_HOME")]
        home: Option<PathBuf>,
        /// SOCKS5 proxy for the relay connection, e.g. socks5://127.0.0.1:9050 (Tor).
        #[arg(long)]
        proxy: Option<String>,
    },
    /// Ask the daemon to stop.
    Stop,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return Fail::Other(format!("cannot start: {e}")).report(json),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(json),
    }
}

fn socket_path(cli_socket: Option<&PathBuf>) -> Result<PathBuf, Fail> {
    cli_socket
        .cloned()
        .or_else(anonchat_ipc::client::default_socket_path)
        .ok_or_else(|| Fail::Usage("cannot find the daemon's socket; pass --socket PATH".into()))
}

async fn connect(socket: &Path) -> Result<Client, Fail> {
    anonchat_ipc::client::connect_checked(socket)
        .await
        .map_err(Fail::from)
}

fn read_passphrase(file: Option<&PathBuf>, confirm: bool) -> Result<Zeroizing<String>, Fail> {
    if let Some(f) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f)
                .map_err(|e| Fail::Usage(format!("cannot read {}: {e}", f.display())))?,
        );
        return Ok(Zeroizing::new(text.lines().next().unwrap_or("").to_owned()));
    }
    if !std::io::stdin().is_terminal() {
        return Err(Fail::Usage(
            "no terminal to ask for a passphrase: use --passphrase-file FILE (or, for init, --no-passphrase)".into(),
        ));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Passphrase: ").map_err(|e| Fail::Other(e.to_string()))?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Passphrase again: ")
                .map_err(|e| Fail::Other(e.to_string()))?,
        );
        if *again != *first {
            return Err(Fail::Usage(
                "the passphrases differ; nothing was created".into(),
            ));
        }
        if first.is_empty() {
            return Err(Fail::Usage(
                "an empty passphrase: use --no-passphrase if you mean it".into(),
            ));
        }
    }
    Ok(first)
}

fn ask_yes(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
}

#[allow(clippy::too_many_lines)]
async fn run(cli: Cli) -> Result<(), Fail> {
    let json = cli.json;
    match cli.cmd {
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "anonctl",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Cmd::Man { dir } => return show::man_pages(Cli::command(), &dir),
        Cmd::Demo { round_ms } => return demo::run(round_ms).await,
        _ => {}
    }
    let socket = socket_path(cli.socket.as_ref())?;
    match cli.cmd {
        Cmd::Daemon {
            action: DaemonCmd::Start { home, proxy },
        } => {
            return daemonctl::start(&socket, home.as_deref(), proxy.as_deref(), json).await;
        }
        Cmd::Daemon {
            action: DaemonCmd::Stop,
        } => return daemonctl::stop(&socket, json).await,
        _ => {}
    }
    let c = connect(&socket).await?;
    match cli.cmd {
        Cmd::Init {
            name,
            relay,
            passphrase_file,
            no_passphrase,
            shard,
        } => {
            let passphrase = if no_passphrase {
                None
            } else {
                Some(read_passphrase(
                    passphrase_file.as_ref(),
                    passphrase_file.is_none(),
                )?)
            };
            let info = c
                .identity_create(
                    name,
                    relay,
                    passphrase.as_ref().map(|p| p.to_string()),
                    shard,
                )
                .await?;
            show::identity(&info, json, true);
        }
        Cmd::Unlock { passphrase_file } => {
            let passphrase = read_passphrase(passphrase_file.as_ref(), false)?;
            c.identity_unlock(passphrase.to_string()).await?;
            show::done(json, "unlocked");
        }
        Cmd::Lock => {
            c.identity_lock().await?;
            show::done(json, "locked: keys and history dropped from memory");
        }
        Cmd::Id { action: None } => show::identity(&c.identity_show().await?, json, false),
        Cmd::Id {
            action: Some(IdCmd::Export { file }),
        } => {
            let text = c.identity_export().await?;
            match file.as_deref() {
                None | Some("-") => print!("{text}"),
                Some(path) => {
                    std::fs::write(path, &text)
                        .map_err(|e| Fail::Other(format!("cannot write {path}: {e}")))?;
                    if json {
                        show::json(&serde_json::json!({"written": path}));
                    } else {
                        eprintln!(
                            "wrote your identity file to {path}; give it to your contact, and get theirs"
                        );
                    }
                }
            }
        }
        Cmd::Contact {
            action: ContactCmd::Add { file, name, yes },
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Fail::Usage(format!("cannot read {}: {e}", file.display())))?;
            let info = c.contacts_add(text, name.clone()).await?;
            let verify = yes
                || (!json
                    && {
                        println!(
                            "Added {name} (nickname {:?}).\nCompare this fingerprint with {name}, aloud or in person:\n\n    {}\n",
                            info.nickname, info.fingerprint
                        );
                        ask_yes("Do both of you see the same twelve groups?")
                    });
            let info = if verify {
                c.contacts_verify(name, info.fingerprint.clone()).await?
            } else {
                if !json {
                    println!(
                        "Not verified yet; run `anonctl verify {name}` once you have compared."
                    );
                }
                info
            };
            if json {
                show::json(&info);
            } else if info.verified {
                println!("{} is verified.", info.name);
            }
        }
        Cmd::Contact {
            action: ContactCmd::Remove { name },
        } => {
            c.contacts_remove(name.clone()).await?;
            show::done(json, &format!("removed {name}"));
        }
        Cmd::Contacts => show::contacts(&c.contacts_list().await?, json),
        Cmd::Verify { name, fingerprint } => {
            let fingerprint = if let Some(f) = fingerprint {
                f
            } else {
                {
                    let list = c.contacts_list().await?;
                    let contact = list.iter().find(|x| x.name == name).ok_or_else(|| {
                        Fail::Usage(format!("no contact named {name:?}; see `anonctl contacts`"))
                    })?;
                    println!("Fingerprint of {name}:\n\n    {}\n", contact.fingerprint);
                    if !ask_yes(&format!(
                        "Does {name} read you exactly these twelve groups?"
                    )) {
                        return Err(Fail::Usage("not verified".into()));
                    }
                    contact.fingerprint.clone()
                }
            };
            let info = c.contacts_verify(name, fingerprint).await?;
            if json {
                show::json(&info);
            } else {
                println!("{} is verified.", info.name);
            }
        }
        Cmd::Send {
            name,
            text,
            wait,
            timeout,
        } => {
            let text = if let Some(t) = text {
                t
            } else {
                {
                    let mut t = String::new();
                    std::io::stdin().read_to_string(&mut t).map_err(|e| {
                        Fail::Usage(format!("cannot read the message from stdin: {e}"))
                    })?;
                    t.trim_end_matches('\n').to_owned()
                }
            };
            // Subscribe first, so the delivery event cannot be missed.
            let mut events = if wait { Some(c.events().await?) } else { None };
            let sent = c.messages_send(name.clone(), text).await?;
            let mut state = sent.state;
            if let Some(events) = events.as_mut() {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
                while state != Delivery::Delivered {
                    match tokio::time::timeout_at(deadline, events.next()).await {
                        Err(_) => {
                            return Err(Fail::Timeout(format!(
                                "message {} to {name} not delivered within {timeout} s (it stays queued while the daemon runs)",
                                sent.id
                            )));
                        }
                        Ok(None | Some(Err(_))) => {
                            return Err(Fail::Other("the daemon closed the event stream".into()));
                        }
                        Ok(Some(Ok(Event::DeliveryChanged {
                            contact,
                            id,
                            state: s,
                        }))) if contact == name && id == sent.id => state = s,
                        Ok(Some(Ok(_))) => {}
                    }
                }
            }
            if json {
                show::json(&serde_json::json!({"to": name, "id": sent.id, "state": state}));
            } else {
                println!("message {} to {name}: {}", sent.id, state.as_str());
            }
        }
        Cmd::History { name, limit } => {
            show::history(&name, &c.messages_history(name.clone(), limit).await?, json);
        }
        Cmd::Watch => chat::watch(&c, json).await?,
        Cmd::Chat { name } => chat::chat(&c, &name, json).await?,
        Cmd::Status => show::status(&c.status().await?, json),
        Cmd::Rpc { method, params } => {
            let value: serde_json::Value = match params.as_deref() {
                None => c.request(&method, jsonrpsee::rpc_params![]).await?,
                Some(p) => match serde_json::from_str::<serde_json::Value>(p)
                    .map_err(|e| Fail::Usage(format!("PARAMS_JSON is not JSON: {e}")))?
                {
                    serde_json::Value::Object(map) => {
                        let mut params = jsonrpsee::core::params::ObjectParams::new();
                        for (k, v) in map {
                            params
                                .insert(&k, v)
                                .map_err(|e| Fail::Usage(e.to_string()))?;
                        }
                        c.request(&method, params).await?
                    }
                    serde_json::Value::Array(items) => {
                        let mut params = jsonrpsee::core::params::ArrayParams::new();
                        for v in items {
                            params.insert(v).map_err(|e| Fail::Usage(e.to_string()))?;
                        }
                        c.request(&method, params).await?
                    }
                    _ => {
                        return Err(Fail::Usage(
                            "PARAMS_JSON must be an object or an array".into(),
                        ));
                    }
                },
            };
            println!(
                "{}",
                if json {
                    value.to_string()
                } else {
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                }
            );
        }
        Cmd::Completions { .. } | Cmd::Man { .. } | Cmd::Demo { .. } | Cmd::Daemon { .. } => {}
    }
    Ok(())
}
