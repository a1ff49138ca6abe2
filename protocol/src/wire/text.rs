//! Which characters untrusted text on the wire (the relay's close reason)
//! may hold: none that could hide, reorder or fake what a user reads.

/// Whether `c` is a character a peer's text must not carry: Unicode general
/// categories Cc (controls, newlines and tabs included), Cf (format: bidi
/// embeddings, overrides and isolates, zero-width spaces and joiners, the
/// byte-order mark, tag characters, …), Zl and Zp (line and paragraph
/// separators), Co (private use) and, as far as a fixed table allows, Cn
/// (noncharacters and the planes with nothing assigned), plus the Hangul
/// fillers, letters that print as nothing.
///
/// A fixed list of ranges rather than a Unicode database: Cc, Cf, Zl, Zp
/// and Co are complete as of Unicode 16; of Cn only the noncharacters and
/// the wholly unassigned ranges are listed, not every gap between assigned
/// characters.
pub fn is_non_printing(c: char) -> bool {
    let c = u32::from(c);
    // Noncharacters U+xFFFE and U+xFFFF of every plane (Cn).
    if c & 0xFFFE == 0xFFFE {
        return true;
    }
    matches!(
        c,
        // Cc
        0x00..=0x1F | 0x7F..=0x9F
        // Cf (U+2065, unassigned, sits inside the 2060..206F block)
        | 0xAD
        | 0x600..=0x605
        | 0x61C
        | 0x6DD
        | 0x70F
        | 0x890..=0x891
        | 0x8E2
        | 0x180E
        | 0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x206F
        | 0xFEFF
        | 0xFFF9..=0xFFFB
        | 0x110BD
        | 0x110CD
        | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A
        // Zl, Zp
        | 0x2028..=0x2029
        // Co
        | 0xE000..=0xF8FF
        | 0xF0000..=0x0010_FFFF
        // Cn: noncharacters of the BMP, planes 4 to 13, and plane 14 but
        // for its variation selectors (Mn); plane 14's tag characters (Cf)
        // fall in the first range.
        | 0xFDD0..=0xFDEF
        | 0x40000..=0xDFFFF
        | 0xE0000..=0xE00FF
        | 0xE01F0..=0xEFFFF
        // Hangul fillers: letters (Lo) that print as nothing.
        | 0x115F..=0x1160
        | 0x3164
        | 0xFFA0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_invisible_and_private_characters_are_refused() {
        for c in [
            '\0',
            '\t',
            '\n',
            '\r',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{9f}', // Cc
            '\u{ad}',
            '\u{61c}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}', // embeddings, overrides
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}', // isolates
            '\u{2060}',
            '\u{feff}',
            '\u{fff9}',
            '\u{e0001}',
            '\u{e0041}', // more Cf
            '\u{2028}',
            '\u{2029}', // Zl, Zp
            '\u{e000}',
            '\u{f8ff}',
            '\u{f0000}',
            '\u{10fffd}', // Co
            '\u{fdd0}',
            '\u{fffe}',
            '\u{ffff}',
            '\u{1fffe}',
            '\u{50000}', // Cn
            '\u{3164}',
            '\u{ffa0}', // fillers
        ] {
            assert!(is_non_printing(c), "U+{:04X} accepted", u32::from(c));
        }
    }

    #[test]
    fn ordinary_text_in_any_script_is_accepted() {
        let text = "relay full; try later — réessayez · 稍后再试 · حاول لاحقًا · ещё 🙂 \
                    \u{a0}\u{301}\u{fe0f}\u{e0100}\u{fffd}\u{30000}";
        for c in text.chars() {
            assert!(!is_non_printing(c), "U+{:04X} refused", u32::from(c));
        }
    }
}
