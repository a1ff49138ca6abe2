//! The window's own settings (its size, whether notifications show message
//! text), in the user's config directory (`~/.config/anonchat/gui.json`),
//! apart from the daemon's keys and data. Nothing secret is stored here.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The settings file's name in the config directory.
pub const FILE: &str = "gui.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The window's last size (logical pixels).
    pub window: Option<(f64, f64)>,
    /// Show message text in notifications (default: the sender only).
    pub notify_text: bool,
}

/// `$XDG_CONFIG_HOME/anonchat/gui.json` (or its platform equivalent).
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "anonchat", "anonchat").map(|d| d.config_dir().join(FILE))
}

impl Settings {
    /// The stored settings; the defaults if there are none or they do not
    /// parse (a settings file is never worth refusing to start).
    pub fn load(path: &Path) -> Self {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the settings (the directory is made 0700; a temporary file is
    /// renamed over the old one).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// Loads, changes and saves; reports a failure once on stderr (the
    /// window works on without it).
    pub fn update(path: Option<&Path>, change: impl FnOnce(&mut Self)) {
        let Some(path) = path else { return };
        let mut s = Self::load(path);
        let before = s.clone();
        change(&mut s);
        if s != before
            && let Err(e) = s.save(path)
        {
            eprintln!(
                "anonchat-gui: cannot save the window settings to {}: {e} (check that directory's permissions)",
                path.display()
            );
        }
    }
}

/// A stored window size, if it is sane (not smaller than the window's
/// minimum, not absurd).
pub fn usable_size(s: &Settings, min: (f64, f64)) -> Option<(f64, f64)> {
    let (w, h) = s.window?;
    let ok = |v: f64, lo: f64| v.is_finite() && v >= lo && v <= 20_000.0;
    (ok(w, min.0) && ok(h, min.1)).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mutation: `save` not writing the size (or `load` ignoring it) fails.
    #[test]
    fn the_window_size_survives_a_restart() {
        let dir =
            std::env::temp_dir().join(format!("anonchat-gui-settings-{}", std::process::id()));
        let path = dir.join("sub").join(FILE);
        Settings::update(Some(&path), |s| s.window = Some((700.0, 500.0)));
        Settings::update(Some(&path), |s| s.notify_text = true);
        let s = Settings::load(&path);
        assert_eq!(s.window, Some((700.0, 500.0)));
        assert!(s.notify_text);
        assert_eq!(usable_size(&s, (560.0, 380.0)), Some((700.0, 500.0)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_or_absurd_file_gives_the_defaults() {
        let dir = std::env::temp_dir().join(format!("anonchat-gui-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(Settings::load(&path), Settings::default());
        let tiny = Settings {
            window: Some((10.0, 10.0)),
            notify_text: false,
        };
        assert_eq!(usable_size(&tiny, (560.0, 380.0)), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
