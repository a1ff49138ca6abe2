//! The daemon's persisted configuration (`config.json` in the home, 0600,
//! written atomically): today, the SOCKS5 proxy (e.g. Tor) the relay link
//! must go through. A proxy once configured stays in force across restarts
//! until it is removed explicitly (fail-closed: the link never dials the
//! relay directly while a proxy is configured).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keystore::write_atomic;

const FILE_VERSION: u32 = 1;
const MAX_FILE: u64 = 64 << 10;

/// A SOCKS5 proxy (`socks5://HOST:PORT`), e.g. Tor's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `HOST:PORT` of the proxy.
    pub addr: String,
}

impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "socks5://{}", self.addr)
    }
}

impl std::str::FromStr for Proxy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let addr = s
            .strip_prefix("socks5://")
            .or_else(|| s.strip_prefix("socks5h://"))
            .ok_or_else(|| {
                format!("{s}: expected socks5://HOST:PORT (for Tor: socks5://127.0.0.1:9050)")
            })?;
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
            || addr
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '/')
        {
            return Err(format!("{s}: expected socks5://HOST:PORT"));
        }
        Ok(Self {
            addr: addr.to_owned(),
        })
    }
}

/// What is persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The proxy the relay link goes through, if any.
    pub proxy: Option<Proxy>,
    /// The SOCKS5 username and password this home presents to the proxy
    /// (random, made once): Tor puts streams with different credentials on
    /// different circuits, so two identities on one machine never share a
    /// circuit (stream isolation), and the value says nothing about who we
    /// are.
    pub isolation: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    proxy: Option<String>,
    isolation: String,
}

fn fresh_isolation() -> String {
    let mut b = [0u8; 12];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut b);
    b.iter().fold(String::with_capacity(24), |mut s, x| {
        use std::fmt::Write as _;
        let _ = write!(s, "{x:02x}");
        s
    })
}

impl Config {
    /// Reads the configuration (the defaults if there is none yet). A
    /// damaged file is an error: silently dropping a configured proxy would
    /// connect directly.
    pub fn load(path: &Path) -> Result<Self> {
        // An error reading the directory is an error, not "no proxy".
        if !path.try_exists().map_err(Error::storage)? {
            return Ok(Self {
                proxy: None,
                isolation: fresh_isolation(),
            });
        }
        let damaged = |why: String| {
            Error::Storage(format!(
                "{} is damaged ({why}); fix or remove it (it holds the proxy setting)",
                path.display()
            ))
        };
        if std::fs::metadata(path).map_err(Error::storage)?.len() > MAX_FILE {
            return Err(damaged("too large".into()));
        }
        let bytes = std::fs::read(path).map_err(Error::storage)?;
        let file: File = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        if file.version != FILE_VERSION {
            return Err(damaged(format!("format {}", file.version)));
        }
        let proxy = file
            .proxy
            .map(|p| p.parse::<Proxy>())
            .transpose()
            .map_err(damaged)?;
        if file.isolation.is_empty() || file.isolation.len() > 64 {
            return Err(damaged("bad isolation token".into()));
        }
        Ok(Self {
            proxy,
            isolation: file.isolation,
        })
    }

    /// Writes the configuration atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let file = File {
            version: FILE_VERSION,
            proxy: self.proxy.as_ref().map(ToString::to_string),
            isolation: self.isolation.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(Error::storage)?;
        write_atomic(path, &bytes).map_err(Error::storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_checked() {
        assert_eq!(
            "socks5://127.0.0.1:9050".parse::<Proxy>().unwrap().addr,
            "127.0.0.1:9050"
        );
        assert!("socks5h://tor:9050".parse::<Proxy>().is_ok());
        for bad in [
            "http://x:1",
            "socks5://",
            "socks5://host",
            "socks5://:1",
            "socks5://h:99999",
            "socks5://h:1/x",
            "socks5://h\n:1",
        ] {
            assert!(bad.parse::<Proxy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_proxy_survives_a_round_trip_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let fresh = Config::load(&path).unwrap();
        assert!(fresh.proxy.is_none());
        assert_eq!(fresh.isolation.len(), 24);
        let with = Config {
            proxy: Some("socks5://127.0.0.1:9050".parse().unwrap()),
            ..fresh
        };
        with.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), with);
        std::fs::write(
            &path,
            b"{\"version\":1,\"proxy\":\"http://x\",\"isolation\":\"a\"}",
        )
        .unwrap();
        assert!(
            Config::load(&path).is_err(),
            "never silently without the proxy"
        );
        std::fs::write(&path, b"{oops").unwrap();
        assert!(Config::load(&path).is_err());
    }
}
