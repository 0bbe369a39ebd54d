//! Identifiers of the domain: members, buildings, devices, series, users.
//!
//! Text identifiers are validated once, at the boundary (MQTT topic, URL, config), so
//! that the rest of the code can trust them; this module must never accept an
//! identifier that could not be part of an MQTT topic level or a URL path segment.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: expected 1 to 64 characters among a-z A-Z 0-9 - _ .")]
pub struct InvalidId {
    /// What was being parsed (`device id`, `building id`, …).
    pub kind: &'static str,
    /// The rejected text (truncated to 80 characters).
    pub value: String,
}

fn validate(kind: &'static str, s: &str) -> Result<(), InvalidId> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidId {
            kind,
            value: s.chars().take(80).collect(),
        })
    }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates an identifier.
            pub fn new(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s = s.into();
                validate($kind, &s)?;
                Ok(Self(s))
            }
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_id!(
    /// A member structure of the agency (a commune, an inter-communal body…).
    MemberId,
    "member id"
);
text_id!(
    /// A building owned by a member.
    BuildingId,
    "building id"
);
text_id!(
    /// A device: a meter, a sensor, a server agent. Its id is its MQTT topic level.
    DeviceId,
    "device id"
);

/// One stored time series: one quantity of one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeriesId(pub i64);

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A user of the dashboard or the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_break_a_topic_or_a_path_are_refused() {
        for bad in ["", "a/b", "a+b", "#", "é", "a b", &"x".repeat(65)] {
            assert!(DeviceId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            DeviceId::new("elec-01.main").map(|d| d.to_string()),
            Ok("elec-01.main".into())
        );
    }

    #[test]
    fn invalid_id_message_names_the_kind_and_value() {
        let err = BuildingId::new("a/b").unwrap_err().to_string();
        assert!(err.contains("building id") && err.contains("a/b"), "{err}");
    }
}
