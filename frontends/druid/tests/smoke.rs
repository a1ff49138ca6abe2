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
//! 4. Groups: alice owns `#trio` with bob and dave (made with anonctl
//!    before the window opens; bob wrote in it), and bob invited her to
//!    `#club`. In the reopened window Down twice from bob (past dave)
//!    opens `#trio`: a typed message reaches bob and dave as alice's
//!    group message (screenshot `anonchat-gui-smoke/group.png`: bob's
//!    message with his name). By keyboard, "New group" opens the form:
//!    `made` with bob is created (bob is invited) and opened; its bar's
//!    invite field and Invite invite dave. The invitation's Accept
//!    (before the contact list) joins `#club`.

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

# 4. The group conversation, then the invitation.
xdotool mousemove 300 300
sleep 1
xdotool key shift+Tab shift+Tab Down Down
sleep 1
xdotool key Tab Tab
xdotool type --delay 20 'typed in the group'
xdotool key Return
sleep 3
import -window root "$OUT/group.png"
# New group: back past Refresh, the list, Decline and Accept to "New
# group"; the name field has the focus, Tab to the contacts, Tab to Create.
xdotool key shift+Tab shift+Tab shift+Tab shift+Tab shift+Tab Return
sleep 1
xdotool type --delay 20 'made'
xdotool key Tab
xdotool type --delay 20 'bob'
xdotool key Tab Return
sleep 3
# The new group is open, the compose box has the focus: past Send to the
# invite field, then Invite.
xdotool key Tab Tab
xdotool type --delay 20 'dave'
xdotool key Tab Return
sleep 2
import -window root "$OUT/made.png"
# From Invite back past the field, Send, the compose box, Refresh, the
# list and Decline to Accept.
xdotool key shift+Tab shift+Tab shift+Tab shift+Tab shift+Tab shift+Tab shift+Tab Return
sleep 2
import -window root "$OUT/accepted.png"
"#;

/// `owner` creates `#name` with `members`; each accepts; waits until every
/// member reads every other member who is their contact (bob and dave are
/// not each other's: they never read each other).
fn make_group(w: &World, owner: &str, name: &str, members: &[&str]) {
    w.json(
        owner,
        &["group", "create", name, "--with", &members.join(",")],
    );
    let tag = format!("#{name}");
    for m in members {
        anonchat_e2e::eventually(60, &format!("{m} invited to {name}"), || {
            w.json(m, &["group", "invitations"])
                .as_array()
                .is_some_and(|l| l.iter().any(|i| i["group"] == name))
        });
        w.json(m, &["group", "accept", &tag]);
    }
    for u in std::iter::once(&owner).chain(members) {
        anonchat_e2e::eventually(120, &format!("{u} reads every member of {name}"), || {
            w.json(u, &["group", "members", &tag])
                .as_array()
                .is_some_and(|l| {
                    l.len() == members.len() + 1
                        && l.iter()
                            .filter(|m| m["me"] == false && !m["contact"].is_null())
                            .all(|m| m["readable"] == true)
                })
        });
    }
}

/// The incoming messages of `user` in `#group`, as (sender, text).
fn group_texts(w: &World, user: &str, group: &str) -> Vec<(String, String)> {
    w.json(user, &["history", group])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["direction"] == "in")
        .map(|e| {
            (
                e["sender"].as_str().unwrap_or("").to_owned(),
                e["text"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

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

    groups_before(&w);

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

    groups_after(&w, &out);
}

/// 4, before the window opens: `#trio` (alice's, with bob and dave) with
/// a message from bob; an invitation from bob to `#club`.
fn groups_before(w: &World) {
    // 4. A group of three, with a message from bob; an invitation to
    // another, for alice to accept in the window.
    make_group(w, "alice", "trio", &["bob", "dave"]);
    w.json("bob", &["send", "#trio", "Hello group, from bob"]);
    anonchat_e2e::eventually(60, "alice has bob's group message", || {
        group_texts(w, "alice", "#trio")
            .iter()
            .any(|(s, t)| s == "bob" && t == "Hello group, from bob")
    });
    w.json("bob", &["group", "create", "club", "--with", "alice"]);
    anonchat_e2e::eventually(60, "alice invited to club", || {
        w.json("alice", &["group", "invitations"])
            .as_array()
            .is_some_and(|l| l.iter().any(|i| i["group"] == "club"))
    });
}

/// 4, after: the message typed in `#trio` and the accepted invitation.
fn groups_after(w: &World, out: &std::path::Path) {
    // 4. The message typed in the group reached both members, from alice;
    // the invitation was accepted.
    for m in ["bob", "dave"] {
        anonchat_e2e::eventually(60, &format!("{m} got the group message"), || {
            group_texts(w, m, "#trio")
                .iter()
                .any(|(s, t)| s == "alice" && t == "typed in the group")
        });
    }
    common::assert_not_blank(&out.join("group.png"));
    for m in ["bob", "dave"] {
        anonchat_e2e::eventually(60, &format!("{m} invited to #made"), || {
            w.json(m, &["group", "invitations"])
                .as_array()
                .is_some_and(|l| {
                    l.iter()
                        .any(|i| i["group"] == "made" && i["from"] == "alice")
                })
        });
    }
    anonchat_e2e::eventually(60, "alice joined #club from the window", || {
        w.json("alice", &["group", "list"])
            .as_array()
            .is_some_and(|l| l.iter().any(|g| g["name"] == "club"))
    });
}
