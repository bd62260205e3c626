//! Email addresses as the service stores them: an environment's notification address, a staff
//! login. The check is deliberately modest (one `@`, a non-empty local part, a dotted-or-local
//! domain, no whitespace or control characters): the mail server is the real judge, and a
//! too-clever regex refuses real addresses.

use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid email address")]
pub struct EmailError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let s = input.trim();
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError)?;
        if local.is_empty() || domain.is_empty() || domain.starts_with('.') || domain.ends_with('.')
        {
            return Err(EmailError);
        }
        if s.contains(['<', '>', ',', ';', '"']) {
            return Err(EmailError);
        }
        // Logins are compared case-insensitively; store the canonical lower-case form.
        Ok(Self(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses() {
        assert_eq!(
            EmailAddress::parse(" Ops@Example.com ").unwrap().as_str(),
            "ops@example.com"
        );
        assert!(EmailAddress::parse("support@localhost").is_ok());
    }

    #[test]
    fn refuses_what_would_break_a_header() {
        for bad in [
            "",
            "no-at-sign",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@b.com\r\nBcc: x@y",
            "<a@b.com>",
            "a@.com",
        ] {
            assert_eq!(EmailAddress::parse(bad), Err(EmailError), "{bad:?}");
        }
    }
}
