//! `anonctl send`: one message, with back-pressure and delivery waits.

use std::io::Read as _;
use std::time::Duration;

use anonchat_ipc::{AnonchatClient as _, Delivery, Event};

use crate::commands::Ctx;
use crate::fail::Fail;
use crate::show;

/// The wait a `MessageRejected` error asks for (`data.retry_after_ms`),
/// if it is back-pressure.
fn retry_after(e: &jsonrpsee::types::ErrorObjectOwned) -> Option<Duration> {
    let data: serde_json::Value = serde_json::from_str(e.data()?.get()).ok()?;
    data.get("retry_after_ms")?
        .as_u64()
        .map(Duration::from_millis)
}

/// `send NAME [TEXT]`: sends a message (the text from stdin if not given);
/// with `wait`, waits up to `timeout` seconds for its delivery (and for
/// room in a full outbox).
pub(crate) async fn send(
    ctx: &Ctx,
    name: &str,
    text: Option<String>,
    wait: bool,
    timeout: u64,
) -> Result<(), Fail> {
    let c = ctx.connect().await?;
    let text = if let Some(t) = text {
        t
    } else {
        let mut t = String::new();
        std::io::stdin()
            .read_to_string(&mut t)
            .map_err(|e| Fail::Usage(format!("cannot read the message from stdin: {e}")))?;
        t.trim_end_matches('\n').to_owned()
    };
    // Subscribe first, so the delivery event cannot be missed.
    let mut events = if wait { Some(c.events().await?) } else { None };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let sent = loop {
        match c.messages_send(name.to_owned(), text.clone()).await {
            Ok(sent) => break sent,
            Err(e) => {
                // With --wait, a full outbox is back-pressure: wait as long
                // as the daemon says, then try again, until the deadline.
                let pause = match &e {
                    jsonrpsee::core::ClientError::Call(obj) if wait => retry_after(obj),
                    _ => None,
                }
                .filter(|d| tokio::time::Instant::now() + *d < deadline);
                match pause {
                    Some(d) => tokio::time::sleep(d).await,
                    None => return Err(e.into()),
                }
            }
        }
    };
    let mut state = sent.state;
    if let Some(events) = events.as_mut() {
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
                Ok(Some(Ok(Event::GroupDeliveryChanged {
                    group,
                    id,
                    state: s,
                    ..
                }))) if name.strip_prefix('#') == Some(group.as_str()) && id == sent.id => {
                    state = s;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
    if ctx.json {
        show::json(&serde_json::json!({"to": name, "id": sent.id, "state": state}));
    } else {
        println!(
            "message {} to {}: {}",
            sent.id,
            show::safe(name),
            state.as_str()
        );
    }
    Ok(())
}
