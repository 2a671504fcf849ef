//! What a consumer's key, name and note may be, and its generated secrets: the admin page and
//! the command line check the same rules (the note's length and the rest of its form checks are
//! `web::admin::consumers`'). Text that breaks them (an LMS's, or an old row's) is shown through
//! [`escape_hidden`], which pages use (the `visible` filter) for the user's id, name and roles,
//! the launch panel, grade and admin pages, as `LtiUser::display_name` does; course and link
//! titles are shown as sent.

use std::borrow::Cow;

/// Most characters in a consumer's name.
pub const MAX_NAME: usize = 200;

/// Most characters in a consumer key.
pub const MAX_KEY: usize = 255;

/// True when `key` is a valid consumer key: 1 to [`MAX_KEY`] characters of `A-Za-z0-9._:-`.
pub fn is_valid_key(key: &str) -> bool {
    (1..=MAX_KEY).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// True for characters a consumer's name or note may not hold: control characters (escape
/// sequences would reach the terminal of whoever runs `consumer list`, tabs break its columns),
/// text-direction and invisible format characters (they make one name look like another),
/// characters that render blank (fillers, the blank Braille pattern), and private-use and
/// noncharacter code points. The joiners, variation selectors and tag characters that real
/// writing and emoji need (Persian, Sinhala, 👩‍🏫, 🏛️, flags) are allowed, but see
/// [`is_printable_label`].
pub fn is_unsafe_in_label(c: char) -> bool {
    let cp = u32::from(c);
    c.is_control()
        || matches!(cp,
            0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x0600..=0x0605 | 0x06DD | 0x070F | 0x08E2 | 0x200B | 0x200E | 0x200F
            | 0x2028..=0x202E | 0x2060..=0x206F | 0x2800 | 0x3164 | 0xFEFF | 0xFFA0
            | 0xFFF0..=0xFFFC | 0x110BD | 0x110CD | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
            | 0xE0000..=0xE001F | 0xE0080..=0xE00FF | 0xE01F0..=0xE0FFF)
        // Private use.
        || matches!(cp, 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
        // Noncharacters.
        || matches!(cp, 0xFDD0..=0xFDEF)
        || cp & 0xFFFE == 0xFFFE
}

/// True for the characters [`escape_hidden`] shows as escapes: the [`is_unsafe_in_label`] ones
/// but the marks of real writing a label may not hold and a page shows all the same (Arabic and
/// Syriac prepended marks, Mongolian variation selectors and vowel separator, the combining
/// grapheme joiner, private-use characters a campus font draws, the object replacement box).
pub(crate) fn is_hidden(c: char) -> bool {
    let cp = u32::from(c);
    is_unsafe_in_label(c)
        && (!matches!(cp,
            0x034F | 0x0600..=0x0605 | 0x06DD | 0x070F | 0x08E2 | 0x180B..=0x180F | 0xFFFC
            | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
            || cp & 0xFFFE == 0xFFFE)
}

/// `text` with each character that turns text around or shows nothing written as its escape
/// (`\u{202e}`), so that it shows; with `lines`, line breaks and tabs stay.
pub fn escape_hidden(text: &str, lines: bool) -> Cow<'_, str> {
    let hidden = |c: char| is_hidden(c) && !(lines && matches!(c, '\n' | '\r' | '\t'));
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// True for the characters that shape their neighbours but show nothing by themselves: joiners,
/// variation selectors, tag characters and the general combining marks (accents).
fn is_modifier(c: char) -> bool {
    matches!(u32::from(c),
        0x200C | 0x200D | 0xFE00..=0xFE0F | 0xE0020..=0xE007F | 0xE0100..=0xE01EF
        | 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// True when `text` holds no [`is_unsafe_in_label`] character and, unless empty, something
/// visible (not only spaces and modifiers); a note (`lines`) may also hold line breaks and tabs.
pub fn is_printable_label(text: &str, lines: bool) -> bool {
    let allowed = |c: char| !is_unsafe_in_label(c) || (lines && matches!(c, '\n' | '\r' | '\t'));
    let visible = |c: char| !c.is_whitespace() && !is_modifier(c);
    text.chars().all(allowed) && (text.is_empty() || text.chars().any(visible))
}

/// What is wrong with a consumer's name (trimmed; empty means "use the key"), worded to follow
/// "The name " (the admin page) or "--name " (the command line).
pub fn name_problem(name: &str) -> Option<String> {
    if name.chars().count() > MAX_NAME {
        Some(format!("is too long: use at most {MAX_NAME} characters"))
    } else if !is_printable_label(name, false) {
        Some("must not contain control characters or invisible ones".into())
    } else {
        None
    }
}

/// Why Open edX could not use this key or secret, if it could not: its LTI passports
/// (`id:key:secret`) are split at `:`. Any other LMS can.
pub fn passport_note(key: &str, secret: &str) -> Option<String> {
    let what = match (key.contains(':'), secret.contains(':')) {
        (false, false) => return None,
        (true, false) => "key",
        (false, true) => "secret",
        (true, true) => "key and secret",
    };
    Some(format!(
        "Open edX cannot use this {what}: its LTI passports (id:key:secret) are split at ':'"
    ))
}

/// A new random secret: 40 characters of `A-Za-z0-9-_` (about 238 bits), the first a letter or
/// digit (a leading `-` reads as an option to command lines, ours included).
pub fn generate_secret() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rngs::OsRng;
    (0..40)
        .map(|i| {
            let choices = if i == 0 { 62 } else { ALPHABET.len() };
            ALPHABET[rng.gen_range(0..choices)] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{escape_hidden, generate_secret, is_printable_label};

    #[test]
    fn hidden_characters_are_shown_as_escapes() {
        assert_eq!(escape_hidden("ok-nf\u{202e}c", false), "ok-nf\\u{202e}c");
        assert_eq!(
            escape_hidden("\u{feff}x\u{200b}y\0", false),
            "\\u{feff}x\\u{200b}y\\u{0}"
        );
        assert_eq!(escape_hidden("a\nb\tc", false), "a\\nb\\tc");
        assert_eq!(escape_hidden("a\nb\tc", true), "a\nb\tc");
        // Real writing stays, marks a label may not hold included.
        for real in [
            "جامعة القاهرة 👩\u{200d}🏫",
            "سورة الفاتحة \u{6dd}١",
            "\u{600}١٢٣",
            "ᠡ\u{180b}ᠳ ᠨ\u{180e}ᠠ",
            "陳\u{e05e}明",
            "Figure \u{fffc} caption",
        ] {
            assert!(
                matches!(escape_hidden(real, false), std::borrow::Cow::Borrowed(s) if s == real)
            );
        }
        assert_eq!(escape_hidden("x\u{10fffe}", false), "x\\u{10fffe}");
    }

    #[test]
    fn generated_secrets_are_long_random_and_never_start_with_a_hyphen() {
        let secrets: Vec<String> = (0..2000).map(|_| generate_secret()).collect();
        for s in &secrets {
            assert_eq!(s.len(), 40);
            assert!(s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert!(s.as_bytes()[0].is_ascii_alphanumeric(), "{s}");
        }
        // Hyphens do appear further on (1 in 32 characters), and no two secrets are alike.
        assert!(secrets.iter().any(|s| s[1..].contains('-')));
        let distinct: std::collections::HashSet<&String> = secrets.iter().collect();
        assert_eq!(distinct.len(), secrets.len());
    }

    #[test]
    fn labels_keep_real_names_and_refuse_what_hides_or_moves_text() {
        for ok in [
            "Université de Montréal",
            "東京大学 Moodle",
            "جامعة القاهرة",
            "Canvas – production (EU) 🎓",
            "Cours\u{202f}: maths",
            "විශ්වවිද්\u{200d}යාලය",
            "دانشگاه\u{200c}ها",
            "👩\u{200d}🏫 Teachers",
            "🏛\u{fe0f} Faculty",
            "葛\u{e0100}飾区",
            "🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f} Glasgow",
            "Unive\u{301}rsite\u{301} (decomposed accents)",
        ] {
            assert!(is_printable_label(ok, false), "{ok}");
        }
        for bad in [
            "a\u{1b}[2J",
            "tab\there",
            "rtl\u{202e}olleh",
            "zero\u{200b}width",
            "\u{3164}",
            "soft\u{ad}hyphen",
            "\u{200d}\u{fe0f}",
            "\u{e0041}\u{e007f}",
            " \u{200c} ",
            "lang\u{e0001}",
            "private\u{e000}",
            "nonchar\u{fdd0}",
            "nonchar\u{1fffe}",
            "\u{301}",
            " \u{301}\u{20dd} ",
        ] {
            assert!(!is_printable_label(bad, false), "{bad:?}");
        }
        assert!(is_printable_label("two\r\nlines\tand a tab", true));
        assert!(!is_printable_label("bell\u{7}", true));
    }
}
