//! Addresses in logs are redacted unless the operator opts in
//! (`--log-addresses`), in the spirit of arti's `safelog`.

use std::fmt;
use std::net::SocketAddr;

pub(crate) struct Redacted {
    addr: SocketAddr,
    show: bool,
}

impl Redacted {
    pub(crate) fn new(addr: SocketAddr, show: bool) -> Self {
        Self { addr, show }
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.show {
            write!(f, "{}", self.addr)
        } else {
            f.write_str("[redacted]")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_hidden_by_default() {
        let a: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        assert_eq!(Redacted::new(a, false).to_string(), "[redacted]");
        assert_eq!(Redacted::new(a, true).to_string(), "192.0.2.7:4000");
    }
}
