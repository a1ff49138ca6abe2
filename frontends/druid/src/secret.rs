//! The passphrase, kept out of the window's `Data`.
//!
//! Druid clones the app state freely and compares it with `Data::same`; a
//! passphrase in a `String` field would be copied into every clone and
//! printed by every `Debug`. Instead the state holds a [`Secret`]: a shared
//! handle to one zeroized buffer, compared by pointer, whose `Debug` shows
//! nothing. The buffer is allocated once with room for
//! [`Secret::MAX_BYTES`] and never grows, so typing never leaves a freed
//! copy behind; [`Secret::take`] hands the text over as a [`Passphrase`]
//! that zeroizes itself when dropped.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use druid::Data;
use zeroize::Zeroizing;

/// The bullet shown for each character.
pub const BULLET: char = '•';

/// What a masked field shows for `chars` characters: bullets only.
pub fn masked(chars: usize) -> String {
    std::iter::repeat_n(BULLET, chars).collect()
}

/// A passphrase being typed: one buffer shared by every clone.
#[derive(Clone)]
pub struct Secret(Arc<Mutex<Zeroizing<String>>>);

impl Secret {
    /// The longest passphrase accepted, in bytes (the buffer never grows).
    pub const MAX_BYTES: usize = 1024;

    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Zeroizing::new(String::with_capacity(
            Self::MAX_BYTES,
        )))))
    }

    fn buf(&self) -> MutexGuard<'_, Zeroizing<String>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends typed text; false (and nothing appended) if it would not fit.
    pub fn push_str(&self, s: &str) -> bool {
        let mut b = self.buf();
        if b.len() + s.len() > Self::MAX_BYTES {
            return false;
        }
        b.push_str(s);
        true
    }

    /// Deletes the last character.
    pub fn backspace(&self) {
        self.buf().pop();
    }

    /// The number of characters, for the bullets.
    pub fn chars(&self) -> usize {
        self.buf().chars().count()
    }

    /// Moves the passphrase out, leaving the field empty (with a fresh
    /// buffer of full capacity).
    pub fn take(&self) -> Passphrase {
        let mut b = self.buf();
        let fresh = Zeroizing::new(String::with_capacity(Self::MAX_BYTES));
        Passphrase(std::mem::replace(&mut *b, fresh))
    }

    /// Wipes the field.
    pub fn clear(&self) {
        drop(self.take());
    }
}

impl Default for Secret {
    fn default() -> Self {
        Self::new()
    }
}

impl Data for Secret {
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A passphrase on its way to the daemon; zeroized when dropped, and its
/// `Debug` shows nothing.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// The text, for the one call that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mutation: `masked` returning the text (or `BULLET` set to a letter)
    /// fails here.
    #[test]
    fn the_mask_is_one_bullet_per_character_and_nothing_else() {
        let s = Secret::new();
        assert!(s.push_str("hunter2 ü"));
        let shown = masked(s.chars());
        assert_eq!(shown.chars().count(), 9);
        assert!(shown.chars().all(|c| c == BULLET), "{shown}");
        s.backspace();
        assert_eq!(s.chars(), 8);
    }

    /// Mutation: deriving `Debug` on `Secret` or `Passphrase` fails here.
    #[test]
    fn debug_never_shows_the_passphrase() {
        let s = Secret::new();
        s.push_str("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        let p = s.take();
        assert_eq!(format!("{p:?}"), "Passphrase(..)");
        assert_eq!(p.expose(), "hunter2");
        assert_eq!(s.chars(), 0, "take empties the field");
    }

    /// Clones share one buffer (the state's copies hold no passphrase of
    /// their own) and compare equal by pointer only. Mutation: a `same`
    /// that compares contents, or a `Clone` that copies the text, fails.
    #[test]
    fn clones_share_one_buffer() {
        let a = Secret::new();
        let b = a.clone();
        a.push_str("x");
        assert_eq!(b.chars(), 1);
        assert!(a.same(&b));
        assert!(!a.same(&Secret::new()));
        assert!(
            !Secret::new().same(&Secret::new()),
            "same contents, two buffers"
        );
    }

    /// The buffer never reallocates (no freed copy left behind): typing
    /// beyond the capacity is refused. Mutation: dropping the length check
    /// fails here.
    #[test]
    fn the_buffer_never_grows() {
        let s = Secret::new();
        let chunk = "a".repeat(Secret::MAX_BYTES);
        assert!(s.push_str(&chunk));
        assert!(!s.push_str("b"));
        assert_eq!(s.chars(), Secret::MAX_BYTES);
    }
}
