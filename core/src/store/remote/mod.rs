//! The remote time-series backend: writes through the InfluxDB v2 write API, reads in
//! the Flux dialect (InfluxDB 2.x, Cloud) or the Prometheus dialect (VictoriaMetrics).
//!
//! Writes go through the `influxdb2` crate as line protocol at millisecond precision:
//! measurement = quantity name, field `value`, tags `series`, `device`, `building`,
//! `member` (from a [`SeriesLabeler`]). VictoriaMetrics stores them as the series
//! `<quantity>_value{series="42",device=…}`. Reads select a series by its natural key,
//! measurement + `device` tag, found through the same cached lookup as writes: the
//! `series` tag is a local autoincrement id, which a second installation on the same
//! server, or this one after its data directory was re-created, gives to another
//! device. Only a series without a device (unknown to the lookup, [`SeriesTags::bare`])
//! is read by measurement + `series`. Selectors never use `building` or `member`, so a
//! series keeps its history when its device moves; every label value in a selector is
//! escaped. Aggregates fetch the raw points (and the last one before the range) and run
//! the reference computation ([`super::aggregate_points`]), so both backends answer the
//! same numbers, DST included. Idempotency is the server's: InfluxDB overwrites a point
//! with the same series and time; VictoriaMetrics needs `-dedup.minScrapeInterval=1ms`.
//! Retention is the server's (bucket retention, `-retentionPeriod`):
//! [`TimeSeriesStore::retain`] deletes nothing here. A device's history may span
//! several stored series (its older ids, its former buildings): reads merge them. This
//! module must never log the token, nor select a series by its `series` tag alone.

mod flux;
mod labels;
mod prom;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;

pub use flux::parse_annotated_csv;
pub use labels::{SeriesLabeler, SeriesTags, StaticLabels, write_line};

use super::{
    AggregateQuery, Aggregation, BucketValue, Point, Sample, StoreError, TimeSeriesStore,
    WriteReport,
};
use crate::config::TsdbConfig;
use crate::ids::SeriesId;
use crate::time::Timestamp;

/// How the remote store is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Flux over `/api/v2/query` (InfluxDB 2.x, InfluxDB Cloud).
    Flux,
    /// The Prometheus query API and `/api/v1/export` (VictoriaMetrics).
    Prometheus,
}

impl std::str::FromStr for Dialect {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flux" => Ok(Dialect::Flux),
            "prometheus" | "" => Ok(Dialect::Prometheus),
            other => Err(StoreError::InvalidQuery(format!(
                "tsdb.dialect (VIGIE_TSDB_DIALECT) is {other:?}: expected flux or prometheus"
            ))),
        }
    }
}

/// A store on an InfluxDB v2 compatible server.
pub struct RemoteStore {
    base: String,
    org: String,
    bucket: String,
    token: String,
    dialect: Dialect,
    writer: influxdb2::Client,
    http: reqwest::Client,
    labels: Arc<dyn SeriesLabeler>,
    tags: RwLock<HashMap<SeriesId, Arc<SeriesTags>>>,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStore")
            .field("url", &self.base)
            .field("dialect", &self.dialect)
            .finish_non_exhaustive()
    }
}

impl RemoteStore {
    /// A store on `config.url`, reading in `config.dialect`, tagging with `labels`.
    pub fn new(
        config: &TsdbConfig,
        labels: Arc<dyn SeriesLabeler>,
    ) -> Result<RemoteStore, StoreError> {
        let dialect: Dialect = config.dialect.parse()?;
        let base = config.url.trim_end_matches('/').to_string();
        let bad = |message: String| StoreError::Remote {
            url: base.clone(),
            message,
        };
        // `influxdb2::ClientBuilder::new` panics on a bad URL: check it first.
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| bad(format!("tsdb.url (VIGIE_TSDB_URL) is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("tsdb.url (VIGIE_TSDB_URL) must be http or https".into()));
        }
        // The `influxdb2` crate replaces the URL's path with `/api/v2/write`: a base
        // such as a VictoriaMetrics cluster's `http://vminsert:8480/insert/0/influx`
        // would silently write elsewhere than it reads. Refuse it, and say what works.
        if parsed.path() != "/" && !parsed.path().is_empty() {
            return Err(bad(format!(
                "tsdb.url (VIGIE_TSDB_URL) must not have a path (found {:?}): writes go to \
                 <url>/api/v2/write and reads to <url>/api/v1/… or <url>/api/v2/query; \
                 for a VictoriaMetrics cluster, point it at vmauth routing /api/v2/write to \
                 vminsert's /insert/<tenant>/influx/ and /api/v1/ to vmselect's \
                 /select/<tenant>/prometheus/",
                parsed.path()
            )));
        }
        let writer =
            influxdb2::ClientBuilder::new(base.clone(), config.org.clone(), config.token.clone())
                .build()
                .map_err(|e| bad(format!("cannot build the write client: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| bad(format!("cannot build the HTTP client: {e}")))?;
        Ok(RemoteStore {
            base,
            org: config.org.clone(),
            bucket: config.bucket.clone(),
            token: config.token.clone(),
            dialect,
            writer,
            http,
            labels,
            tags: RwLock::new(HashMap::new()),
        })
    }

    /// The read dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn err(&self, message: impl Into<String>) -> StoreError {
        StoreError::Remote {
            url: self.base.clone(),
            message: message.into(),
        }
    }

    /// Tags of every series in `series`, asking the labeler for unknown ones (once:
    /// a series it does not know is remembered as [`SeriesTags::bare`]).
    async fn tags_for(
        &self,
        series: &[SeriesId],
    ) -> Result<HashMap<SeriesId, Arc<SeriesTags>>, StoreError> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        if let Ok(cache) = self.tags.read() {
            for s in series {
                match cache.get(s) {
                    Some(t) => {
                        out.insert(*s, t.clone());
                    }
                    None if !out.contains_key(s) && !missing.contains(s) => missing.push(*s),
                    None => {}
                }
            }
        }
        if !missing.is_empty() {
            let found = self.labels.tags(&missing).await?;
            let mut cache = self
                .tags
                .write()
                .map_err(|_| self.err("tag cache poisoned"))?;
            for t in found {
                cache.insert(t.series, Arc::new(t));
            }
            for s in missing {
                let t = cache
                    .entry(s)
                    .or_insert_with(|| {
                        tracing::warn!(
                            series = s.0,
                            "series has no labels in the registry; writing and reading it by its id only"
                        );
                        Arc::new(SeriesTags::bare(s))
                    })
                    .clone();
                out.insert(s, t);
            }
        }
        Ok(out)
    }

    /// Tags of one series (see [`RemoteStore::tags_for`]).
    async fn tags_of(&self, series: SeriesId) -> Result<Arc<SeriesTags>, StoreError> {
        self.tags_for(&[series])
            .await?
            .remove(&series)
            .ok_or_else(|| self.err("tag lookup lost a series"))
    }

    /// Tags of `series`, in the same order.
    async fn tags_in_order(&self, series: &[SeriesId]) -> Result<Vec<Arc<SeriesTags>>, StoreError> {
        let tags = self.tags_for(series).await?;
        series
            .iter()
            .map(|s| {
                tags.get(s)
                    .cloned()
                    .ok_or_else(|| self.err("tag lookup lost a series"))
            })
            .collect()
    }

    async fn get_text(&self, path: &str, form: &[(&str, String)]) -> Result<String, StoreError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.post(&url).form(form);
        if !self.token.is_empty() {
            req = req.header("Authorization", format!("Token {}", self.token));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.err(format!("{path}: {e}")))?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| self.err(format!("{path}: {e}")))?;
        if !status.is_success() {
            return Err(self.err(format!(
                "{path}: HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            )));
        }
        Ok(body)
    }

    async fn flux(&self, query: String) -> Result<String, StoreError> {
        let url = format!("{}/api/v2/query", self.base);
        let body = serde_json::json!({
            "query": query,
            "type": "flux",
            "dialect": {"header": true, "annotations": ["datatype", "group", "default"]},
        });
        let mut req = self
            .http
            .post(&url)
            .query(&[("org", self.org.as_str())])
            .header("Accept", "application/csv")
            .json(&body);
        if !self.token.is_empty() {
            req = req.header("Authorization", format!("Token {}", self.token));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.err(format!("/api/v2/query: {e}")))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| self.err(format!("/api/v2/query: {e}")))?;
        if !status.is_success() {
            return Err(self.err(format!(
                "/api/v2/query: HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        Ok(text)
    }

    /// The value of the last sample of `series` strictly before `before`, if any.
    async fn last_before(
        &self,
        series: SeriesId,
        before: Timestamp,
    ) -> Result<Option<f64>, StoreError> {
        let tags = self.tags_of(series).await?;
        match self.dialect {
            Dialect::Prometheus => prom::last_before(self, &tags, before).await,
            Dialect::Flux => flux::last_before(self, &tags, before).await,
        }
    }
}

#[async_trait]
impl TimeSeriesStore for RemoteStore {
    /// Writes through the InfluxDB v2 write API. The server decides duplicates, so the
    /// report counts every sample as inserted.
    async fn write(&self, samples: &[Sample]) -> Result<WriteReport, StoreError> {
        if samples.is_empty() {
            return Ok(WriteReport::default());
        }
        let ids: Vec<SeriesId> = samples.iter().map(|s| s.series).collect();
        let tags = self.tags_for(&ids).await?;
        let mut body = String::with_capacity(samples.len() * 96);
        for s in samples {
            let t = tags
                .get(&s.series)
                .ok_or_else(|| self.err("tag lookup lost a series"))?;
            write_line(&mut body, t, s)?;
        }
        self.writer
            .write_line_protocol_with_precision(
                &self.org,
                &self.bucket,
                body,
                influxdb2::api::write::TimestampPrecision::Milliseconds,
            )
            .await
            .map_err(|e| self.err(format!("write: {e}")))?;
        Ok(WriteReport {
            inserted: samples.len() as u64,
            duplicates: 0,
        })
    }

    async fn range(
        &self,
        series: SeriesId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Point>, StoreError> {
        if to <= from {
            return Ok(Vec::new());
        }
        let tags = self.tags_of(series).await?;
        match self.dialect {
            Dialect::Prometheus => prom::range(self, &tags, from, to).await,
            Dialect::Flux => flux::range(self, &tags, from, to).await,
        }
    }

    async fn latest(&self, series: &[SeriesId]) -> Result<Vec<(SeriesId, Point)>, StoreError> {
        if series.is_empty() {
            return Ok(Vec::new());
        }
        let tags = self.tags_in_order(series).await?;
        let mut out = Vec::with_capacity(series.len());
        // Bounded request sizes: at most a few thousand series per query.
        for chunk in tags.chunks(2_000) {
            match self.dialect {
                Dialect::Prometheus => out.extend(prom::latest(self, chunk).await?),
                Dialect::Flux => out.extend(flux::latest(self, chunk).await?),
            }
        }
        let order: HashMap<SeriesId, usize> =
            series.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        out.sort_by_key(|(s, _)| order.get(s).copied().unwrap_or(usize::MAX));
        Ok(out)
    }

    async fn aggregate(&self, query: &AggregateQuery) -> Result<Vec<BucketValue>, StoreError> {
        let (Some(first), Some(last)) = (query.periods.first(), query.periods.last()) else {
            return Ok(Vec::new());
        };
        let mut all = Vec::with_capacity(query.series.len());
        for &s in &query.series {
            let mut pts = Vec::new();
            if query.aggregation == Aggregation::Consumption
                && let Some(v) = self.last_before(s, first.start).await?
            {
                // Only its value matters: its step lands on the first sample.
                pts.push(Point {
                    ts: first.start.plus_millis(-1),
                    value: v,
                });
            }
            pts.extend(self.range(s, first.start, last.end).await?);
            all.push(pts);
        }
        Ok(super::aggregate_points(
            &all,
            query.aggregation,
            &query.periods,
        ))
    }

    /// The server's retention applies; nothing is deleted from here.
    async fn retain(&self, _before: Timestamp) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        match self.dialect {
            Dialect::Prometheus => prom::count(self).await,
            Dialect::Flux => flux::count(self).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let url = format!("{}/health", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| self.err(format!("/health: {e}")))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.err(format!("/health: HTTP {}", resp.status())))
        }
    }

    async fn flush(&self) -> Result<(), StoreError> {
        if self.dialect == Dialect::Prometheus {
            // VictoriaMetrics single node; a cluster's vminsert has no such endpoint,
            // and there samples simply become visible a little later.
            let url = format!("{}/internal/force_flush", self.base);
            if let Err(e) = self.http.get(&url).send().await {
                tracing::debug!(error = %e, "force_flush failed");
            }
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        match self.dialect {
            Dialect::Prometheus => "victoriametrics",
            Dialect::Flux => "influxdb",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> TsdbConfig {
        TsdbConfig {
            url: url.into(),
            token: "secret-token".into(),
            org: "vigie".into(),
            bucket: "vigie".into(),
            dialect: "prometheus".into(),
        }
    }

    #[test]
    fn a_url_with_a_path_is_refused_naming_the_path_and_what_works() {
        let err = RemoteStore::new(
            &config("http://vminsert:8480/insert/0/influx"),
            Arc::new(StaticLabels::default()),
        )
        .expect_err("a path must be refused");
        let msg = err.to_string();
        assert!(msg.contains("\"/insert/0/influx\""), "{msg}");
        assert!(msg.contains("vmauth"), "{msg}");
        assert!(!msg.contains("secret-token"), "{msg}");
    }

    #[test]
    fn a_bare_url_with_or_without_a_trailing_slash_is_accepted() {
        for url in ["http://127.0.0.1:8428", "http://127.0.0.1:8428/"] {
            RemoteStore::new(&config(url), Arc::new(StaticLabels::default()))
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }
}
