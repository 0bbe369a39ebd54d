//! The `vigie` binary: one command line, one subcommand per role.
//!
//! `vigie run` composes the embedded broker, ingest and the dashboard in one process;
//! `vigie ingest` and `vigie dashboard` run one role each; `vigie sim` drives the
//! simulator; `vigie user …` manages users on the data dir, even while vigie runs.
//! This is the only place that reads files and the environment for configuration.

mod bench;
mod broker_cmd;
mod export;
mod roles;
mod settings;
mod shutdown;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vigie",
    version,
    about = "Supervises public buildings and servers: MQTT ingest, time series, dashboard"
)]
struct Cli {
    /// Configuration file (default: the embedded config/vigie.toml).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run broker (embedded unless VIGIE_MQTT_URL), ingest and dashboard in one process.
    Run {
        /// Provision the demo buildings and start the simulator even on a non-empty data dir.
        #[arg(long)]
        demo: bool,
    },
    /// Run ingest only (and the embedded broker when VIGIE_MQTT_URL is unset).
    Ingest,
    /// Run the dashboard and JSON API only.
    Dashboard,
    /// Publish simulated buildings over MQTT, as real devices would.
    Sim(roles::SimArgs),
    /// Manage users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Device MQTT credentials.
    #[command(subcommand)]
    Device(broker_cmd::DeviceCommand),
    /// External broker configuration.
    #[command(subcommand)]
    Broker(broker_cmd::BrokerCommand),
    /// Stream the embedded store's history to the remote backend or to CSV.
    #[command(subcommand)]
    Export(export::ExportCommand),
    /// Measure ingest throughput.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,rumqttd=warn,rumqttc=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .finish()
        // rumqttd reports every clean client disconnect at ERROR: keep those out.
        .with(tracing_subscriber::filter::filter_fn(|meta| {
            !vigie_ingest::is_rumqttd_noise(meta)
        }))
        .init();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigie: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config = settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::User(cmd) => user::run(&config, cmd),
        Command::Device(cmd) => broker_cmd::run_device(&config, cmd),
        Command::Broker(cmd) => broker_cmd::run_broker(&config, cmd),
        Command::Export(cmd) => runtime()?.block_on(export::run(&config, cmd)),
        Command::Bench(cmd) => runtime()?.block_on(bench::run(config, cmd)),
        Command::Run { demo } => runtime()?.block_on(roles::run_all(config, demo)),
        Command::Ingest => runtime()?.block_on(roles::run_ingest(config)),
        Command::Dashboard => runtime()?.block_on(roles::run_dashboard(config)),
        Command::Sim(args) => runtime()?.block_on(roles::run_sim(config, args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
