//! GUI smoke test: a real relay and two real daemons exchange messages over
//! JSON-RPC (via anonctl), then `anonchat-gui` opens against alice's daemon
//! under `xvfb-run`; the test waits for its window (`xdotool search`),
//! types a message into the compose box and presses Enter (`xdotool`),
//! takes a screenshot (`import -window root`), checks it is not blank, and
//! checks that bob received the typed message.
//! The screenshot is kept as `target/anonchat-gui-smoke.png`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use anonchat_e2e::World;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_window_opens_and_shows_a_conversation() {
    let missing: Vec<&str> = ["xvfb-run", "xdotool", "import", "convert"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED the GUI smoke test: {} not installed (apt-get install xvfb xdotool imagemagick; .ci/run does)",
            missing.join(", ")
        );
        return;
    }
    let w = World::new();
    let _world = w.friends(&["alice", "bob"], &[("alice", "bob")]);
    w.json(
        "alice",
        &[
            "send",
            "bob",
            "Hello Bob, from the command line",
            "--wait",
            "--timeout",
            "60",
        ],
    );
    w.json(
        "bob",
        &[
            "send",
            "alice",
            "Hi Alice! This should be in the window.",
            "--wait",
            "--timeout",
            "60",
        ],
    );

    let shot = w.bins.parent().unwrap().join("anonchat-gui-smoke.png");
    let _ = std::fs::remove_file(&shot);
    let script = format!(
        r#"set -e
"{gui}" --socket "{sock}" & GUI=$!
trap 'kill $GUI 2>/dev/null || true' EXIT
timeout 30 xdotool search --sync --name '^anonchat$' >/dev/null
sleep 2
# Type into the compose box (bottom of the window) and press Enter.
xdotool mousemove 550 555 click 1
sleep 0.3
xdotool type --delay 20 'typed in the window'
xdotool key Return
sleep 2
import -window root "{shot}"
"#,
        gui = env!("CARGO_BIN_EXE_anonchat-gui"),
        sock = w.socket("alice").display(),
        shot = shot.display(),
    );
    let out = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1024x700x24", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "GUI run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shot.exists(), "no screenshot");

    // Not blank: many distinct colours and a real spread of brightness.
    let stats = Command::new("convert")
        .arg(&shot)
        .args(["-format", "%k %[fx:standard_deviation]", "info:"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stats.stdout).to_string();
    let mut parts = text.split_whitespace();
    let colours: u64 = parts.next().unwrap().parse().unwrap();
    let spread: f64 = parts.next().unwrap().parse().unwrap();
    assert!(
        colours > 50 && spread > 0.02,
        "the screenshot looks blank: {text}"
    );
    eprintln!("GUI screenshot: {} ({colours} colours)", shot.display());

    // What was typed in the window went to bob through the relay.
    anonchat_e2e::eventually(60, "bob received the message typed in the window", || {
        w.received("bob", "alice")
            .contains(&"typed in the window".to_owned())
    });
}
