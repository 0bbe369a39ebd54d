//! Where a remote store finds the tags of a series (measurement, device, building,
//! member), and the line-protocol encoding of samples with those tags.
//!
//! The registry is the source of truth ([`Registry::series_labels`]); tests and
//! benchmarks use [`StaticLabels`]. This module must never invent a tag value: a series
//! the lookup does not know is written with its `series` tag only.
//!
//! It also says how reads find a series ([`SeriesTags::read_tag`]): by its natural key,
//! measurement + `device`, when it has a device, since the `series` tag is a local
//! autoincrement id that another installation (or this one after its data directory was
//! re-created) gives to another series; by measurement + `series` otherwise.

use std::collections::HashMap;
use std::fmt::Write as _;

use async_trait::async_trait;

use crate::ids::SeriesId;
use crate::registry::Registry;
use crate::store::{Sample, StoreError};

/// The tags of one series in a remote store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesTags {
    /// The series (tag `series`).
    pub series: SeriesId,
    /// Measurement: the quantity name (`electricity_kwh`); VictoriaMetrics names the
    /// series `<measurement>_value`.
    pub measurement: String,
    /// Tag `device`.
    pub device: Option<String>,
    /// Tag `building`.
    pub building: Option<String>,
    /// Tag `member`.
    pub member: Option<String>,
}

impl SeriesTags {
    /// Tags of a series nobody described: measurement `vigie`, tag `series` only.
    pub fn bare(series: SeriesId) -> SeriesTags {
        SeriesTags {
            series,
            measurement: "vigie".into(),
            device: None,
            building: None,
            member: None,
        }
    }

    /// The device tag as written (an empty one is not written).
    pub(crate) fn device_tag(&self) -> Option<&str> {
        self.device.as_deref().filter(|d| !d.is_empty())
    }

    /// The tag that, with the measurement, identifies this series on reads, and its
    /// value: `device` when the series has one, else `series` (its id). Never
    /// `building` or `member`, so a device that moves keeps its history.
    pub(crate) fn read_tag(&self) -> (&'static str, String) {
        match self.device_tag() {
            Some(d) => ("device", d.to_string()),
            None => ("series", self.series.0.to_string()),
        }
    }
}

/// Which of a set of asked series a stored series holds samples of, by measurement and
/// read tag ([`SeriesTags::read_tag`]): how reads check what the server answered.
#[derive(Debug, Default)]
pub(crate) struct Owners(HashMap<(String, &'static str, String), Vec<SeriesId>>);

impl Owners {
    /// The index of `tags`.
    pub(crate) fn new<'a>(tags: impl IntoIterator<Item = &'a SeriesTags>) -> Owners {
        let mut map: HashMap<_, Vec<SeriesId>> = HashMap::new();
        for t in tags {
            let (tag, value) = t.read_tag();
            map.entry((t.measurement.clone(), tag, value))
                .or_default()
                .push(t.series);
        }
        Owners(map)
    }

    /// The asked series a stored series of `measurement`, whose tags `tag` gives, holds
    /// samples of (none when it is another device's or another id's).
    pub(crate) fn of<'v>(
        &self,
        measurement: &str,
        tag: impl Fn(&'static str) -> Option<&'v str>,
    ) -> &[SeriesId] {
        for key in ["device", "series"] {
            if let Some(value) = tag(key).filter(|v| !v.is_empty())
                && let Some(owners) = self
                    .0
                    .get(&(measurement.to_string(), key, value.to_string()))
            {
                return owners;
            }
        }
        &[]
    }
}

/// Looks up the tags of series.
#[async_trait]
pub trait SeriesLabeler: Send + Sync + 'static {
    /// Tags of the given series; series it does not know are left out.
    async fn tags(&self, series: &[SeriesId]) -> Result<Vec<SeriesTags>, StoreError>;
}

#[async_trait]
impl SeriesLabeler for Registry {
    async fn tags(&self, series: &[SeriesId]) -> Result<Vec<SeriesTags>, StoreError> {
        let wanted: std::collections::HashSet<SeriesId> = series.iter().copied().collect();
        Ok(self
            .series_labels()
            .await?
            .into_iter()
            .filter(|l| wanted.contains(&l.series.id))
            .map(|l| SeriesTags {
                series: l.series.id,
                measurement: l.series.quantity.name().to_string(),
                device: Some(l.series.device_id.as_str().to_string()),
                building: l.building_id,
                member: l.member_id,
            })
            .collect())
    }
}

/// A fixed table of tags (tests, benchmarks, exports of files without a registry).
#[derive(Debug, Clone, Default)]
pub struct StaticLabels(pub HashMap<SeriesId, SeriesTags>);

#[async_trait]
impl SeriesLabeler for StaticLabels {
    async fn tags(&self, series: &[SeriesId]) -> Result<Vec<SeriesTags>, StoreError> {
        Ok(series
            .iter()
            .filter_map(|s| self.0.get(s).cloned())
            .collect())
    }
}

fn escape_into(out: &mut String, s: &str, also_equals: bool) {
    for ch in s.chars() {
        if ch == ',' || ch == ' ' || (also_equals && ch == '=') || ch == '\\' {
            out.push('\\');
        }
        // Line protocol has no escape for newlines: they would split the line.
        out.push(if ch == '\n' || ch == '\r' { ' ' } else { ch });
    }
}

/// Appends one sample as an InfluxDB line (millisecond precision, field `value`).
/// Non-finite values cannot be written and are an error.
pub fn write_line(out: &mut String, tags: &SeriesTags, s: &Sample) -> Result<(), StoreError> {
    if !s.value.is_finite() {
        return Err(StoreError::InvalidQuery(format!(
            "series {} at {}: value {} cannot be written",
            s.series.0, s.ts, s.value
        )));
    }
    escape_into(out, &tags.measurement, false);
    // Tag keys in lexical order, as InfluxDB recommends.
    for (key, value) in [
        ("building", tags.building.as_deref()),
        ("device", tags.device.as_deref()),
        ("member", tags.member.as_deref()),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.push(',');
            out.push_str(key);
            out.push('=');
            escape_into(out, v, true);
        }
    }
    let _ = writeln!(out, ",series={} value={:?} {}", s.series.0, s.value, s.ts.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    #[test]
    fn a_line_has_sorted_escaped_tags_and_a_float_field_in_milliseconds() {
        let tags = SeriesTags {
            series: SeriesId(42),
            measurement: "electricity_kwh".into(),
            device: Some("meter-1".into()),
            building: Some("mairie, annexe=2".into()),
            member: None,
        };
        let mut out = String::new();
        let s = Sample {
            series: SeriesId(42),
            ts: Timestamp(1_764_460_800_000),
            value: 12.0,
        };
        write_line(&mut out, &tags, &s).expect("line");
        assert_eq!(
            out,
            "electricity_kwh,building=mairie\\,\\ annexe\\=2,device=meter-1,series=42 value=12.0 1764460800000\n"
        );
    }

    #[test]
    fn a_nan_value_is_refused_not_written() {
        let mut out = String::new();
        let s = Sample {
            series: SeriesId(1),
            ts: Timestamp(0),
            value: f64::NAN,
        };
        assert!(write_line(&mut out, &SeriesTags::bare(SeriesId(1)), &s).is_err());
        assert!(out.is_empty());
    }
}
