//! Where the daemon keeps things: `--home`/`ANONCHAT_HOME` or the XDG data
//! directory; `--socket`/`ANONCHAT_SOCKET` or `$XDG_RUNTIME_DIR`.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

pub use anonchat_ipc::client::SOCKET_NAME;

/// The daemon's home directory and socket.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Identity, contacts and session state live here.
    pub home: PathBuf,
    /// The JSON-RPC socket.
    pub socket: PathBuf,
}

impl Paths {
    /// The paths given, or the XDG defaults.
    pub fn resolve(home: Option<PathBuf>, socket: Option<PathBuf>) -> anyhow::Result<Self> {
        let dirs = directories::ProjectDirs::from("org", "anonchat", "anonchat");
        let home = match home {
            Some(h) => h,
            None => dirs
                .as_ref()
                .map(|d| d.data_dir().to_path_buf())
                .context("cannot find a home directory for the daemon; pass --home DIR")?,
        };
        let socket = match socket {
            Some(s) => s,
            None => match dirs
                .as_ref()
                .and_then(|d| d.runtime_dir().map(Path::to_path_buf))
            {
                Some(run) => run.join(SOCKET_NAME),
                None => home.join(SOCKET_NAME),
            },
        };
        Ok(Self { home, socket })
    }

    /// The sealed identity secrets and data key.
    pub fn identity_key(&self) -> PathBuf {
        self.home.join("identity.key")
    }

    /// The public identity file.
    pub fn identity_pub(&self) -> PathBuf {
        self.home.join("identity.pub")
    }

    /// The sealed session state.
    pub fn sessions(&self) -> PathBuf {
        self.home.join("sessions.bin")
    }

    /// The daemon's configuration (the proxy).
    pub fn config(&self) -> PathBuf {
        self.home.join("config.json")
    }

    /// The contact list, sealed under the data key.
    pub fn contacts(&self) -> PathBuf {
        self.home.join("contacts.bin")
    }

    /// The contact list as versions before 0.2 kept it, in plaintext: read
    /// once at unlock, sealed into [`Paths::contacts`], then removed.
    pub fn legacy_contacts(&self) -> PathBuf {
        self.home.join("contacts.json")
    }

    /// The lock that keeps a second daemon off this home.
    pub fn lock(&self) -> PathBuf {
        self.home.join("daemon.lock")
    }
}

/// Creates `dir` (and parents) with mode 0700, or checks that an existing
/// one is ours and not open to others.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let meta = fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        bail!(
            "{} belongs to another user; choose a directory of your own",
            dir.display()
        );
    }
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "{} is accessible by other users; run `chmod 700 {}` or choose another directory",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Holds the home's lock for the daemon's lifetime.
#[derive(Debug)]
pub struct HomeLock(#[allow(dead_code, reason = "held for its lock")] File);

/// Takes the home's lock, or says that another daemon holds it.
pub fn lock_home(paths: &Paths) -> anyhow::Result<HomeLock> {
    let path = paths.lock();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        let pid = fs::read_to_string(&path).unwrap_or_default();
        bail!(
            "another anonchatd (pid {}) is already running with home {}; stop it first (`anonctl daemon stop`)",
            pid.trim(),
            paths.home.display()
        );
    }
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(HomeLock(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_on_the_same_home_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::resolve(Some(dir.path().into()), None).unwrap();
        let first = lock_home(&paths).unwrap();
        let err = lock_home(&paths).unwrap_err().to_string();
        assert!(err.contains("already running"), "{err}");
        drop(first);
        lock_home(&paths).unwrap();
    }

    #[test]
    fn private_dirs_are_0700_and_open_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        private_dir(&d).unwrap();
        assert_eq!(
            fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(private_dir(&d).is_err());
    }
}
