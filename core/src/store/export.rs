//! Moving history out of a store: to another store (embedded → InfluxDB v2 /
//! VictoriaMetrics) or to CSV, series by series in chunks, resumable.
//!
//! The cursor (last exported series and instant) is written to a small file after each
//! chunk the destination acknowledged, by write-then-rename, so an interrupted export
//! resumes after the last durable chunk; re-sending a chunk is harmless since writes
//! are idempotent. At the end the samples of every exported series are counted on both
//! sides. This module must never delete anything from the source.

use std::io::Write;
use std::path::PathBuf;

use super::{Sample, StoreError, TimeSeriesStore};
use crate::ids::SeriesId;
use crate::time::Timestamp;

/// The last sample handed to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportCursor {
    /// Its series.
    pub series: SeriesId,
    /// Its instant.
    pub ts: Timestamp,
}

impl ExportCursor {
    fn parse(text: &str) -> Option<ExportCursor> {
        let mut it = text.split_whitespace();
        let series = it.next()?.parse().ok()?;
        let ts = it.next()?.parse().ok()?;
        Some(ExportCursor {
            series: SeriesId(series),
            ts: Timestamp(ts),
        })
    }
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Samples per read and per write.
    pub chunk: usize,
    /// Where the cursor is kept; `None` = not resumable.
    pub cursor_file: Option<PathBuf>,
    /// Count every exported series on both sides at the end.
    pub verify: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            chunk: 10_000,
            cursor_file: None,
            verify: true,
        }
    }
}

/// Where an export stands (for a progress bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportProgress {
    /// Series finished, of `series_total`.
    pub series_done: usize,
    /// Series to export.
    pub series_total: usize,
    /// Samples sent in this run.
    pub samples: u64,
    /// The series being exported.
    pub current: SeriesId,
}

/// What an export did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Series exported (or verified).
    pub series: usize,
    /// Samples sent in this run (a resumed run sends only the rest).
    pub samples: u64,
    /// Samples counted in the source for those series.
    pub source_samples: u64,
    /// Samples counted in the destination for those series (when verified).
    pub destination_samples: Option<u64>,
}

/// An export failure.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cursor file could not be read or written.
    #[error("export cursor {path}: {source}")]
    Cursor {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The CSV output failed.
    #[error("CSV output: {0}")]
    Csv(std::io::Error),
    /// The CSV rows written differ from the samples the source holds.
    #[error("{written} CSV rows written but the source holds {stored} samples")]
    CsvCountMismatch {
        /// Samples in the source.
        stored: u64,
        /// Rows written.
        written: u64,
    },
    /// The destination does not hold what the source holds.
    #[error(
        "series {series}: {source_count} samples in the source, {destination} in the destination"
    )]
    CountMismatch {
        /// The series.
        series: i64,
        /// Samples in the source.
        source_count: u64,
        /// Samples in the destination.
        destination: u64,
    },
}

fn read_cursor(opts: &ExportOptions) -> Result<Option<ExportCursor>, ExportError> {
    let Some(path) = &opts.cursor_file else {
        return Ok(None);
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(ExportCursor::parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ExportError::Cursor {
            path: path.clone(),
            source,
        }),
    }
}

fn write_cursor(opts: &ExportOptions, c: ExportCursor) -> Result<(), ExportError> {
    let Some(path) = &opts.cursor_file else {
        return Ok(());
    };
    let fail = |source| ExportError::Cursor {
        path: path.clone(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{} {}\n", c.series.0, c.ts.0)).map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

async fn count_all(store: &dyn TimeSeriesStore, series: SeriesId) -> Result<u64, StoreError> {
    Ok(store
        .range(series, Timestamp(i64::MIN), Timestamp(i64::MAX))
        .await?
        .len() as u64)
}

/// Copies every series of `src` into `dst`, resuming after the cursor in
/// `opts.cursor_file` if there is one, calling `progress` after each chunk.
pub async fn export(
    src: &dyn TimeSeriesStore,
    dst: &dyn TimeSeriesStore,
    opts: &ExportOptions,
    progress: &mut (dyn FnMut(&ExportProgress) + Send),
) -> Result<ExportReport, ExportError> {
    let all = src.series_ids().await?;
    let resume = read_cursor(opts)?;
    let chunk = opts.chunk.max(1);
    let mut p = ExportProgress {
        series_done: 0,
        series_total: all.len(),
        samples: 0,
        current: SeriesId(0),
    };
    for &series in &all {
        p.current = series;
        let mut after = match resume {
            Some(c) if series < c.series => {
                p.series_done += 1;
                continue;
            }
            Some(c) if series == c.series => c.ts,
            _ => Timestamp(i64::MIN),
        };
        loop {
            let points = src.range_after(series, after, chunk).await?;
            let Some(last) = points.last() else { break };
            after = last.ts;
            let samples: Vec<Sample> = points
                .iter()
                .map(|pt| Sample {
                    series,
                    ts: pt.ts,
                    value: pt.value,
                })
                .collect();
            dst.write(&samples).await?;
            write_cursor(opts, ExportCursor { series, ts: after })?;
            p.samples += samples.len() as u64;
            progress(&p);
            if points.len() < chunk {
                break;
            }
        }
        p.series_done += 1;
        progress(&p);
    }
    let mut report = ExportReport {
        series: all.len(),
        samples: p.samples,
        source_samples: 0,
        destination_samples: None,
    };
    if opts.verify {
        dst.flush().await?;
        let mut total = 0;
        for &series in &all {
            let (a, b) = (count_all(src, series).await?, count_all(dst, series).await?);
            if a != b {
                return Err(ExportError::CountMismatch {
                    series: series.0,
                    source_count: a,
                    destination: b,
                });
            }
            report.source_samples += a;
            total += b;
        }
        report.destination_samples = Some(total);
    } else {
        for &series in &all {
            report.source_samples += count_all(src, series).await?;
        }
    }
    Ok(report)
}

/// Writes every sample of `src` as CSV (`series,ts,value`, RFC 3339 UTC instants),
/// series by series in time order; returns the number of rows, checked against the
/// source's count.
pub async fn export_csv<W: Write + Send>(
    src: &dyn TimeSeriesStore,
    out: &mut W,
    chunk: usize,
    progress: &mut (dyn FnMut(&ExportProgress) + Send),
) -> Result<u64, ExportError> {
    let all = src.series_ids().await?;
    let chunk = chunk.max(1);
    writeln!(out, "series,ts,value").map_err(ExportError::Csv)?;
    let mut p = ExportProgress {
        series_done: 0,
        series_total: all.len(),
        samples: 0,
        current: SeriesId(0),
    };
    for &series in &all {
        p.current = series;
        let mut after = Timestamp(i64::MIN);
        loop {
            let points = src.range_after(series, after, chunk).await?;
            let Some(last) = points.last() else { break };
            after = last.ts;
            for pt in &points {
                writeln!(out, "{},{},{}", series.0, pt.ts, pt.value).map_err(ExportError::Csv)?;
            }
            p.samples += points.len() as u64;
            progress(&p);
            if points.len() < chunk {
                break;
            }
        }
        p.series_done += 1;
        progress(&p);
    }
    out.flush().map_err(ExportError::Csv)?;
    let stored = src.count().await?;
    if stored != p.samples {
        return Err(ExportError::CsvCountMismatch {
            stored,
            written: p.samples,
        });
    }
    Ok(p.samples)
}
