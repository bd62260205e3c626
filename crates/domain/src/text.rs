//! Free text written by people: the customer's reason and the staff's notes.
//!
//! Rules, checked in this order:
//! 1. Trimmed (Unicode white space at both ends), then everything else is counted in
//!    *characters* (Unicode scalar values, not bytes).
//! 2. Control characters other than newline and tab are refused. Carriage returns are refused
//!    too: browsers submit `\r\n` in textareas, so the console normalises line endings
//!    *before* parsing.
//! 3. Bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069) are refused: they
//!    make text shown to staff read differently from what was written ("Trojan Source").
//! 4. The length must be within the type's bounds.
//! 5. At least a minimum number of characters must be *visible*: not white space and not a
//!    format character (Unicode general category Cf: U+200B zero-width space, U+FEFF, U+200E
//!    left-to-right mark, soft hyphen, …), so ten zero-width spaces are not a reason.

use std::fmt;

use serde::{Serialize, Serializer};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must be at least {min} characters (got {actual})")]
    TooShort { min: usize, actual: usize },
    #[error("must be at most {max} characters (got {actual})")]
    TooLong { max: usize, actual: usize },
    #[error("must not contain control characters (found U+{0:04X})")]
    ControlCharacter(u32),
    #[error("must not contain bidirectional override or isolate characters (found U+{0:04X})")]
    BidiControl(u32),
    #[error(
        "must contain at least {min} visible {noun} (got {actual}): spaces and invisible formatting characters such as U+200B do not count",
        noun = characters(.min)
    )]
    TooFewVisible { min: usize, actual: usize },
}

fn characters(n: &usize) -> &'static str {
    if *n == 1 { "character" } else { "characters" }
}

/// U+202A–U+202E (embeddings and overrides) and U+2066–U+2069 (isolates). The marks U+200E,
/// U+200F and U+061C change no order on their own; they are format characters and so merely
/// do not count as visible.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Something a reader sees: not white space, not a format character (category Cf), and not
/// a control character.
fn is_visible(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(
            c.general_category(),
            GeneralCategory::Format | GeneralCategory::Control
        )
}

fn parse_text(
    input: &str,
    min: usize,
    max: usize,
    min_visible: usize,
) -> Result<String, TextError> {
    let trimmed = input.trim();
    if let Some(c) = trimmed
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(TextError::ControlCharacter(c as u32));
    }
    if let Some(c) = trimmed.chars().find(|c| is_bidi_control(*c)) {
        return Err(TextError::BidiControl(c as u32));
    }
    let actual = trimmed.chars().count();
    if actual < min {
        return Err(TextError::TooShort { min, actual });
    }
    if actual > max {
        return Err(TextError::TooLong { max, actual });
    }
    let visible = trimmed.chars().filter(|c| is_visible(*c)).count();
    if visible < min_visible {
        return Err(TextError::TooFewVisible {
            min: min_visible,
            actual: visible,
        });
    }
    Ok(trimmed.to_owned())
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr, $min_visible:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const MIN_CHARS: usize = $min;
            pub const MAX_CHARS: usize = $max;
            /// How many of the characters must be visible (see the module's rules).
            pub const MIN_VISIBLE: usize = $min_visible;

            pub fn parse(input: &str) -> Result<Self, TextError> {
                parse_text(input, Self::MIN_CHARS, Self::MAX_CHARS, Self::MIN_VISIBLE).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

text_type!(
    /// Why the customer no longer needs the number: 10–500 characters after trimming, at
    /// least 10 of them visible.
    Reason, 10, 500, 10
);
text_type!(
    /// The staff note on a rejection, sent to the customer: 10–500 characters, at least 10
    /// of them visible.
    RejectionNote, 10, 500, 10
);
text_type!(
    /// The optional staff note on an approval, sent to the customer: 1–500 characters when
    /// given, at least one of them visible.
    ApprovalNote, 1, 500, 1
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        // 10 characters, 30 bytes.
        let ten_cjk = "号码不再需要了谢谢你";
        assert_eq!((ten_cjk.chars().count(), ten_cjk.len()), (10, 30));
        assert!(Reason::parse(ten_cjk).is_ok());
        let nine = "ééééééééé";
        assert_eq!(
            Reason::parse(nine),
            Err(TextError::TooShort { min: 10, actual: 9 })
        );
        let five_hundred_emoji = "📞".repeat(500);
        assert!(Reason::parse(&five_hundred_emoji).is_ok());
        assert_eq!(
            Reason::parse(&"📞".repeat(501)),
            Err(TextError::TooLong {
                max: 500,
                actual: 501
            })
        );
    }

    #[test]
    fn padding_is_trimmed_before_counting() {
        assert_eq!(
            Reason::parse("   short    "),
            Err(TextError::TooShort { min: 10, actual: 5 })
        );
        let padded = format!("  {}  ", "a".repeat(500));
        assert_eq!(Reason::parse(&padded).unwrap().as_str().len(), 500);
        assert_eq!(
            Reason::parse(&format!("\n{}\t", "a".repeat(9))),
            Err(TextError::TooShort { min: 10, actual: 9 })
        );
    }

    #[test]
    fn control_characters_other_than_newline_and_tab_are_refused() {
        assert!(Reason::parse("line one\nline\ttwo").is_ok());
        assert_eq!(
            Reason::parse("no longer\u{0} needed"),
            Err(TextError::ControlCharacter(0))
        );
        assert_eq!(
            Reason::parse("no longer\u{1b}[31m needed"),
            Err(TextError::ControlCharacter(0x1b))
        );
        assert_eq!(
            Reason::parse("no longer\r\nneeded"),
            Err(TextError::ControlCharacter(0x0d))
        );
        assert_eq!(
            Reason::parse("no longer\u{85}needed"),
            Err(TextError::ControlCharacter(0x85))
        );
    }

    #[test]
    fn bidirectional_overrides_and_isolates_are_refused() {
        // "Trojan Source": a right-to-left override makes "…exe.pdf" read as "…fdp.exe".
        assert_eq!(
            Reason::parse("Please release invoice\u{202E}fdp.exe quickly"),
            Err(TextError::BidiControl(0x202E))
        );
        for c in ('\u{202A}'..='\u{202E}').chain('\u{2066}'..='\u{2069}') {
            let text = format!("We no longer {c}need this number.");
            assert_eq!(
                Reason::parse(&text),
                Err(TextError::BidiControl(c as u32)),
                "U+{:04X}",
                c as u32
            );
        }
        // The neighbours are not overrides: marks are allowed (and simply not visible).
        assert!(Reason::parse("We no longer \u{200E}need this number.").is_ok());
        assert!(Reason::parse("نحن لا نحتاج هذا الرقم بعد الآن").is_ok());
        assert_eq!(
            TextError::BidiControl(0x202E).to_string(),
            "must not contain bidirectional override or isolate characters (found U+202E)"
        );
    }

    #[test]
    fn zero_width_and_format_characters_are_not_visible() {
        assert_eq!(
            Reason::parse(&"\u{200B}".repeat(10)),
            Err(TextError::TooFewVisible { min: 10, actual: 0 })
        );
        assert_eq!(
            Reason::parse(&"\u{FEFF}\u{200D}\u{2060}\u{00AD}\u{200E}".repeat(4)),
            Err(TextError::TooFewVisible { min: 10, actual: 0 })
        );
        assert_eq!(
            Reason::parse("abc\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}\u{200B}"),
            Err(TextError::TooFewVisible { min: 10, actual: 3 })
        );
        // Inner spaces (ordinary and no-break) do not count either.
        assert_eq!(
            Reason::parse("a b c d e f g h i"),
            Err(TextError::TooFewVisible { min: 10, actual: 9 })
        );
        assert_eq!(
            Reason::parse("a\u{A0}b\u{3000}c d e f g h i"),
            Err(TextError::TooFewVisible { min: 10, actual: 9 })
        );
        // Ten visible characters among invisible ones are enough; the text is kept as written.
        let spaced = "a\u{200B}".repeat(10);
        assert_eq!(Reason::parse(&spaced).unwrap().as_str(), spaced);
        assert_eq!(
            TextError::TooFewVisible { min: 10, actual: 0 }.to_string(),
            "must contain at least 10 visible characters (got 0): spaces and invisible \
             formatting characters such as U+200B do not count"
        );
    }

    #[test]
    fn an_approval_note_needs_one_visible_character() {
        assert!(ApprovalNote::parse("ok").is_ok());
        assert!(ApprovalNote::parse("✓").is_ok());
        assert_eq!(
            ApprovalNote::parse("\u{200B}"),
            Err(TextError::TooFewVisible { min: 1, actual: 0 })
        );
        assert_eq!(
            TextError::TooFewVisible { min: 1, actual: 0 }.to_string(),
            "must contain at least 1 visible character (got 0): spaces and invisible \
             formatting characters such as U+200B do not count"
        );
        assert_eq!(
            ApprovalNote::parse("fine \u{2067}"),
            Err(TextError::BidiControl(0x2067))
        );
    }

    #[test]
    fn rejection_notes_follow_the_same_rules() {
        assert!(RejectionNote::parse("too short").is_err());
        assert!(RejectionNote::parse("Number is still routed to your IVR.").is_ok());
        assert!(ApprovalNote::parse("ok").is_ok());
        assert!(ApprovalNote::parse("   ").is_err());
    }

    /// Characters that the rules single out, mixed into generated text.
    const SPECIAL: &[char] = &[
        '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{FEFF}', '\u{2060}',
        '\u{00AD}', '\u{061C}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}',
        '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', ' ', '\u{A0}', '\u{3000}', '\n', '\t',
        '\r', '\u{0}', '\u{7F}', '\u{85}', 'a', 'é', '号', '📞',
    ];

    fn any_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![any::<char>(), proptest::sample::select(SPECIAL)],
            0..600,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn invisible() -> impl Strategy<Value = char> {
        proptest::sample::select(
            &[
                '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{2060}', '\u{200E}', ' ', '\u{A0}',
            ][..],
        )
    }

    proptest! {
        #[test]
        fn parsed_text_satisfies_every_rule(s in any_text()) {
            if let Ok(r) = Reason::parse(&s) {
                let text = r.as_str();
                prop_assert!((10..=500).contains(&text.chars().count()));
                prop_assert_eq!(text, text.trim());
                prop_assert!(!text.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
                prop_assert!(!text.chars().any(is_bidi_control));
                prop_assert!(text.chars().filter(|c| is_visible(*c)).count() >= 10);
            }
            if let Ok(n) = ApprovalNote::parse(&s) {
                prop_assert!(n.as_str().chars().any(is_visible));
                prop_assert!(!n.as_str().chars().any(is_bidi_control));
            }
        }

        #[test]
        fn a_bidi_control_anywhere_is_refused(
            before in "[a-zA-Z0-9 éü号📞]{0,200}",
            after in "[a-zA-Z0-9 éü号📞]{0,200}",
            c in proptest::sample::select(&['\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'][..]),
        ) {
            let text = format!("{before}{c}{after}");
            prop_assert_eq!(Reason::parse(&text), Err(TextError::BidiControl(c as u32)));
            prop_assert_eq!(RejectionNote::parse(&text), Err(TextError::BidiControl(c as u32)));
            prop_assert_eq!(ApprovalNote::parse(&text), Err(TextError::BidiControl(c as u32)));
        }

        /// Invisible characters pad the length but never the visible count.
        #[test]
        fn only_visible_characters_count_towards_the_minimum(
            visible in "[a-zA-Z0-9éü号📞]{0,20}",
            padding in proptest::collection::vec(invisible(), 0..30),
        ) {
            let mut text: String = visible.clone();
            text.extend(padding.iter());
            let text = format!("x{text}x");
            let shown = visible.chars().count() + 2;
            let accepted = Reason::parse(&text).is_ok();
            prop_assert_eq!(accepted, shown >= 10, "{:?}", text);
        }

        #[test]
        fn any_clean_text_of_valid_length_is_accepted(s in "[a-zA-Z0-9 éü号📞]{10,500}") {
            let trimmed_len = s.trim().chars().count();
            let visible = s.chars().filter(|c| *c != ' ').count();
            prop_assert_eq!(Reason::parse(&s).is_ok(), trimmed_len >= 10 && visible >= 10);
        }
    }
}
