//! `vigie export`: stream the embedded store's history to the remote backend or to CSV.
//!
//! The source is always the embedded store of the data dir; the destination is the
//! remote backend that `VIGIE_TSDB_URL` (and friends) name, or a CSV file. A remote
//! export is resumable (a cursor file in the data dir) and checks counts per series at
//! the end. It never writes to the embedded store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use vigie_core::config::Config;
use vigie_core::db::Db;
use vigie_core::registry::Registry;
use vigie_core::store::{
    ExportOptions, ExportProgress, RemoteStore, SqliteStore, export, export_csv,
};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum ExportCommand {
    /// To the remote backend named by VIGIE_TSDB_URL (InfluxDB v2 write API).
    Tsdb {
        /// Start again from the first series instead of resuming.
        #[arg(long)]
        restart: bool,
    },
    /// To a CSV file (`series,ts,value`; `-` for standard output).
    Csv {
        /// Output file.
        file: PathBuf,
    },
}

fn bar(total: usize) -> ProgressBar {
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} series, {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

pub(crate) async fn run(config: &Config, cmd: ExportCommand) -> Result<()> {
    let db = Db::open_dir(&config.storage.data_dir)?;
    let registry = Registry::new(db.clone());
    let src = SqliteStore::new(db);
    let pb = bar(0);
    let mut progress = |p: &ExportProgress| {
        pb.set_length(p.series_total as u64);
        pb.set_position(p.series_done as u64);
        pb.set_message(format!("{} samples", p.samples));
    };
    match cmd {
        ExportCommand::Tsdb { restart } => {
            if config.tsdb.url.trim().is_empty() {
                bail!(
                    "set VIGIE_TSDB_URL (and VIGIE_TSDB_TOKEN, _ORG, _BUCKET) to the destination"
                );
            }
            let dst = RemoteStore::new(&config.tsdb, Arc::new(registry))
                .context("time-series backend (VIGIE_TSDB_URL)")?;
            let cursor = config.storage.data_dir.join("export.cursor");
            if restart {
                let _ = std::fs::remove_file(&cursor);
            }
            let opts = ExportOptions {
                cursor_file: Some(cursor.clone()),
                ..ExportOptions::default()
            };
            let report = export(&src, &dst, &opts, &mut progress).await?;
            pb.finish_and_clear();
            println!(
                "exported {} samples of {} series to {} ({} in the source, {} in the destination)",
                report.samples,
                report.series,
                config.tsdb.url,
                report.source_samples,
                report
                    .destination_samples
                    .map_or_else(|| "not counted".to_string(), |n| n.to_string())
            );
            let _ = std::fs::remove_file(&cursor);
        }
        ExportCommand::Csv { file } => {
            let rows = if file.as_os_str() == "-" {
                let mut out = std::io::BufWriter::new(std::io::stdout());
                export_csv(&src, &mut out, 10_000, &mut progress).await?
            } else {
                let f = std::fs::File::create(&file)
                    .with_context(|| format!("cannot create {}", file.display()))?;
                let mut out = std::io::BufWriter::new(f);
                export_csv(&src, &mut out, 10_000, &mut progress).await?
            };
            pb.finish_and_clear();
            eprintln!("exported {rows} samples to {}", file.display());
        }
    }
    Ok(())
}
