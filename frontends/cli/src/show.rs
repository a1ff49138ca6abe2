//! Human and JSON output. JSON is the API's own types, one object per line.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

use anonchat_ipc::{ContactInfo, Direction, HistoryEntry, IdentityInfo, Status};
use serde::Serialize;

use crate::fail::Fail;

use anonchat_ipc::is_hidden as hidden;

/// Untrusted text (a contact's message or nickname, the relay's words, a
/// daemon's error) made safe to print: every [`hidden`] character is shown
/// as an escape instead — `\n`, `\r`, `\t`, `\x1b` for the other C0
/// controls and DEL, `\u{202e}` for the rest — so that it can neither
/// steer the terminal nor fake a line. JSON output (--json) keeps the exact
/// text; only human output goes through here.
pub(crate) fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hidden) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0'..='\x1f' | '\x7f' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Prints a value as one line of JSON.
pub(crate) fn json<T: Serialize>(value: &T) {
    println!("{}", serde_json::to_string(value).unwrap_or_default());
}

/// Prints `what` for a command that only succeeded, or `{"ok":true}`.
pub(crate) fn done(json_out: bool, what: &str) {
    if json_out {
        json(&serde_json::json!({"ok": true}));
    } else {
        println!("{what}");
    }
}

/// Prints the identity; `created` adds the next steps after `init`.
pub(crate) fn identity(info: &IdentityInfo, json_out: bool, created: bool) {
    if json_out {
        return json(info);
    }
    if created {
        println!("Identity created.");
    }
    println!("name:        {}", safe(&info.name));
    println!("fingerprint: {}", safe(&info.fingerprint));
    println!("relay:       {} (shard {})", safe(&info.relay), info.shard);
    if !info.keys_protected {
        println!("warning:     your keys are stored without a passphrase");
    }
    if created {
        println!(
            "\nNext: `anonctl id export your_id`, give that file to your friend, and import theirs with `anonctl contact add FILE --name NAME`."
        );
    }
}

/// Prints the contacts, one a line, with their fingerprints.
pub(crate) fn contacts(list: &[ContactInfo], json_out: bool) {
    if json_out {
        return json(&list);
    }
    if list.is_empty() {
        println!("No contacts yet: `anonctl contact add FILE --name NAME`.");
    }
    for c in list {
        let mark = if c.verified {
            "verified"
        } else {
            "NOT verified"
        };
        println!(
            "{:<20} {:<13} {}",
            safe(&c.name),
            mark,
            safe(&c.fingerprint)
        );
    }
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
pub(crate) fn clock(time_ms: u64) -> String {
    let s = time_ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// One history entry as a line: time, direction, text and delivery mark
/// (the names and the text made [`safe`]).
pub(crate) fn line(contact: &str, e: &HistoryEntry) -> String {
    let contact = safe(contact);
    let who = match (e.direction, &e.sender) {
        (Direction::Out, _) => format!("you → {contact}"),
        (Direction::In, Some(sender)) => format!("{} → {contact}", safe(sender)),
        (Direction::In, None) => format!("{contact} → you"),
    };
    let reach = e
        .delivered_to
        .filter(|d| d.to < d.of)
        .map(|d| format!(" ({} of {})", d.to, d.of))
        .unwrap_or_default();
    format!(
        "[{}] {who}: {} {}{reach}",
        clock(e.time_ms),
        safe(&e.text),
        e.state.mark()
    )
    .trim_end()
    .to_owned()
}

/// Prints the conversation with `contact`.
pub(crate) fn history(contact: &str, entries: &[HistoryEntry], json_out: bool) {
    if json_out {
        return json(&entries);
    }
    if entries.is_empty() {
        println!(
            "No messages with {} in this daemon's memory.",
            safe(contact)
        );
    }
    for e in entries {
        println!("{}", line(contact, e));
    }
}

/// Prints the daemon's status and its warnings.
pub(crate) fn status(s: &Status, traffic: Option<&anonchat_ipc::Traffic>, json_out: bool) {
    if json_out {
        // `daemon.status`'s object, with `daemon.traffic`'s as "traffic".
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let (Some(obj), Some(t)) = (v.as_object_mut(), traffic) {
            obj.insert(
                "traffic".into(),
                serde_json::to_value(t).unwrap_or_default(),
            );
        }
        return json(&v);
    }
    println!(
        "daemon:    running (version {}, API {})",
        s.daemon_version, s.api_version
    );
    println!("identity:  {}", s.identity.as_str());
    if let Some(addr) = &s.relay.address {
        println!(
            "relay:     {} ({}{})",
            safe(addr),
            s.relay.state.as_str(),
            s.relay
                .round
                .map(|r| format!(", round {r}"))
                .unwrap_or_default()
        );
    }
    if let Some(line) = traffic.and_then(traffic_line) {
        println!("traffic:   {line}");
    }
    match &s.relay.proxy {
        Some(p) => println!(
            "proxy:     {} (never a direct connection to the relay)",
            safe(p)
        ),
        None => println!("proxy:     none (the relay sees your IP address)"),
    }
    println!("contacts:  {}", s.contacts);
    println!("waiting:   {} undelivered message(s)", s.undelivered);
    for w in &s.warnings {
        println!("warning:   {}", safe(w));
    }
}

/// What anonymity costs now: "205 kB/s down (17.7 GB a day), 1.1 kB/s
/// up; 200 clients in your shard, 500 ms rounds".
pub(crate) fn traffic_line(t: &anonchat_ipc::Traffic) -> Option<String> {
    use std::fmt::Write as _;
    let down = t.download_bytes_per_s?;
    let mut line = format!(
        "{}/s down ({} a day)",
        bytes(down),
        bytes(t.download_bytes_per_day.unwrap_or(down * 86_400))
    );
    if let Some(up) = t.upload_bytes_per_s {
        let _ = write!(line, ", {}/s up", bytes(up));
    }
    if let (Some(n), Some(ms)) = (t.shard_clients, t.round_ms) {
        let _ = write!(line, "; {n} clients in your shard, {ms} ms rounds");
    }
    Some(line)
}

/// Bytes in SI units, three significant digits: "950 B", "205 kB",
/// "17.7 GB".
pub(crate) fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 999.5 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v >= 99.95 {
        format!("{v:.0} {}", units[u])
    } else if v >= 9.995 {
        format!("{v:.1} {}", units[u])
    } else {
        format!("{v:.2} {}", units[u])
    }
}

/// The daemon's configuration.
pub(crate) fn config(c: &anonchat_ipc::DaemonConfig, json_out: bool) {
    if json_out {
        return json(c);
    }
    match &c.proxy {
        Some(p) => println!(
            "proxy: {} (the daemon never connects to the relay directly)",
            safe(p)
        ),
        None => println!(
            "proxy: none (direct connection; `anonctl config proxy socks5://127.0.0.1:9050` for Tor)"
        ),
    }
}

/// Writes `anonctl.1` and one page per subcommand to `dir`.
pub(crate) fn man_pages(cmd: clap::Command, dir: &Path) -> Result<(), Fail> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Fail::Other(format!("cannot create {}: {e}", dir.display())))?;
    let write = |name: &str, cmd: clap::Command| -> Result<(), Fail> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut buf)
            .map_err(|e| Fail::Other(e.to_string()))?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf)
            .map_err(|e| Fail::Other(format!("cannot write {}: {e}", path.display())))
    };
    let cmd = cmd.name("anonctl");
    for sub in cmd.get_subcommands() {
        let name = format!("anonctl-{}", sub.get_name());
        write(&name, sub.clone().name(name.clone()))?;
    }
    write("anonctl", cmd)?;
    println!("man pages written to {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use anonchat_ipc::Delivery;

    use super::*;

    #[test]
    fn clock_and_marks() {
        assert_eq!(clock(3_723_000), "01:02:03");
        let e = HistoryEntry {
            id: 1,
            direction: Direction::Out,
            text: "hi".into(),
            time_ms: 0,
            state: Delivery::Sent,
            sender: None,
            delivered_to: None,
        };
        assert_eq!(line("bob", &e), "[00:00:00] you → bob: hi ✓");
    }

    #[test]
    fn hidden_characters_are_shown_not_obeyed() {
        assert!(matches!(safe("héllo 👋 ok"), Cow::Borrowed(_)));
        // ZWJ and ZWNJ stay: emoji and scripts need them.
        assert!(matches!(
            safe("👨\u{200d}👩 می\u{200c}خواهم"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            safe("\u{1b}[2J\u{1b}]0;pwned\u{7}a\rb\nc\td\0\u{7f}"),
            "\\x1b[2J\\x1b]0;pwned\\x07a\\rb\\nc\\td\\x00\\x7f"
        );
        assert_eq!(safe("\u{9b}31m\u{85}"), "\\u{9b}31m\\u{85}");
        assert_eq!(
            safe("abc\u{202e}fed\u{202c} \u{2066}x\u{2069}\u{200b}\u{feff}\u{2028}\u{e0041}"),
            "abc\\u{202e}fed\\u{202c} \\u{2066}x\\u{2069}\\u{200b}\\u{feff}\\u{2028}\\u{e0041}"
        );
        for c in (0..0x20)
            .chain(0x7f..0xa0)
            .chain([0x202a, 0x202e, 0x2066, 0x2069])
        {
            let c = char::from_u32(c).unwrap();
            assert!(!safe(&format!("a{c}b")).contains(c), "{:x}", u32::from(c));
        }
        // A message cannot fake a second line of the history.
        let e = HistoryEntry {
            id: 1,
            direction: Direction::In,
            text: "hi\n[00:00:01] you → bob: I owe you 100 €".into(),
            time_ms: 0,
            state: Delivery::Received,
            sender: None,
            delivered_to: None,
        };
        let shown = line("bob\u{1b}[8m", &e);
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown}"
        );
        assert!(shown.starts_with("[00:00:00] bob\\x1b[8m → you: hi\\n[00:00:01]"));
    }

    /// The status line for the issue's example (200 clients, 500 ms
    /// rounds). Breaks if `bytes` picks the wrong unit or rounding (e.g.
    /// dividing by 1024, or "205000 B").
    #[test]
    fn traffic_is_shown_in_si_units_with_the_shard_and_round() {
        assert_eq!(bytes(950), "950 B");
        assert_eq!(bytes(1_120), "1.12 kB");
        assert_eq!(bytes(205_152), "205 kB");
        assert_eq!(bytes(17_725_132_800), "17.7 GB");
        let t = anonchat_ipc::Traffic {
            batches: 20,
            round_ms: Some(500),
            shard_clients: Some(200),
            download_bytes_per_s: Some(205_152),
            download_bytes_per_day: Some(17_725_132_800),
            upload_bytes_per_s: Some(1_120),
            real_cells_sent: 0,
            group_cells_sent: 0,
        };
        assert_eq!(
            traffic_line(&t).unwrap(),
            "205 kB/s down (17.7 GB a day), 1.12 kB/s up; 200 clients in your shard, 500 ms rounds"
        );
        let none = anonchat_ipc::Traffic {
            download_bytes_per_s: None,
            ..t
        };
        assert_eq!(traffic_line(&none), None);
    }
}
