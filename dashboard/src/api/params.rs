//! Query-string parsing for the API, with errors that name the parameter and say what
//! is expected (`parameter "from": expected a date YYYY-MM-DD, got "29/11/2026"`).
//!
//! Unknown parameters are refused too, so that a typo (`form=`) is not silently
//! ignored. This module must never echo more than a short prefix of what it was sent.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use chrono::NaiveDate;
use vigie_core::quantity::{Energy, Quantity, Unit};
use vigie_core::time::{Bucket, Timestamp};

use crate::error::ApiError;

/// The query parameters of one request.
#[derive(Debug, Clone, Default)]
pub struct Params(HashMap<String, String>);

fn shown(v: &str) -> String {
    v.chars().take(64).collect()
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(Query(map)) => Ok(Params(map)),
            Err(e) => Err(ApiError::bad_parameter("query string", e.body_text())),
        }
    }
}

impl Params {
    /// Parameters from pairs (tests, internal callers).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Params {
        Params(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Refuses any parameter not in `allowed`.
    pub fn only(&self, allowed: &[&str]) -> Result<(), ApiError> {
        let mut unknown: Vec<&str> = self
            .0
            .keys()
            .map(String::as_str)
            .filter(|k| !allowed.contains(k))
            .collect();
        unknown.sort_unstable();
        match unknown.first() {
            None => Ok(()),
            Some(k) => Err(ApiError::bad_parameter(
                &shown(k),
                format!("unknown parameter; expected one of {}", allowed.join(", ")),
            )),
        }
    }

    /// A parameter's raw value, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn required(&self, name: &str, expected: &str) -> Result<&str, ApiError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_parameter(name, format!("is required: {expected}")))
    }

    /// A required local date `YYYY-MM-DD`.
    pub fn date(&self, name: &str) -> Result<NaiveDate, ApiError> {
        const EXPECTED: &str = "expected a date YYYY-MM-DD";
        let v = self.required(name, EXPECTED)?;
        NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map_err(|_| ApiError::bad_parameter(name, format!("{EXPECTED}, got {:?}", shown(v))))
    }

    /// A required RFC 3339 instant.
    pub fn instant(&self, name: &str) -> Result<Timestamp, ApiError> {
        const EXPECTED: &str = "expected an RFC 3339 instant such as 2026-11-29T10:15:00Z";
        let v = self.required(name, EXPECTED)?;
        Timestamp::parse_rfc3339(v)
            .map_err(|_| ApiError::bad_parameter(name, format!("{EXPECTED}, got {:?}", shown(v))))
    }

    /// A required energy: `electricity`, `gas` or `water`.
    pub fn energy(&self, name: &str) -> Result<Energy, ApiError> {
        const EXPECTED: &str = "expected electricity, gas or water";
        let v = self.required(name, EXPECTED)?;
        v.parse()
            .map_err(|_| ApiError::bad_parameter(name, format!("{EXPECTED}, got {:?}", shown(v))))
    }

    /// A required quantity name of the vocabulary.
    pub fn quantity(&self, name: &str) -> Result<Quantity, ApiError> {
        let expected = format!(
            "expected a quantity among {}",
            Quantity::ALL
                .iter()
                .map(|q| q.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let v = self.required(name, &expected)?;
        v.parse()
            .map_err(|_| ApiError::bad_parameter(name, format!("{expected}, got {:?}", shown(v))))
    }

    /// An optional step, `day` (default) or `month`.
    pub fn step(&self, name: &str) -> Result<Bucket, ApiError> {
        match self.get(name) {
            None | Some("day") => Ok(Bucket::Day),
            Some("month") => Ok(Bucket::Month),
            Some(v) => Err(ApiError::bad_parameter(
                name,
                format!("expected day or month, got {:?}", shown(v)),
            )),
        }
    }

    /// An optional energy unit: `kwh` or `m3` (`None` when absent).
    pub fn energy_unit(&self, name: &str) -> Result<Option<Unit>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("kwh") => Ok(Some(Unit::KilowattHour)),
            Some("m3" | "m³") => Ok(Some(Unit::CubicMetre)),
            Some(v) => Err(ApiError::bad_parameter(
                name,
                format!("expected kwh or m3, got {:?}", shown(v)),
            )),
        }
    }

    /// An optional count in `1..=max`, `default` when absent.
    pub fn limit(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_parameter(
                        name,
                        format!(
                            "expected a whole number from 1 to {max}, got {:?}",
                            shown(v)
                        ),
                    )
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_date_names_the_parameter_and_the_expected_format() {
        let p = Params::from_pairs([("from", "29/11/2026")]);
        let e = p.date("from").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("\"from\""), "{}", e.message);
        assert!(e.message.contains("YYYY-MM-DD"), "{}", e.message);
        let missing = p.date("to").unwrap_err();
        assert!(
            missing.message.contains("\"to\": is required"),
            "{}",
            missing.message
        );
    }

    #[test]
    fn unknown_parameters_are_refused_by_name() {
        let p = Params::from_pairs([("form", "2026-01-01")]);
        let e = p.only(&["from", "to"]).unwrap_err();
        assert!(e.message.contains("\"form\""), "{}", e.message);
        assert!(Params::from_pairs([("from", "x")]).only(&["from"]).is_ok());
    }

    #[test]
    fn steps_energies_quantities_and_limits_are_checked() {
        let p = Params::from_pairs([
            ("step", "week"),
            ("energy", "fuel"),
            ("quantity", "co2"),
            ("limit", "0"),
        ]);
        assert!(p.step("step").unwrap_err().message.contains("day or month"));
        assert!(
            p.energy("energy")
                .unwrap_err()
                .message
                .contains("electricity")
        );
        assert!(
            p.quantity("quantity")
                .unwrap_err()
                .message
                .contains("co2_ppm")
        );
        assert!(p.limit("limit", 10, 100).is_err());
        assert_eq!(Params::default().step("step").ok(), Some(Bucket::Day));
        assert_eq!(Params::default().limit("limit", 10, 100).ok(), Some(10));
    }

    #[test]
    fn energy_units_are_kwh_or_m3() {
        let unit = |v| Params::from_pairs([("unit", v)]).energy_unit("unit");
        assert_eq!(unit("kwh").ok(), Some(Some(Unit::KilowattHour)));
        assert_eq!(unit("kWh").ok(), Some(Some(Unit::KilowattHour)));
        assert_eq!(unit("m3").ok(), Some(Some(Unit::CubicMetre)));
        assert!(unit("MWh").unwrap_err().message.contains("kwh or m3"));
        assert_eq!(Params::default().energy_unit("unit").ok(), Some(None));
    }
}
