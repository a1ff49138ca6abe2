//! Identity files: the signed bundle, base64 between BEGIN/END lines, so it
//! can be sent as a file or pasted into a chat.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{IdentityError, PublicIdentity};

/// The line that opens an identity file.
pub const BEGIN: &str = "-----BEGIN ANONCHAT IDENTITY-----";
/// The line that closes an identity file.
pub const END: &str = "-----END ANONCHAT IDENTITY-----";
/// Largest identity file accepted, in bytes.
pub const MAX_FILE_LEN: usize = 8192;
const LINE: usize = 64;

impl PublicIdentity {
    /// The identity file's text. Public data only.
    pub fn to_armored(&self) -> String {
        let b64 = STANDARD.encode(self.signed_bytes());
        let mut out = String::with_capacity(b64.len() + b64.len() / LINE + 80);
        out.push_str(BEGIN);
        out.push('\n');
        // Base64 is ASCII: every byte is one character.
        for chunk in b64.as_bytes().chunks(LINE) {
            out.extend(chunk.iter().copied().map(char::from));
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
        out
    }

    /// Parses an identity file strictly: armor, base64, every field, and the
    /// signature. Whitespace around the armor and CRLF line ends are
    /// tolerated; anything else is an error with its own reason.
    pub fn from_armored(text: &str) -> Result<Self, IdentityError> {
        if text.len() > MAX_FILE_LEN {
            return Err(IdentityError::TooLarge);
        }
        let text = text.trim_start_matches('\u{feff}');
        let mut lines = text.lines().map(str::trim).skip_while(|l| l.is_empty());
        if lines.next() != Some(BEGIN) {
            return Err(IdentityError::NotArmored);
        }
        let mut body = String::new();
        let mut ended = false;
        for (n, line) in lines.by_ref().enumerate() {
            if line == END {
                ended = true;
                break;
            }
            if !line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
            {
                return Err(IdentityError::Base64(n + 2));
            }
            body.push_str(line);
        }
        if !ended {
            return Err(IdentityError::MissingEnd);
        }
        if lines.any(|l| !l.is_empty()) {
            return Err(IdentityError::TextAfterEnd);
        }
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| IdentityError::Base64(0))?;
        Self::from_signed_bytes(&bytes)
    }
}
