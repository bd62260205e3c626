//! Free text written by people: the customer's reason and the staff's notes.
//!
//! Rules: trimmed, then counted in *characters* (Unicode scalar values, not bytes); control
//! characters other than newline and tab are refused. Carriage returns are refused too:
//! browsers submit `\r\n` in textareas, so the console normalises line endings *before* parsing.

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must be at least {min} characters (got {actual})")]
    TooShort { min: usize, actual: usize },
    #[error("must be at most {max} characters (got {actual})")]
    TooLong { max: usize, actual: usize },
    #[error("must not contain control characters (found U+{0:04X})")]
    ControlCharacter(u32),
}

fn parse_text(input: &str, min: usize, max: usize) -> Result<String, TextError> {
    let trimmed = input.trim();
    if let Some(c) = trimmed
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(TextError::ControlCharacter(c as u32));
    }
    let actual = trimmed.chars().count();
    if actual < min {
        return Err(TextError::TooShort { min, actual });
    }
    if actual > max {
        return Err(TextError::TooLong { max, actual });
    }
    Ok(trimmed.to_owned())
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const MIN_CHARS: usize = $min;
            pub const MAX_CHARS: usize = $max;

            pub fn parse(input: &str) -> Result<Self, TextError> {
                parse_text(input, Self::MIN_CHARS, Self::MAX_CHARS).map(Self)
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
    /// Why the customer no longer needs the number: 10–500 characters after trimming.
    Reason, 10, 500
);
text_type!(
    /// The staff note on a rejection, sent to the customer: 10–500 characters.
    RejectionNote, 10, 500
);
text_type!(
    /// The optional staff note on an approval, sent to the customer: 1–500 characters when given.
    ApprovalNote, 1, 500
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
    fn rejection_notes_follow_the_same_rules() {
        assert!(RejectionNote::parse("too short").is_err());
        assert!(RejectionNote::parse("Number is still routed to your IVR.").is_ok());
        assert!(ApprovalNote::parse("ok").is_ok());
        assert!(ApprovalNote::parse("   ").is_err());
    }

    proptest! {
        #[test]
        fn parsed_reasons_satisfy_every_rule(s in "\\PC{0,600}") {
            if let Ok(r) = Reason::parse(&s) {
                let n = r.as_str().chars().count();
                prop_assert!((10..=500).contains(&n));
                prop_assert_eq!(r.as_str(), r.as_str().trim());
                prop_assert!(!r.as_str().chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
            }
        }

        #[test]
        fn any_clean_text_of_valid_length_is_accepted(s in "[a-zA-Z0-9 éü号📞]{10,500}") {
            let trimmed_len = s.trim().chars().count();
            prop_assert_eq!(Reason::parse(&s).is_ok(), trimmed_len >= 10);
        }
    }
}
