//! E.164 phone numbers: `+` then 8–15 digits, first digit not zero, no spaces.
//!
//! Only the syntax is checked, not whether a carrier has assigned the range: the seed's own
//! example `+15551234567` is valid.

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E164Error {
    #[error("must start with '+'")]
    MissingPlus,
    #[error("must have 8 to 15 digits after '+', found {0}")]
    WrongLength(usize),
    #[error("may contain only digits after '+'")]
    NotDigits,
    #[error("the country code cannot start with 0")]
    LeadingZero,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct E164(String);

impl E164 {
    pub const MIN_DIGITS: usize = 8;
    pub const MAX_DIGITS: usize = 15;

    pub fn parse(input: &str) -> Result<Self, E164Error> {
        let digits = input.strip_prefix('+').ok_or(E164Error::MissingPlus)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(E164Error::NotDigits);
        }
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&digits.len()) {
            return Err(E164Error::WrongLength(digits.len()));
        }
        if digits.starts_with('0') {
            return Err(E164Error::LeadingZero);
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_seed_example_is_valid() {
        assert_eq!(
            E164::parse("+15551234567").unwrap().as_str(),
            "+15551234567"
        );
    }

    #[test]
    fn rejects_malformed_numbers() {
        assert_eq!(E164::parse("15551234567"), Err(E164Error::MissingPlus));
        assert_eq!(E164::parse("+1 555 123 4567"), Err(E164Error::NotDigits));
        assert_eq!(E164::parse("+1234567"), Err(E164Error::WrongLength(7)));
        assert_eq!(
            E164::parse("+1234567890123456"),
            Err(E164Error::WrongLength(16))
        );
        assert_eq!(E164::parse("+05551234567"), Err(E164Error::LeadingZero));
        assert_eq!(E164::parse("+١٥٥٥١٢٣٤٥٦٧"), Err(E164Error::NotDigits));
        assert_eq!(E164::parse(""), Err(E164Error::MissingPlus));
    }

    #[test]
    fn accepts_the_length_bounds() {
        assert!(E164::parse("+12345678").is_ok());
        assert!(E164::parse("+123456789012345").is_ok());
    }

    proptest! {
        #[test]
        fn every_valid_shape_parses(first in 1u8..=9, rest in "[0-9]{7,14}") {
            let s = format!("+{first}{rest}");
            let parsed = E164::parse(&s).unwrap();
            prop_assert_eq!(parsed.as_str(), s.as_str());
        }

        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = E164::parse(&s);
        }
    }
}
