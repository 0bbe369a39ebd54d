//! French formatting of numbers, dates and months for the dashboard and charts.
//!
//! Numbers use a narrow no-break space (U+202F) to group thousands and a comma as the
//! decimal separator (`1 234,5`); a value and its unit are joined by a no-break space
//! (U+00A0). Dates and times are shown in Europe/Paris local time (`29/11/2026 10:15`).
//! This module only formats: it must never parse user input nor do I/O.

use chrono::{Datelike, NaiveDate};
use vigie_core::Timestamp;
use vigie_core::time::PARIS;

/// Thousands separator: narrow no-break space.
pub const THOUSANDS_SEP: char = '\u{202F}';
/// Between a value and its unit: no-break space.
pub const UNIT_SEP: char = '\u{00A0}';

/// `value` rounded to `decimals` places, French style: `-1 234,50`.
///
/// A value that rounds to zero carries no sign; non-finite values are shown as `—`.
pub fn number(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "—".to_string();
    }
    let rounded = format!("{:.*}", decimals, value.abs());
    let (int_part, frac_part) = match rounded.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rounded.as_str(), None),
    };
    let is_zero = rounded.bytes().all(|b| b == b'0' || b == b'.');
    let mut out = String::with_capacity(rounded.len() + 8);
    if value < 0.0 && !is_zero {
        out.push('-');
    }
    let digits = int_part.len();
    for (i, c) in int_part.chars().enumerate() {
        if i > 0 && (digits - i) % 3 == 0 {
            out.push(THOUSANDS_SEP);
        }
        out.push(c);
    }
    if let Some(f) = frac_part {
        out.push(',');
        out.push_str(f);
    }
    out
}

/// How many decimals suit a value of this magnitude: 0 from 100, 1 from 10, else 2.
pub fn auto_decimals(value: f64) -> usize {
    let a = value.abs();
    if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else {
        2
    }
}

/// A value with automatic precision and its unit: `1 234 kWh`, `12,5 m³`.
pub fn quantity(value: f64, unit: &str) -> String {
    format!("{}{UNIT_SEP}{unit}", number(value, auto_decimals(value)))
}

/// The local (Paris) date of an instant: `29/11/2026`.
pub fn date(ts: Timestamp) -> String {
    ts.to_utc()
        .with_timezone(&PARIS)
        .format("%d/%m/%Y")
        .to_string()
}

/// The local (Paris) date and time of an instant: `29/11/2026 10:15`.
pub fn date_time(ts: Timestamp) -> String {
    ts.to_utc()
        .with_timezone(&PARIS)
        .format("%d/%m/%Y %H:%M")
        .to_string()
}

/// A calendar date: `29/11/2026`.
pub fn naive_date(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

/// Day and month, for chart axes: `29/11`.
pub fn day_month(d: NaiveDate) -> String {
    d.format("%d/%m").to_string()
}

const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

const MONTHS_ABBR: [&str; 12] = [
    "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.",
    "déc.",
];

/// The French name of a month (1 = `janvier`); `?` outside 1..=12.
pub fn month_name(month: u32) -> &'static str {
    month
        .checked_sub(1)
        .and_then(|i| MONTHS.get(i as usize))
        .copied()
        .unwrap_or("?")
}

/// The usual French abbreviation of a month (11 = `nov.`); `?` outside 1..=12.
pub fn month_abbr(month: u32) -> &'static str {
    month
        .checked_sub(1)
        .and_then(|i| MONTHS_ABBR.get(i as usize))
        .copied()
        .unwrap_or("?")
}

/// Month and year: `novembre 2026`.
pub fn month_year(d: NaiveDate) -> String {
    format!("{} {}", month_name(d.month()), d.year())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: char = THOUSANDS_SEP;

    #[test]
    fn thousands_are_grouped_with_a_narrow_no_break_space_and_decimals_use_a_comma() {
        assert_eq!(number(1234.5, 1), format!("1{S}234,5"));
        assert_eq!(number(1234567.891, 2), format!("1{S}234{S}567,89"));
        assert_eq!(number(999.0, 0), "999");
        assert_eq!(number(100000.0, 0), format!("100{S}000"));
    }

    #[test]
    fn negative_numbers_keep_their_sign_before_the_grouped_digits() {
        assert_eq!(number(-1234.5, 1), format!("-1{S}234,5"));
        assert_eq!(number(-12.0, 0), "-12");
    }

    #[test]
    fn rounding_is_to_the_nearest_and_may_add_a_group() {
        assert_eq!(number(999.96, 1), format!("1{S}000,0"));
        assert_eq!(number(2.345, 0), "2");
        assert_eq!(number(0.126, 2), "0,13");
        assert_eq!(number(1.26, 1), "1,3");
    }

    #[test]
    fn zero_and_values_rounding_to_zero_have_no_sign() {
        assert_eq!(number(0.0, 0), "0");
        assert_eq!(number(0.0, 2), "0,00");
        assert_eq!(number(-0.001, 1), "0,0");
        assert_eq!(number(-0.0, 0), "0");
    }

    #[test]
    fn non_finite_values_are_shown_as_a_dash() {
        assert_eq!(number(f64::NAN, 1), "—");
        assert_eq!(number(f64::INFINITY, 1), "—");
    }

    #[test]
    fn a_quantity_joins_value_and_unit_with_a_no_break_space() {
        assert_eq!(quantity(1234.4, "kWh"), format!("1{S}234{UNIT_SEP}kWh"));
        assert_eq!(quantity(12.54, "m³"), format!("12,5{UNIT_SEP}m³"));
        assert_eq!(quantity(0.0, "m³"), format!("0,00{UNIT_SEP}m³"));
    }

    #[test]
    fn dates_are_shown_in_paris_local_time() {
        // 09:15 UTC in winter is 10:15 in Paris.
        let ts = Timestamp::parse_rfc3339("2026-11-29T09:15:00Z").expect("valid");
        assert_eq!(date(ts), "29/11/2026");
        assert_eq!(date_time(ts), "29/11/2026 10:15");
        // 23:30 UTC on the 28th is already the 29th in Paris.
        let late = Timestamp::parse_rfc3339("2026-11-28T23:30:00Z").expect("valid");
        assert_eq!(date(late), "29/11/2026");
        // Summer time: UTC+2.
        let summer = Timestamp::parse_rfc3339("2026-07-14T08:05:00Z").expect("valid");
        assert_eq!(date_time(summer), "14/07/2026 10:05");
    }

    #[test]
    fn months_have_french_names() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 29).expect("valid");
        assert_eq!(month_year(d), "novembre 2026");
        assert_eq!(month_name(2), "février");
        assert_eq!(month_abbr(12), "déc.");
        assert_eq!(month_name(13), "?");
        assert_eq!(month_name(0), "?");
        assert_eq!(day_month(d), "29/11");
        assert_eq!(naive_date(d), "29/11/2026");
    }
}
