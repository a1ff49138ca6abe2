//! The relay address: `anonchat://HOST:PORT/#RELAYKEY`.
//!
//! `RELAYKEY` is the relay's static X25519 Noise key, 32 bytes in unpadded
//! base64url (43 characters). Pinning the key in the address is what keeps a
//! daemon from ever talking to an impostor relay.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The scheme every relay address starts with.
pub const SCHEME: &str = "anonchat://";
/// Longest relay address we parse (a DNS name is at most 253 bytes).
pub const MAX_ADDRESS_LEN: usize = 320;
/// Length of a relay public key in bytes.
pub const RELAY_KEY_LEN: usize = 32;

/// Why a relay address was refused. Every variant says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Longer than [`MAX_ADDRESS_LEN`].
    #[error("relay address is longer than {MAX_ADDRESS_LEN} characters")]
    TooLong,
    /// Does not start with `anonchat://`.
    #[error(
        "relay address must start with `anonchat://` (expected anonchat://HOST:PORT/#RELAYKEY)"
    )]
    MissingScheme,
    /// Has no `/#RELAYKEY` part.
    #[error(
        "relay address has no `/#RELAYKEY` part after HOST:PORT (copy the whole line the relay printed)"
    )]
    MissingKey,
    /// Has an empty host.
    #[error("relay address has no host")]
    EmptyHost,
    /// The host is not a DNS name, IPv4 or bracketed IPv6 address.
    #[error("relay host `{0}` is not a valid DNS name, IPv4 address or [IPv6] address")]
    BadHost(String),
    /// Has no `:PORT`.
    #[error("relay address has no `:PORT` after the host")]
    MissingPort,
    /// The port is not a number in 1..=65535.
    #[error("relay port `{0}` is not a number between 1 and 65535")]
    BadPort(String),
    /// The key is not unpadded base64url.
    #[error("relay key is not unpadded base64url (characters A-Z a-z 0-9 - _)")]
    BadKeyEncoding,
    /// The key does not decode to [`RELAY_KEY_LEN`] bytes.
    #[error("relay key is {0} bytes, expected {RELAY_KEY_LEN}; the address was probably cut")]
    BadKeyLength(usize),
}

/// Where a relay listens and which static key it must prove it holds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RelayAddress {
    host: Host,
    port: u16,
    key: [u8; RELAY_KEY_LEN],
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Host {
    Name(String),
    V4(std::net::Ipv4Addr),
    V6(std::net::Ipv6Addr),
}

impl RelayAddress {
    /// Builds an address from a host (`example.org`, `127.0.0.1` or `[::1]`),
    /// a port and the relay's public key.
    pub fn new(host: &str, port: u16, key: [u8; RELAY_KEY_LEN]) -> Result<Self, AddressError> {
        if port == 0 {
            return Err(AddressError::BadPort("0".into()));
        }
        Ok(Self {
            host: parse_host(host)?,
            port,
            key,
        })
    }

    /// The host part as it is dialled (`example.org`, `127.0.0.1`, `::1`).
    pub fn host(&self) -> String {
        match &self.host {
            Host::Name(n) => n.clone(),
            Host::V4(a) => a.to_string(),
            Host::V6(a) => a.to_string(),
        }
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, with brackets around IPv6, ready for `TcpStream::connect`.
    pub fn socket_addr_string(&self) -> String {
        match &self.host {
            Host::V6(a) => format!("[{a}]:{}", self.port),
            _ => format!("{}:{}", self.host(), self.port),
        }
    }

    /// The relay's static Noise public key.
    pub fn key(&self) -> &[u8; RELAY_KEY_LEN] {
        &self.key
    }
}

fn parse_host(host: &str) -> Result<Host, AddressError> {
    if host.is_empty() {
        return Err(AddressError::EmptyHost);
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| AddressError::BadHost(host.into()))?;
        return inner
            .parse()
            .map(Host::V6)
            .map_err(|_| AddressError::BadHost(host.into()));
    }
    if let Ok(v4) = host.parse() {
        return Ok(Host::V4(v4));
    }
    if is_dns_name(host) {
        Ok(Host::Name(host.to_ascii_lowercase()))
    } else {
        Err(AddressError::BadHost(host.into()))
    }
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // A name made only of digits and dots that failed to parse as IPv4
        // (e.g. `1.2.3`) is a typo, not a host name.
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

impl FromStr for RelayAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(AddressError::MissingScheme)?;
        let (authority, key_text) = rest.split_once("/#").ok_or(AddressError::MissingKey)?;
        let (host, port) = if authority.starts_with('[') {
            let close = authority
                .find(']')
                .ok_or_else(|| AddressError::BadHost(authority.into()))?;
            let (h, p) = authority.split_at(close + 1);
            (h, p.strip_prefix(':').ok_or(AddressError::MissingPort)?)
        } else {
            authority
                .rsplit_once(':')
                .ok_or(AddressError::MissingPort)?
        };
        let host = parse_host(host)?;
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => return Err(AddressError::BadPort(port.into())),
        };
        let key_bytes = URL_SAFE_NO_PAD
            .decode(key_text)
            .map_err(|_| AddressError::BadKeyEncoding)?;
        let key: [u8; RELAY_KEY_LEN] = key_bytes
            .as_slice()
            .try_into()
            .map_err(|_| AddressError::BadKeyLength(key_bytes.len()))?;
        Ok(Self { host, port, key })
    }
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/#{}",
            self.socket_addr_string(),
            URL_SAFE_NO_PAD.encode(self.key)
        )
    }
}

impl fmt::Debug for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public data, but keep the Debug form identical to the printed one.
        write!(f, "RelayAddress({self})")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn key_text() -> String {
        URL_SAFE_NO_PAD.encode(KEY)
    }

    #[test]
    fn round_trips_names_ipv4_and_ipv6() {
        for host in ["relay.example.org", "127.0.0.1", "[::1]", "[2001:db8::7]"] {
            let text = format!("anonchat://{host}:4433/#{}", key_text());
            let addr: RelayAddress = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
            assert_eq!(addr.port(), 4433);
            assert_eq!(addr.key(), &KEY);
        }
    }

    #[test]
    fn ipv6_socket_address_is_bracketed() {
        let addr = RelayAddress::new("[::1]", 9, KEY).unwrap();
        assert_eq!(addr.socket_addr_string(), "[::1]:9");
        assert_eq!(addr.host(), "::1");
    }

    #[test]
    fn every_malformed_case_has_its_reason() {
        let k = key_text();
        let cases: Vec<(String, AddressError)> = vec![
            (format!("http://h:1/#{k}"), AddressError::MissingScheme),
            ("anonchat://h:1".into(), AddressError::MissingKey),
            (format!("anonchat://:1/#{k}"), AddressError::EmptyHost),
            (
                format!("anonchat://bad_host:1/#{k}"),
                AddressError::BadHost("bad_host".into()),
            ),
            (
                format!("anonchat://1.2.3:1/#{k}"),
                AddressError::BadHost("1.2.3".into()),
            ),
            (
                format!("anonchat://[::1:1/#{k}"),
                AddressError::BadHost("[::1:1".into()),
            ),
            (format!("anonchat://h/#{k}"), AddressError::MissingPort),
            (
                format!("anonchat://h:0/#{k}"),
                AddressError::BadPort("0".into()),
            ),
            (
                format!("anonchat://h:70000/#{k}"),
                AddressError::BadPort("70000".into()),
            ),
            (
                format!("anonchat://h:+80/#{k}"),
                AddressError::BadPort("+80".into()),
            ),
            ("anonchat://h:1/#***".into(), AddressError::BadKeyEncoding),
            (
                format!("anonchat://h:1/#{}", &k[..20]),
                AddressError::BadKeyLength(15),
            ),
            (
                format!("anonchat://h:1/#{k}AAAA"),
                AddressError::BadKeyLength(35),
            ),
            (
                format!("anonchat://{}:1/#{k}", "a".repeat(400)),
                AddressError::TooLong,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<RelayAddress>(), Err(want), "{text}");
        }
    }

    #[test]
    fn host_names_are_case_insensitive() {
        let a: RelayAddress = format!("anonchat://Relay.Example:1/#{}", key_text())
            .parse()
            .unwrap();
        assert_eq!(a.host(), "relay.example");
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "\\PC{0,400}") {
            let _ = s.parse::<RelayAddress>();
        }

        #[test]
        fn printed_addresses_parse_back(
            a in 1u8..=254, b: u8, port in 1u16.., key: [u8; 32]
        ) {
            let addr = RelayAddress::new(&format!("10.{a}.{b}.1"), port, key).unwrap();
            let back: RelayAddress = addr.to_string().parse().unwrap();
            prop_assert_eq!(back, addr);
        }
    }
}
