//! Tests of the local socket's bounds.

use super::*;

/// An over-long request gets one `INVALID_REQUEST` line, then the
/// connection closes; a client that closes ends the connection.
#[tokio::test]
async fn an_over_long_request_is_answered_then_closed() {
    use tokio::io::AsyncReadExt as _;
    let module = Arc::new(RpcModule::new(()));
    let (mut client, daemon_end) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(connection(daemon_end, Arc::clone(&module)));
    let mut long = vec![b'x'; MAX_LINE + 1];
    long.push(b'\n');
    // The server stops reading after the bound: the write may fail.
    let _ = client.write_all(&long).await;
    let mut reply = String::new();
    client.read_to_string(&mut reply).await.unwrap();
    let reply: Value = serde_json::from_str(reply.trim_end()).unwrap();
    assert_eq!(reply["error"]["code"], INVALID_REQUEST);
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("request longer than"), "{message}");
    task.await.unwrap();

    let (client, daemon_end) = tokio::io::duplex(1024);
    let task = tokio::spawn(connection(daemon_end, module));
    drop(client);
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

/// A connection holds at most `MAX_SUBSCRIPTIONS` live subscriptions:
/// the next subscribe gets an error answer with its id (other calls
/// still work), and one more fits after an unsubscribe. Checked
/// against no bound: the extra subscribe then succeeds.
#[tokio::test]
async fn subscriptions_per_connection_are_bounded() {
    use tokio::io::AsyncBufReadExt as _;
    let mut module = RpcModule::new(());
    module
        .register_subscription("sub", "note", "unsub", |_, pending, _, _| async move {
            let sink = pending.accept().await?;
            sink.closed().await;
            jsonrpsee::core::SubscriptionResult::Ok(())
        })
        .unwrap();
    module
        .register_method("ping", |_params, _ctx, _ext| "pong")
        .unwrap();
    let (client, daemon_end) = tokio::io::duplex(64 * 1024);
    let _task = tokio::spawn(connection(daemon_end, Arc::new(module)));
    let (read, mut write) = tokio::io::split(client);
    let mut lines = BufReader::new(read).lines();
    let mut call = async |id: usize, method: &str, params: Value| -> Value {
        let req =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        write
            .write_all(format!("{req}\n").as_bytes())
            .await
            .unwrap();
        let line = lines.next_line().await.unwrap().unwrap();
        serde_json::from_str(&line).unwrap()
    };
    let mut first = Value::Null;
    for i in 0..MAX_SUBSCRIPTIONS {
        let r = call(i, "sub", Value::Null).await;
        assert!(r["result"].is_u64() || r["result"].is_string(), "{r}");
        if i == 0 {
            first = r["result"].clone();
        }
    }
    let over = call(1000, "sub", Value::Null).await;
    assert_eq!(over["id"], 1000, "{over}");
    assert_eq!(over["error"]["code"], INVALID_REQUEST, "{over}");
    assert!(
        over["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unsubscribe one"),
        "{over}"
    );
    assert_eq!(call(1001, "ping", Value::Null).await["result"], "pong");
    let un = call(1002, "unsub", serde_json::json!([first])).await;
    assert_eq!(un["result"], true, "{un}");
    // The unsubscribed task ends at its own pace: give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let again = call(1003, "sub", Value::Null).await;
    assert!(again["error"].is_null(), "{again}");
}

/// A client that subscribes and never reads its notifications is
/// dropped once they no longer fit, not left connected to a
/// subscription that silently stopped (it would wait for events that
/// never come). Checked against the forwarder just returning: the
/// connection then stayed open.
#[tokio::test]
async fn a_subscriber_that_does_not_read_is_dropped() {
    let mut module = RpcModule::new(());
    module
        .register_subscription("sub", "note", "unsub", |_, pending, _, _| async move {
            let sink = pending.accept().await?;
            for i in 0..OUT_QUEUE * 8 {
                let n = serde_json::value::to_raw_value(&i)?;
                if sink
                    .send(jsonrpsee::SubscriptionMessage::from(n))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            sink.closed().await;
            jsonrpsee::core::SubscriptionResult::Ok(())
        })
        .unwrap();
    let (mut client, daemon_end) = tokio::io::duplex(1024);
    let task = tokio::spawn(connection(daemon_end, Arc::new(module)));
    client
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sub\"}\n")
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(20), task)
        .await
        .expect("a subscriber that does not read stays connected")
        .unwrap();
    drop(client);
}
