//! The demo's second part: carol joins, alice creates a group with bob and
//! carol, and the three talk in it. One cell per fragment reaches both
//! others; the relay sees the same random-looking cells as before.

use std::path::Path;
use std::time::{Duration, Instant};

use anonchat_ipc::{AnonchatClient as _, Delivery, Direction};
use jsonrpsee::async_client::Client;

use crate::demo::{Demo, start_daemon, wait_socket};
use crate::fail::Fail;
use crate::show;

const GROUP: &str = "#friends";

/// Waits until `check` holds (polling every 50 ms), or fails after 90 s.
async fn until<F, Fut>(what: &str, mut check: F) -> Result<(), Fail>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Fail>>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    while !check().await? {
        if Instant::now() > deadline {
            return Err(Fail::Timeout(format!("demo: {what} within 90 s")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Both ways: each imports the other's identity file and verifies it.
async fn introduce(x: &Client, x_name: &str, y: &Client, y_name: &str) -> Result<(), Fail> {
    let x_file = x.identity_export().await?;
    let y_file = y.identity_export().await?;
    let y_seen = x.contacts_add(y_file, y_name.into()).await?;
    let x_seen = y.contacts_add(x_file, x_name.into()).await?;
    x.contacts_verify(y_name.into(), y_seen.fingerprint).await?;
    y.contacts_verify(x_name.into(), x_seen.fingerprint).await?;
    Ok(())
}

/// Sends `text` to the group from `from` and waits until every other
/// member has it and `from` sees it delivered to all.
async fn say(from: (&Client, &str), others: &[&Client], text: &str) -> Result<(), Fail> {
    let (client, name) = from;
    let sent = client.messages_send(GROUP.into(), text.into()).await?;
    until("a group message delivered to everyone", || async {
        for o in others {
            let got = o.messages_history(GROUP.into(), None).await?;
            if !got.iter().any(|e| {
                e.direction == Direction::In && e.sender.as_deref() == Some(name) && e.id == sent.id
            }) {
                return Ok(false);
            }
        }
        let mine = client.messages_history(GROUP.into(), None).await?;
        Ok(mine.iter().any(|e| {
            e.direction == Direction::Out && e.id == sent.id && e.state == Delivery::Delivered
        }))
    })
    .await?;
    let entry = client
        .messages_history(GROUP.into(), None)
        .await?
        .into_iter()
        .find(|e| e.direction == Direction::Out && e.id == sent.id);
    if let Some(e) = entry {
        println!(
            "[{}] {name:<5} → {GROUP}: {} {} (to {} of {})",
            show::clock(e.time_ms),
            e.text,
            e.state.mark(),
            e.delivered_to.map_or(0, |d| d.to),
            e.delivered_to.map_or(0, |d| d.of)
        );
    }
    Ok(())
}

/// Carol joins; alice, bob and carol talk in `#friends`.
pub(crate) async fn run(
    demo: &mut Demo,
    daemon_bin: &Path,
    address: &str,
    alice: &Client,
    bob: &Client,
) -> Result<(), Fail> {
    let dir = demo.dir.path().to_path_buf();
    let (carol_proc, carol_sock) = start_daemon(daemon_bin, &dir, "carol")?;
    demo.daemons.push(carol_proc);
    let carol = wait_socket(&carol_sock).await?;
    let c = carol
        .identity_create(
            "carol".into(),
            address.into(),
            Some("carol's demo passphrase".into()),
            None,
        )
        .await?;
    println!("\ncarol      fingerprint {}", c.fingerprint);
    introduce(alice, "alice", &carol, "carol").await?;
    introduce(bob, "bob", &carol, "carol").await?;
    println!("carol exchanged identity files with alice and bob; all verified");
    alice
        .groups_create("friends".into(), Some(vec!["bob".into(), "carol".into()]))
        .await?;
    println!("alice created {GROUP} and invited bob and carol");
    for (who, client) in [("bob", bob), ("carol", &carol)] {
        until("the invitation to arrive", || async {
            Ok(!client.groups_invitations().await?.is_empty())
        })
        .await?;
        client.groups_accept("friends".into()).await?;
        println!("{who} accepted");
    }
    for client in [alice, bob, &carol] {
        until("every member to hold every member's keys", || async {
            let members = client.groups_members(GROUP.into()).await?;
            Ok(members.len() == 3 && members.iter().all(|m| m.readable))
        })
        .await?;
    }
    println!("{GROUP}: 3 members, keys exchanged over the pairwise sessions\n");
    say(
        (alice, "alice"),
        &[bob, &carol],
        "Welcome to the group, you two!",
    )
    .await?;
    say(
        (&carol, "carol"),
        &[alice, bob],
        "Thanks! One cell per fragment, however many of us.",
    )
    .await?;
    say(
        (bob, "bob"),
        &[alice, &carol],
        "And the relay cannot even tell it is a group.",
    )
    .await?;
    let _ = carol.shutdown().await;
    Ok(())
}
