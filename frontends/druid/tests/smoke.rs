//! GUI smoke test: a real relay and three real daemons (alice, bob, dave)
//! exchange messages over JSON-RPC (via anonctl), then `anonchat-gui` opens
//! against alice's daemon under `xvfb-run`, inside `dbus-run-session` with
//! a real notification server (`dunst`).
//!
//! 1. The test waits for its window (`xdotool search`), types a message
//!    into the compose box and presses Enter, takes a screenshot, checks it
//!    is not blank, and checks that bob received the typed message. The
//!    screenshot is kept as `target/anonchat-gui-smoke.png`.
//!    Shift+Tab twice reaches the contact list, Down opens the second
//!    contact (dave), Tab twice reaches the compose box: the next typed
//!    message reaches dave. Mutation seen failing: `Focusable` ignoring
//!    the arrow keys (the message never reaches dave).
//! 2. Notifications: dave writes while the window is in front; then the
//!    pointer leaves the window (no window manager: the focus follows the
//!    pointer) and bob writes. `dunstctl history` (closed notifications:
//!    dunst closes one after 10 s) must name bob, not hold the text (off
//!    by default), and not name dave; the title must count bob's unread
//!    message. Mutations seen failing: not calling `notify` (no
//!    notification); `model::notification` always putting the text in
//!    the body (the text shows up in the history); notifying whether or
//!    not the window is active (dave's shows up).
//! 3. The window remembers its size: resized by `xdotool windowsize`,
//!    closed and opened again, it has the new size. Mutation seen failing:
//!    the delegate not saving `WindowSize`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use anonchat_e2e::World;

const SCRIPT: &str = r#"set -e
dunst >/dev/null 2>&1 & DUNST=$!
XDG_CONFIG_HOME="$OUT/config" "$GUI" --socket "$ALICE" & GUI_PID=$!
trap 'kill $GUI_PID $DUNST 2>/dev/null || true' EXIT
W=$(timeout 30 xdotool search --sync --name '^anonchat( \(|$)' | head -n1)
sleep 2
# 1. Type into the compose box (it has the focus) and press Enter.
xdotool mousemove 550 555
xdotool type --delay 20 'typed in the window'
xdotool key Return
sleep 2
import -window root "$SHOT"
# Back to the contact list (Refresh, then the list), Down to dave, Tab
# past Refresh to the compose box.
xdotool key shift+Tab shift+Tab Down
sleep 1
xdotool key Tab Tab
xdotool type --delay 20 'chosen with the arrow keys'
xdotool key Return
sleep 1
# dave writes while the window is in front: no notification.
"$CTL" --socket "$DAVE" send alice 'while the window is in front' --wait --timeout 60 >/dev/null
sleep 1

# 2. The window loses the focus; bob writes.
xdotool mousemove 1015 690
sleep 1
"$CTL" --socket "$BOB" send alice "$SECRET" --wait --timeout 60 >/dev/null
i=0
until dunstctl history | grep -q 'message from bob'; do
    i=$((i + 1))
    if [ $i -ge 100 ]; then
        import -window root "$OUT/no-notification.png"
        echo "no notification; dunst's history: $(dunstctl history)" >&2
        exit 1
    fi
    sleep 0.2
done
dunstctl history > "$OUT/notifications.json"
sleep 0.5
xdotool getwindowname "$W" > "$OUT/title.txt"

# 3. Resize, close, reopen.
xdotool search --name '^anonchat( \(|$)' windowsize --sync 700 500
sleep 1
kill $GUI_PID; wait $GUI_PID || true
XDG_CONFIG_HOME="$OUT/config" "$GUI" --socket "$ALICE" & GUI_PID=$!
W=$(timeout 30 xdotool search --sync --name '^anonchat( \(|$)' | head -n1)
sleep 2
xdotool getwindowgeometry "$W" > "$OUT/geometry.txt"
"#;

const SECRET: &str = "this text stays off the lock screen";

#[test]
fn the_window_opens_shows_a_conversation_notifies_and_keeps_its_size() {
    if common::missing(
        "the GUI smoke test",
        &[
            "xvfb-run",
            "xdotool",
            "import",
            "convert",
            "dbus-run-session",
            "dunst",
            "dunstctl",
        ],
    ) {
        return;
    }
    let w = World::new();
    let _world = w.friends(
        &["alice", "bob", "dave"],
        &[("alice", "bob"), ("alice", "dave")],
    );
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
    // Kept after the run (to look at when it fails).
    let out = w.bins.parent().unwrap().join("anonchat-gui-smoke");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let ctl = w.bins.join("anonctl");
    common::xvfb(
        &["dbus-run-session", "--"],
        SCRIPT,
        &[
            ("GUI", env!("CARGO_BIN_EXE_anonchat-gui")),
            ("CTL", ctl.to_str().unwrap()),
            ("ALICE", w.socket("alice").to_str().unwrap()),
            ("BOB", w.socket("bob").to_str().unwrap()),
            ("DAVE", w.socket("dave").to_str().unwrap()),
            ("OUT", out.to_str().unwrap()),
            ("SHOT", shot.to_str().unwrap()),
            ("SECRET", SECRET),
        ],
    );

    // 1.
    assert!(shot.exists(), "no screenshot");
    common::assert_not_blank(&shot);
    eprintln!("GUI screenshot: {}", shot.display());
    anonchat_e2e::eventually(60, "bob received the message typed in the window", || {
        w.received("bob", "alice")
            .contains(&"typed in the window".to_owned())
    });

    anonchat_e2e::eventually(60, "dave received the message after the arrow keys", || {
        w.received("dave", "alice")
            .contains(&"chosen with the arrow keys".to_owned())
    });

    // 2. A notification naming bob, without the text; bob's conversation
    // is not the open one, so the title counts it.
    let history = std::fs::read_to_string(out.join("notifications.json")).unwrap();
    assert!(history.contains("message from bob"), "{history}");
    assert!(
        !history.contains("message from dave"),
        "a notification while the window was in front: {history}"
    );
    assert!(
        !history.contains(SECRET),
        "the message text is in the notification: {history}"
    );

    let title = std::fs::read_to_string(out.join("title.txt")).unwrap();
    assert_eq!(title.trim(), "anonchat (1 unread)");

    // 3. The size survived the restart.
    let geometry = std::fs::read_to_string(out.join("geometry.txt")).unwrap();
    assert!(geometry.contains("Geometry: 700x500"), "{geometry}");
}
