//! What the window's Xvfb tests share.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

/// Whether `tool` is on the PATH.
pub(crate) fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether any of `tools` is missing; prints a SKIPPED line if so.
pub(crate) fn missing(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    // CI installs them all: there, missing is a failure, not a skip.
    assert!(
        missing.is_empty() || std::env::var_os("ANONCHAT_REQUIRE_GUI_TESTS").is_none(),
        "{test}: {} not installed",
        missing.join(", ")
    );
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED {test}: {} not installed (.ci/run installs them)",
            missing.join(", ")
        );
    }
    !missing.is_empty()
}

/// Runs `script` with `sh` under `xvfb-run` on a 1024×700 screen (inside
/// `wrapper`, e.g. `dbus-run-session --`), with `env` set; panics with its
/// output if it fails.
pub(crate) fn xvfb(wrapper: &[&str], script: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("xvfb-run");
    cmd.args(["-a", "-s", "-screen 0 1024x700x24"])
        .args(wrapper)
        .args(["sh", "-c", script]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "GUI run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The number of pixels that differ between two screenshots.
pub(crate) fn differing_pixels(a: &Path, b: &Path) -> f64 {
    let out = Command::new("compare")
        .args(["-metric", "AE"])
        .arg(a)
        .arg(b)
        .arg("null:")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("compare said: {text}"))
}

/// Not blank: many distinct colours and a real spread of brightness.
pub(crate) fn assert_not_blank(shot: &Path) {
    let stats = Command::new("convert")
        .arg(shot)
        .args(["-format", "%k %[fx:standard_deviation]", "info:"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stats.stdout).to_string();
    let mut parts = text.split_whitespace();
    let colours: u64 = parts.next().unwrap().parse().unwrap();
    let spread: f64 = parts.next().unwrap().parse().unwrap();
    assert!(
        colours > 50 && spread > 0.02,
        "the screenshot {} looks blank: {text}",
        shot.display()
    );
}
