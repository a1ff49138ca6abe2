//! Failures and their exit codes (documented in `anonctl --help`).

use std::process::ExitCode;

use anonchat_ipc::client::ConnectError;
use jsonrpsee::core::ClientError;

/// Why a command failed; each kind has its own exit code.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The daemon answered with an error (code, message, data).
    Daemon(i32, String, Option<serde_json::Value>),
    /// A usage error: bad arguments or input (exit code 2).
    Usage(String),
    /// No daemon answers, or the connection was lost (exit code 3).
    Unreachable(String),
    /// The daemon speaks another API version (exit code 4).
    Version(String),
    /// Something did not happen in time (exit code 5).
    Timeout(String),
    /// Any other failure (exit code 1).
    Other(String),
}

impl From<ConnectError> for Fail {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Version { .. } => Fail::Version(e.to_string()),
            ConnectError::Rpc(inner) => inner.into(),
            ConnectError::Unreachable { .. } => Fail::Unreachable(e.to_string()),
            ConnectError::Untrusted { .. } => Fail::Other(e.to_string()),
        }
    }
}

impl From<ClientError> for Fail {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Call(obj) => Fail::Daemon(
                obj.code(),
                obj.message().to_owned(),
                obj.data().and_then(|d| serde_json::from_str(d.get()).ok()),
            ),
            ClientError::RequestTimeout => {
                Fail::Timeout("the daemon did not answer in time".into())
            }
            other => Fail::Unreachable(format!("lost the connection to the daemon: {other}")),
        }
    }
}

impl Fail {
    fn code(&self) -> u8 {
        match self {
            Fail::Daemon(..) | Fail::Other(_) => 1,
            Fail::Usage(_) => 2,
            Fail::Unreachable(_) => 3,
            Fail::Version(_) => 4,
            Fail::Timeout(_) => 5,
        }
    }

    /// The message, without the exit code.
    pub(crate) fn message_text(&self) -> &str {
        self.message()
    }

    fn message(&self) -> &str {
        match self {
            Fail::Daemon(_, m, _)
            | Fail::Usage(m)
            | Fail::Unreachable(m)
            | Fail::Version(m)
            | Fail::Timeout(m)
            | Fail::Other(m) => m,
        }
    }

    /// Prints the failure (as JSON on stdout with --json, else on stderr)
    /// and returns the exit code.
    pub(crate) fn report(self, json: bool) -> ExitCode {
        let code = self.code();
        if json {
            let (rpc_code, data) = match &self {
                Fail::Daemon(c, _, data) => (Some(*c), data.clone()),
                _ => (None, None),
            };
            let mut error = serde_json::json!({"exit_code": code, "rpc_code": rpc_code, "message": self.message()});
            if let Some(data) = data {
                error["data"] = data;
            }
            println!("{}", serde_json::json!({ "error": error }));
        } else {
            // The message may quote the daemon, the relay or a contact.
            eprintln!("anonctl: {}", crate::show::safe(self.message()));
        }
        ExitCode::from(code)
    }
}
