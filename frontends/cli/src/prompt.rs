//! Questions on the terminal: the passphrase, and yes or no.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

use zeroize::Zeroizing;

use crate::fail::Fail;

/// Reads the passphrase from the file's first line, else asks on the
/// terminal (twice if `confirm`, and then refuses an empty one).
pub(crate) fn read_passphrase(
    file: Option<&Path>,
    confirm: bool,
) -> Result<Zeroizing<String>, Fail> {
    if let Some(f) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f)
                .map_err(|e| Fail::Usage(format!("cannot read {}: {e}", f.display())))?,
        );
        return Ok(Zeroizing::new(text.lines().next().unwrap_or("").to_owned()));
    }
    if !std::io::stdin().is_terminal() {
        return Err(Fail::Usage(
            "no terminal to ask for a passphrase: use --passphrase-file FILE (or, for init, --no-passphrase)".into(),
        ));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Passphrase: ").map_err(|e| Fail::Other(e.to_string()))?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Passphrase again: ")
                .map_err(|e| Fail::Other(e.to_string()))?,
        );
        if *again != *first {
            return Err(Fail::Usage(
                "the passphrases differ; nothing was created".into(),
            ));
        }
        if first.is_empty() {
            return Err(Fail::Usage(
                "an empty passphrase: use --no-passphrase if you mean it".into(),
            ));
        }
    }
    Ok(first)
}

/// Asks a yes/no question on the terminal; no terminal means no.
pub(crate) fn ask_yes(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok() && matches!(line.trim(), "y" | "Y" | "yes")
}
