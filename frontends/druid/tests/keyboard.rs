//! The window driven by keyboard alone under Xvfb, against a real relay
//! and real daemons: a fresh daemon (carol) with no identity, a friend
//! (alice) who already has one.
//!
//! 1. First run: the nickname field has the focus; Tab moves to the relay
//!    field and to the passphrase field. The passphrase is typed there
//!    twice (two different texts of the same length); the screenshots of
//!    the two are identical to the pixel, and differ from the empty field:
//!    the field shows a mask that depends on the length only, never the
//!    characters. Tab reaches "Generate connection data", Enter presses it,
//!    and the daemon has a passphrase-protected identity.
//! 2. Add contact by paste: Tab reaches "Add contact", Enter opens it; the
//!    identity text goes in through the clipboard (Ctrl+V), the name by
//!    typing; Enter on "Add" adds, the window shows the fingerprint; Tab
//!    and Enter on "They match" mark the contact verified.
//! 3. The compose box has the focus again: a typed message reaches alice.
//!    "Add contact" then Escape closes the panel: the next typed message
//!    reaches alice too (without Escape it would go into the paste box).
//! 4. Locked by `anonctl lock` and opened again, the window asks for the
//!    passphrase; typed into the masked field with Enter, it unlocks the
//!    daemon. (Opened again: left open across `anonctl lock`, the window
//!    stayed on the conversation in about one run in six; its worker's
//!    last call, after a `daemon.status` that said locked, got no answer.
//!    That is open, and not what this test is about.)
//!
//! Mutations seen failing: `PassBox` laying out the passphrase itself
//! instead of `masked(..)` (the two screenshots differ); `Focusable` not
//! handling Tab (carol's identity is never created); the delegate not
//! closing the panel on Escape (the second message never arrives).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use anonchat_e2e::World;

const PASS_A: &str = "hunter2 correct horse";
const PASS_B: &str = "XQZWJKVMPYGFBHNLDRTSU";

const SCRIPT: &str = r#"set -e
ctl() { "$CTL" --socket "$1" --json "$@"; }
wait_for() { # SOCKET WHAT PATTERN
    i=0
    until "$CTL" --socket "$1" --json $2 2>/dev/null | grep -q "$3"; do
        i=$((i + 1)); [ $i -lt 300 ] || { echo "timed out: $2 ~ $3" >&2; exit 1; }
        sleep 0.2
    done
}
shot() { import -window root "$OUT/$1.png"; }
XDG_CONFIG_HOME="$OUT/config" "$GUI" --socket "$CAROL" & GUI_PID=$!
trap 'kill $GUI_PID 2>/dev/null || true' EXIT
timeout 30 xdotool search --sync --name '^anonchat( \(|$)' >/dev/null
sleep 2

# 1. First run, by keyboard.
xdotool type --delay 15 carol
xdotool key Tab
xdotool type --delay 5 "$RELAY"
xdotool key Tab
sleep 0.5; shot empty
xdotool type --delay 15 "$PASS_A"
sleep 0.5; shot pass-a
for _ in $(seq ${#PASS_A}); do xdotool key BackSpace; done
xdotool type --delay 15 "$PASS_B"
sleep 0.5; shot pass-b
xdotool key Tab Return
wait_for "$CAROL" status '"identity": *"unlocked"'
sleep 2

# carol's file goes to alice by the command line (alice is not under test).
"$CTL" --socket "$CAROL" id export "$OUT/carol.id"
"$CTL" --socket "$ALICE" contact add "$OUT/carol.id" --name carol --yes >/dev/null

# 2. Add alice by pasting her identity text.
xclip -selection clipboard -i "$OUT/alice.id"
xdotool key Tab Tab Tab Return
sleep 1
xdotool key ctrl+v
sleep 0.5
xdotool key Tab
xdotool type --delay 15 alice
xdotool key Tab Return
wait_for "$CAROL" contacts '"name": *"alice"'
sleep 1; shot fingerprint
xdotool key Tab Return
wait_for "$CAROL" contacts '"verified": *true'
sleep 2

# 3. The compose box has the focus; Escape closes the panel.
xdotool type --delay 15 'typed after adding by paste'
xdotool key Return
sleep 1
xdotool key Tab Tab Tab Return
sleep 1
xdotool key Escape
sleep 1
xdotool type --delay 15 'typed after escape'
xdotool key Return
wait_for "$ALICE" "history carol" 'typed after escape'
sleep 1

# 4. Locked: the passphrase typed into the masked field unlocks. The
# window is opened afresh on the locked daemon (see the module doc).
"$CTL" --socket "$CAROL" lock >/dev/null
wait_for "$CAROL" status '"identity": *"locked"'
kill $GUI_PID; wait $GUI_PID || true
XDG_CONFIG_HOME="$OUT/config" "$GUI" --socket "$CAROL" & GUI_PID=$!
timeout 30 xdotool search --sync --name '^anonchat( \(|$)' >/dev/null
sleep 2; shot locked
xdotool type --delay 15 "$PASS_B"
sleep 0.5; shot unlocking
xdotool key Return
wait_for "$CAROL" status '"identity": *"unlocked"'
sleep 1; shot end
"#;

#[test]
fn first_run_and_adding_by_paste_work_by_keyboard_with_a_masked_passphrase() {
    if common::missing(
        "the keyboard GUI test",
        &[
            "xvfb-run", "xdotool", "import", "compare", "convert", "xclip",
        ],
    ) {
        return;
    }
    let w = World::new();
    let (_relay, relay, _daemons) = w.users(&["alice"]);
    let _carol = w.daemon("carol");
    // Kept after the run (screenshots to look at when it fails).
    let out = w.bins.parent().unwrap().join("anonchat-gui-keyboard");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    w.json(
        "alice",
        &["id", "export", out.join("alice.id").to_str().unwrap()],
    );

    let ctl = w.bins.join("anonctl");
    common::xvfb(
        &[],
        SCRIPT,
        &[
            ("GUI", env!("CARGO_BIN_EXE_anonchat-gui")),
            ("CTL", ctl.to_str().unwrap()),
            ("CAROL", w.socket("carol").to_str().unwrap()),
            ("ALICE", w.socket("alice").to_str().unwrap()),
            ("RELAY", &relay),
            ("OUT", out.to_str().unwrap()),
            ("PASS_A", PASS_A),
            ("PASS_B", PASS_B),
        ],
    );

    // 1. The mask depends on the length only.
    let (empty, a, b) = (
        out.join("empty.png"),
        out.join("pass-a.png"),
        out.join("pass-b.png"),
    );
    common::assert_not_blank(&a);
    let typed = common::differing_pixels(&empty, &a);
    assert!(
        typed > 20.0,
        "typing changed nothing on screen ({typed} pixels)"
    );
    let between = common::differing_pixels(&a, &b);
    assert!(
        between == 0.0,
        "two passphrases of the same length look different ({between} pixels): the field shows characters"
    );
    let keep = w.bins.parent().unwrap().join("anonchat-gui-passphrase.png");
    std::fs::copy(&a, &keep).unwrap();
    eprintln!("passphrase screenshot: {}", keep.display());
    let status = w.json("carol", &["status"]);
    assert_eq!(status["keys_protected"], true, "{status}");

    // 2. alice added by paste, with the fingerprint alice's daemon shows.
    let mine = w.json("alice", &["id"]);
    let contacts = w.json("carol", &["contacts"]);
    let alice = &contacts.as_array().unwrap()[0];
    assert_eq!(alice["name"], "alice");
    assert_eq!(alice["fingerprint"], mine["fingerprint"]);
    assert_eq!(alice["verified"], true);

    // 3. Both typed messages reached alice (the second only if Escape
    // closed the panel).
    anonchat_e2e::eventually(
        60,
        "alice received both messages typed in the window",
        || {
            let got = w.received("alice", "carol");
            got.contains(&"typed after adding by paste".to_owned())
                && got.contains(&"typed after escape".to_owned())
        },
    );
}
