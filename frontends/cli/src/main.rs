//! `anonctl`: the command line of anonchat, a thin client of `anonchatd`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// Doc comments in args.rs are clap's help text, read by people in a terminal.
#![allow(clippy::doc_markdown)]

mod args;
mod chat;
mod commands;
mod configure;
mod daemonctl;
mod demo;
mod demo_group;
mod fail;
mod groups;
mod prompt;
mod sending;
mod show;

use std::process::ExitCode;

use args::{Cli, Cmd, ConfigCmd, ContactCmd, DaemonCmd, IdCmd};
use clap::{CommandFactory as _, Parser as _};
use commands::Ctx;
use fail::Fail;

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

/// Runs the command: one call per subcommand, into `commands` for most.
async fn run(cli: Cli) -> Result<(), Fail> {
    let ctx = Ctx {
        socket: cli.socket,
        json: cli.json,
    };
    match cli.cmd {
        Cmd::Completions { shell } => commands::completions(shell),
        Cmd::Man { dir } => show::man_pages(Cli::command(), &dir),
        Cmd::Demo { round_ms } => demo::run(round_ms).await,
        Cmd::Daemon {
            action: DaemonCmd::Start { home, proxy },
        } => commands::daemon_start(&ctx, home.as_deref(), proxy.as_deref()).await,
        Cmd::Daemon {
            action: DaemonCmd::Stop,
        } => commands::daemon_stop(&ctx).await,
        Cmd::Init {
            name,
            relay,
            passphrase_file,
            no_passphrase,
            shard,
            proxy,
        } => {
            let passphrase = commands::Passphrase {
                file: passphrase_file.as_deref(),
                none: no_passphrase,
            };
            commands::init(&ctx, name, relay, passphrase, shard, proxy).await
        }
        Cmd::Config { action: None } => configure::show(&ctx).await,
        Cmd::Config {
            action: Some(ConfigCmd::Proxy { url }),
        } => configure::proxy(&ctx, &url).await,
        Cmd::Unlock { passphrase_file } => commands::unlock(&ctx, passphrase_file.as_deref()).await,
        Cmd::Lock => commands::lock(&ctx).await,
        Cmd::Id { action: None } => commands::id_show(&ctx).await,
        Cmd::Id {
            action: Some(IdCmd::Export { file }),
        } => commands::id_export(&ctx, file.as_deref()).await,
        Cmd::Contact {
            action: ContactCmd::Add { file, name, yes },
        } => commands::contact_add(&ctx, &file, name, yes).await,
        Cmd::Contact {
            action: ContactCmd::Remove { name },
        } => commands::contact_remove(&ctx, &name).await,
        Cmd::Contacts => commands::contacts(&ctx).await,
        Cmd::Verify { name, fingerprint } => commands::verify(&ctx, name, fingerprint).await,
        Cmd::Group { action } => groups::run(&ctx, action).await,
        Cmd::Send {
            name,
            text,
            wait,
            timeout,
        } => sending::send(&ctx, &name, text, wait, timeout).await,
        Cmd::History { name, limit } => commands::history(&ctx, &name, limit).await,
        Cmd::Watch { since, stream } => commands::watch(&ctx, since, stream).await,
        Cmd::Chat { name } => commands::chat(&ctx, &name).await,
        Cmd::Status => commands::status(&ctx).await,
        Cmd::Rpc { method, params } => commands::rpc(&ctx, &method, params.as_deref()).await,
    }
}
