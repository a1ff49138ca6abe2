//! One function per subcommand; `run` in main.rs only picks the function.
//! Those that need the daemon find its socket and connect first, then make
//! their calls and print the answers (text, or JSON with --json).

use std::path::{Path, PathBuf};

use anonchat_ipc::AnonchatClient as _;
use clap::CommandFactory as _;
use jsonrpsee::async_client::Client;
use jsonrpsee::core::client::ClientT as _;

use crate::args::Cli;
use crate::fail::Fail;
use crate::prompt::{ask_yes, read_passphrase};
use crate::{chat, daemonctl, show};

/// The global options, which every command gets.
pub(crate) struct Ctx {
    /// The daemon's socket given with --socket (or `$ANONCHAT_SOCKET`), if any.
    pub(crate) socket: Option<PathBuf>,
    /// Print JSON instead of text (--json).
    pub(crate) json: bool,
}

impl Ctx {
    /// The daemon's socket: the one given, else the default one.
    fn socket_path(&self) -> Result<PathBuf, Fail> {
        self.socket
            .clone()
            .or_else(anonchat_ipc::client::default_socket_path)
            .ok_or_else(|| {
                Fail::Usage("cannot find the daemon's socket; pass --socket PATH".into())
            })
    }

    /// Connects to the daemon, checking that it speaks our API version.
    pub(crate) async fn connect(&self) -> Result<Client, Fail> {
        let socket = self.socket_path()?;
        anonchat_ipc::client::connect_checked(&socket)
            .await
            .map_err(Fail::from)
    }
}

/// `completions SHELL`: prints the shell's completion script.
#[expect(
    clippy::unnecessary_wraps,
    reason = "the same signature as the other commands, so `run` is one match"
)]
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), Fail> {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "anonctl",
        &mut std::io::stdout(),
    );
    Ok(())
}

/// `daemon start`: starts anonchatd unless it already runs.
pub(crate) async fn daemon_start(
    ctx: &Ctx,
    home: Option<&Path>,
    proxy: Option<&str>,
) -> Result<(), Fail> {
    daemonctl::start(&ctx.socket_path()?, home, proxy, ctx.json).await
}

/// `daemon stop`: asks anonchatd to stop.
pub(crate) async fn daemon_stop(ctx: &Ctx) -> Result<(), Fail> {
    daemonctl::stop(&ctx.socket_path()?, ctx.json).await
}

/// `init`: creates the identity, with a passphrase unless `no_passphrase`.
pub(crate) async fn init(
    ctx: &Ctx,
    name: String,
    relay: String,
    passphrase: Passphrase<'_>,
    shard: Option<u32>,
    proxy: Option<String>,
) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    let passphrase = if passphrase.none {
        None
    } else {
        Some(read_passphrase(passphrase.file, passphrase.file.is_none())?)
    };
    // The proxy first: the link starts as soon as the identity exists.
    if let Some(p) = proxy {
        c.set_proxy(Some(p)).await?;
    }
    let info = c
        .identity_create(
            name,
            relay,
            passphrase.as_ref().map(|p| p.to_string()),
            shard,
        )
        .await?;
    show::identity(&info, ctx.json, true);
    Ok(())
}

/// Where `init` takes the passphrase from.
pub(crate) struct Passphrase<'a> {
    /// A file whose first line is the passphrase (else: ask).
    pub(crate) file: Option<&'a Path>,
    /// No passphrase at all.
    pub(crate) none: bool,
}

/// `unlock`: unlocks the keys with the passphrase.
pub(crate) async fn unlock(ctx: &Ctx, passphrase_file: Option<&Path>) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    let passphrase = read_passphrase(passphrase_file, false)?;
    c.identity_unlock(passphrase.to_string()).await?;
    show::done(ctx.json, "unlocked");
    Ok(())
}

/// `lock`: makes the daemon drop the keys and the history.
pub(crate) async fn lock(ctx: &Ctx) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    c.identity_lock().await?;
    show::done(ctx.json, "locked: keys and history dropped from memory");
    Ok(())
}

/// `id`: shows the identity.
pub(crate) async fn id_show(ctx: &Ctx) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    show::identity(&c.identity_show().await?, ctx.json, false);
    Ok(())
}

/// `id export [FILE|-]`: writes the public identity file (to stdout for
/// none or `-`).
pub(crate) async fn id_export(ctx: &Ctx, file: Option<&str>) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    let text = c.identity_export().await?;
    match file {
        None | Some("-") => print!("{text}"),
        Some(path) => {
            std::fs::write(path, &text)
                .map_err(|e| Fail::Other(format!("cannot write {path}: {e}")))?;
            if ctx.json {
                show::json(&serde_json::json!({"written": path}));
            } else {
                eprintln!(
                    "wrote your identity file to {path}; give it to your contact, and get theirs"
                );
            }
        }
    }
    Ok(())
}

/// `contact add FILE --name NAME`: imports a contact, then verifies it if
/// `yes` or if the user says the fingerprints match.
pub(crate) async fn contact_add(
    ctx: &Ctx,
    file: &Path,
    name: String,
    yes: bool,
) -> Result<(), Fail> {
    let json = ctx.json;
    let c = ctx.connect().await?;
    let text = std::fs::read_to_string(file)
        .map_err(|e| Fail::Usage(format!("cannot read {}: {e}", file.display())))?;
    let info = c.contacts_add(text, name.clone()).await?;
    let verify = yes
        || (!json
            && {
                let name = show::safe(&name);
                println!(
                    "Added {name} (nickname \"{}\").\nCompare this fingerprint with {name}, aloud or in person:\n\n    {}\n",
                    show::safe(&info.nickname),
                    show::safe(&info.fingerprint)
                );
                ask_yes("Do both of you see the same twelve groups?")
            });
    let info = if verify {
        c.contacts_verify(name, info.fingerprint.clone()).await?
    } else {
        if !json {
            println!(
                "Not verified yet; run `anonctl verify {}` once you have compared.",
                show::safe(&name)
            );
        }
        info
    };
    if json {
        show::json(&info);
    } else if info.verified {
        println!("{} is verified.", show::safe(&info.name));
    }
    Ok(())
}

/// `contact remove NAME`.
pub(crate) async fn contact_remove(ctx: &Ctx, name: &str) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    c.contacts_remove(name.to_owned()).await?;
    show::done(ctx.json, &format!("removed {}", show::safe(name)));
    Ok(())
}

/// `contacts`: lists the contacts.
pub(crate) async fn contacts(ctx: &Ctx) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    show::contacts(&c.contacts_list().await?, ctx.json);
    Ok(())
}

/// `verify NAME [FINGERPRINT]`: marks a contact verified; without a
/// fingerprint, shows the contact's and asks whether it matches.
pub(crate) async fn verify(
    ctx: &Ctx,
    name: String,
    fingerprint: Option<String>,
) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    let fingerprint = if let Some(f) = fingerprint {
        f
    } else {
        let list = c.contacts_list().await?;
        let contact = list.iter().find(|x| x.name == name).ok_or_else(|| {
            Fail::Usage(format!("no contact named {name:?}; see `anonctl contacts`"))
        })?;
        let shown = show::safe(&name);
        println!(
            "Fingerprint of {shown}:\n\n    {}\n",
            show::safe(&contact.fingerprint)
        );
        if !ask_yes(&format!(
            "Does {shown} read you exactly these twelve groups?"
        )) {
            return Err(Fail::Usage("not verified".into()));
        }
        contact.fingerprint.clone()
    };
    let info = c.contacts_verify(name, fingerprint).await?;
    if ctx.json {
        show::json(&info);
    } else {
        println!("{} is verified.", show::safe(&info.name));
    }
    Ok(())
}

/// `history NAME`: the conversation with a contact, all of it (or the last
/// `limit` messages), paged so that no reply nears the socket's line limit.
pub(crate) async fn history(ctx: &Ctx, name: &str, limit: Option<u32>) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    show::history(
        name,
        &anonchat_ipc::client::history(&c, name, limit).await?,
        ctx.json,
    );
    Ok(())
}

/// `watch`: prints the daemon's events (after `since` of `stream` first)
/// until it closes the stream.
pub(crate) async fn watch(
    ctx: &Ctx,
    since: Option<u64>,
    stream: Option<String>,
) -> Result<(), Fail> {
    chat::watch(&ctx.connect().await?, ctx.json, since, stream).await
}

/// `chat NAME`: chats with a contact until end of input.
pub(crate) async fn chat(ctx: &Ctx, name: &str) -> Result<(), Fail> {
    chat::chat(&ctx.connect().await?, name, ctx.json).await
}

/// `status`: the daemon's, identity's and relay's state.
pub(crate) async fn status(ctx: &Ctx) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    let status = c.status().await?;
    // An older daemon has no `daemon.traffic`: then the line is left out.
    let traffic = c.traffic().await.ok();
    show::status(&status, traffic.as_ref(), ctx.json);
    Ok(())
}

/// `rpc METHOD [PARAMS_JSON]`: calls a method with params given as a JSON
/// object (by name) or array (by position), and prints the result.
pub(crate) async fn rpc(ctx: &Ctx, method: &str, params: Option<&str>) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    let value: serde_json::Value = match params {
        None => c.request(method, jsonrpsee::rpc_params![]).await?,
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
                c.request(method, params).await?
            }
            serde_json::Value::Array(items) => {
                let mut params = jsonrpsee::core::params::ArrayParams::new();
                for v in items {
                    params.insert(v).map_err(|e| Fail::Usage(e.to_string()))?;
                }
                c.request(method, params).await?
            }
            _ => {
                return Err(Fail::Usage(
                    "PARAMS_JSON must be an object or an array".into(),
                ));
            }
        },
    };
    if ctx.json {
        println!("{value}");
    } else {
        // JSON escapes the C0 controls but not DEL, C1 or the format
        // characters: those are made visible line by line.
        for line in serde_json::to_string_pretty(&value)
            .unwrap_or_default()
            .lines()
        {
            println!("{}", show::safe(line));
        }
    }
    Ok(())
}
