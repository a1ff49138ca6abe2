//! `anonctl group …`: groups over the daemon's `groups.*` methods.

use std::fmt::Write as _;

use anonchat_ipc::{AnonchatClient as _, GroupInfo, GroupMember};

use crate::args::GroupCmd;
use crate::commands::Ctx;
use crate::fail::Fail;
use crate::show::{self, safe};

fn member_line(m: &GroupMember) -> String {
    let who = match (&m.contact, m.me) {
        (_, true) => "you".to_owned(),
        (Some(c), false) => safe(c).into_owned(),
        (None, false) => format!("{} (not a contact)", &m.fingerprint_hex[..16]),
    };
    let mut flags = Vec::new();
    if m.owner {
        flags.push("owner");
    }
    if !m.me && !m.readable {
        flags.push(if m.contact.is_some() {
            "keys not yet exchanged"
        } else {
            "cannot read each other: exchange identity files"
        });
    }
    if flags.is_empty() {
        who
    } else {
        format!("{who} ({})", flags.join(", "))
    }
}

fn group_line(g: &GroupInfo) -> String {
    let names: Vec<String> = g.members.iter().map(member_line).collect();
    let mut line = format!(
        "#{} ({} members{}): {}",
        safe(&g.name),
        g.members.len(),
        if g.owner { ", yours" } else { "" },
        names.join(", ")
    );
    if !g.invited.is_empty() {
        let invited: Vec<String> = g.invited.iter().map(|n| safe(n).into_owned()).collect();
        let _ = write!(line, "; invited: {}", invited.join(", "));
    }
    if g.undelivered > 0 {
        let _ = write!(
            line,
            "; {} of your messages not yet with everyone",
            g.undelivered
        );
    }
    line
}

/// Runs one `group` subcommand.
pub(crate) async fn run(ctx: &Ctx, action: GroupCmd) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    let done = |what: String| {
        if ctx.json {
            show::json(&serde_json::json!({"ok": true}));
        } else {
            println!("{what}");
        }
    };
    match action {
        GroupCmd::Create { name, with } => {
            let g = c.groups_create(name, Some(with)).await?;
            if ctx.json {
                show::json(&g);
            } else {
                println!("{}", group_line(&g));
                if !g.invited.is_empty() {
                    println!(
                        "They join when they accept (anonctl group accept '#{}').",
                        safe(&g.name)
                    );
                }
            }
        }
        GroupCmd::Invite { group, contact } => {
            c.groups_invite(group.clone(), contact.clone()).await?;
            done(format!("invited {} to {}", safe(&contact), safe(&group)));
        }
        GroupCmd::Accept { group } => {
            c.groups_accept(group.clone()).await?;
            done(format!(
                "accepted; you are in {} once its owner confirms (a few rounds)",
                safe(&group)
            ));
        }
        GroupCmd::Decline { group } => {
            c.groups_decline(group.clone()).await?;
            done(format!("declined {}", safe(&group)));
        }
        GroupCmd::Invitations => {
            let list = c.groups_invitations().await?;
            if ctx.json {
                show::json(&list);
            } else if list.is_empty() {
                println!("No invitations.");
            } else {
                for i in list {
                    println!(
                        "#{} ({} members) from {}: anonctl group accept '#{}'",
                        safe(&i.group),
                        i.members,
                        safe(&i.from),
                        safe(&i.group)
                    );
                }
            }
        }
        GroupCmd::Leave { group } => {
            c.groups_leave(group.clone()).await?;
            done(format!("left {}", safe(&group)));
        }
        GroupCmd::Remove { group, member } => {
            c.groups_remove(group.clone(), member.clone()).await?;
            done(format!("removed {} from {}", safe(&member), safe(&group)));
        }
        GroupCmd::List => {
            let list = c.groups_list().await?;
            if ctx.json {
                show::json(&list);
            } else if list.is_empty() {
                println!("No groups. Create one: anonctl group create NAME --with alice,bob");
            } else {
                for g in list {
                    println!("{}", group_line(&g));
                }
            }
        }
        GroupCmd::Members { group } => {
            let members = c.groups_members(group).await?;
            if ctx.json {
                show::json(&members);
            } else {
                for m in members {
                    println!("{}", member_line(&m));
                }
            }
        }
    }
    Ok(())
}
