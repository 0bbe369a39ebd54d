//! Composing the parts: `run` (everything), `ingest`, `dashboard`, `sim`.
//!
//! Each part is a `run(…, shutdown)` function from its crate; this module opens the
//! store, bootstraps the first admin and the demo fleet, starts the parts in the right
//! order (broker, then ingest, then the simulator once ingest is subscribed, so that
//! nothing is published before a session exists to keep it) and waits for them to
//! drain on shutdown. It must never hold business logic of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use vigie_core::Timestamp;
use vigie_core::config::Config;
use vigie_core::db::Db;
use vigie_core::metrics::Metrics;
use vigie_core::registry::{Registry, Scope, random_password};
use vigie_core::store::TimeSeriesStore;

use crate::shutdown::Shutdown;

/// Options of `vigie sim`.
#[derive(clap::Args, Debug)]
pub(crate) struct SimArgs {
    /// Number of simulated buildings.
    #[arg(long)]
    buildings: Option<usize>,
    /// Days of history to publish first, with original timestamps.
    #[arg(long, value_name = "DAYS")]
    backfill: Option<u32>,
    /// Most messages per second (default: as fast as the broker takes them).
    #[arg(long, value_name = "MSG_PER_S")]
    rate: Option<u32>,
    /// Stop after this many seconds of live publishing (default: until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Seed of the random generator.
    #[arg(long)]
    seed: Option<u64>,
    /// Payload format and topics: native, zigbee2mqtt, tasmota, ttn, telegraf, telegraf-json.
    #[arg(long, default_value = "native")]
    format: vigie_firmware_sim::SimFormat,
    /// Shift each device's clock by up to this many seconds (deterministic per device).
    #[arg(long, value_name = "SECS")]
    skew: Option<u64>,
    /// Simulate occasional meter resets and meter swaps.
    #[arg(long)]
    resets: bool,
    /// Do not register the simulated buildings in the data dir's registry.
    #[arg(long)]
    no_provision: bool,
}

/// Where ingest, the simulator and agents reach the broker.
fn broker_endpoint(config: &Config) -> Result<(String, u16)> {
    if config.mqtt.url.is_empty() {
        let a = config.mqtt.listen.0;
        let host = if a.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            a.ip().to_string()
        };
        Ok((host, a.port()))
    } else {
        vigie_ingest::parse_mqtt_url(&config.mqtt.url)
            .with_context(|| "VIGIE_MQTT_URL / mqtt.url".to_string())
    }
}

struct Stores {
    registry: Registry,
    store: Arc<dyn TimeSeriesStore>,
}

fn open_stores(config: &Config) -> Result<Stores> {
    let db = Db::open_dir(&config.storage.data_dir)?;
    let registry = Registry::new(db.clone());
    let store = vigie_core::store::from_config(&config.tsdb, db, registry.clone())
        .context("time-series backend (tsdb.url / VIGIE_TSDB_URL)")?;
    tracing::info!("time series in the {} store", store.name());
    Ok(Stores { registry, store })
}

/// Deletes raw samples older than the retention window at start-up, then once a day
/// (rollups stay; samples published later for a deleted day are quarantined by ingest
/// as `older_than_retention`). Runs in `vigie run` and `vigie ingest`.
fn spawn_retention(
    config: &Config,
    store: Arc<dyn TimeSeriesStore>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let days = config.storage.raw_retention_days;
    if days == 0 {
        return;
    }
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            let before = Timestamp::now().plus_millis(-i64::from(days) * 86_400_000);
            match store.retain(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    "retention: deleted {n} raw samples older than {days} days (rollups kept)"
                ),
                Err(e) => tracing::warn!("retention: {e}"),
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(Duration::from_secs(24 * 3600)) => {}
            }
        }
    });
}

/// Creates the first admin if there is no user yet.
fn bootstrap_admin(registry: &Registry) -> Result<()> {
    if registry.user_count_blocking()? > 0 {
        return Ok(());
    }
    let (password, generated) = match std::env::var("VIGIE_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (random_password(), true),
    };
    registry
        .create_user_blocking("admin", vigie_core::registry::Role::Admin, None, &password)
        .context("cannot create the first admin (VIGIE_ADMIN_PASSWORD)")?;
    if generated {
        // Printed once, on purpose: there is no other way to learn it.
        tracing::warn!(
            "created user `admin` with generated password {password} (shown once; set VIGIE_ADMIN_PASSWORD to choose it)"
        );
    } else {
        tracing::info!("created user `admin` with the password from VIGIE_ADMIN_PASSWORD");
    }
    Ok(())
}

fn sim_options(config: &Config, host: String, port: u16) -> Result<vigie_firmware_sim::SimOptions> {
    // The simulated devices reach an `mqtts://` broker as ingest does, trusting the
    // same authorities (mqtt.ca_file or the bundled roots).
    let ingest = ingest_options(config)?;
    let transport = match ingest.tls {
        Some(_) => Some(ingest.transport()?),
        None => None,
    };
    Ok(vigie_firmware_sim::SimOptions {
        broker_host: host,
        broker_port: port,
        transport: vigie_firmware_sim::BrokerTransport(transport),
        client_id_prefix: "vigie-sim".into(),
        buildings: config.simulator.buildings,
        seed: config.simulator.seed,
        backfill_days: config.simulator.backfill_days,
        interval: config.simulator.interval.0,
        rate: None,
        duration: None,
        progress: false,
        ..Default::default()
    })
}

fn ingest_options(config: &Config) -> Result<vigie_ingest::IngestOptions> {
    let (host, port) = broker_endpoint(config)?;
    Ok(vigie_ingest::IngestOptions::from_config(
        &config.mqtt,
        &config.ingest,
        host,
        port,
    ))
}

async fn bind_http(config: &Config) -> Result<tokio::net::TcpListener> {
    let addr: SocketAddr = config.http.addr.0;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (http.addr / VIGIE_HTTP_ADDR)"))
}

/// The embedded broker, if started, and the credential ingest must use with it.
type StartedBroker = (
    Option<vigie_ingest::EmbeddedBroker>,
    Option<(String, String)>,
);

/// The embedded broker (unless an external one is configured), and the credential
/// ingest must use with it when `mqtt.device_auth` is on.
fn start_broker(config: &Config, registry: &Registry) -> Result<StartedBroker> {
    if !config.mqtt.url.is_empty() {
        return Ok((None, None));
    }
    let auth = config
        .mqtt
        .device_auth
        .then(|| vigie_ingest::auth::BrokerAuth::new(registry.db().clone()));
    let ingest_login = auth.as_ref().map(|a| a.ingest_credentials());
    let broker = vigie_ingest::EmbeddedBroker::start_with_auth(
        config.mqtt.listen.0,
        config.mqtt.max_payload_bytes,
        auth,
    )
    .with_context(|| {
        format!(
            "cannot start the embedded MQTT broker on {} (mqtt.listen / VIGIE_MQTT_LISTEN)",
            config.mqtt.listen
        )
    })?;
    if config.mqtt.device_auth {
        tracing::info!(
            "embedded MQTT broker listening on {} (device credentials required; no per-topic ACL)",
            config.mqtt.listen
        );
    } else {
        tracing::info!("embedded MQTT broker listening on {}", config.mqtt.listen);
        if !config.mqtt.listen.0.ip().is_loopback() {
            tracing::warn!(
                "the embedded MQTT broker listens on {} without authentication: anyone who reaches it may publish. Set mqtt.device_auth = true",
                config.mqtt.listen
            );
        }
    }
    Ok((Some(broker), ingest_login))
}

/// `vigie run`: broker, ingest, dashboard, and the simulator on a fresh data dir.
///
/// On Ctrl-C or SIGTERM the simulator stops first (so nothing is published that ingest
/// would not take), then ingest commits and acknowledges its pending batch, then the
/// web server drains.
pub(crate) async fn run_all(config: Config, demo: bool) -> Result<()> {
    let stores = open_stores(&config)?;
    bootstrap_admin(&stores.registry)?;
    let fresh = stores.registry.buildings(&Scope::All).await?.is_empty();
    let simulate = demo || fresh;
    let signal = Shutdown::new();
    signal.on_signals();
    let parts = Shutdown::new();
    let metrics = Arc::new(Metrics::new());

    // The simulated fleet is in the registry before anything serves: once `/healthz`
    // answers, every simulated building and device is listed.
    if simulate {
        vigie_firmware_sim::demo_fleet(config.simulator.buildings, config.simulator.seed)
            .provision(&stores.registry)
            .await?;
    }

    let (_broker, ingest_login) = start_broker(&config, &stores.registry)?;
    let mut opts = ingest_options(&config)?;
    if ingest_login.is_some() {
        opts.credentials = ingest_login;
    }
    let mut ingest = tokio::spawn(vigie_ingest::run(
        opts,
        stores.registry.clone(),
        stores.store.clone(),
        metrics.clone(),
        parts.wait(),
    ));

    let listener = bind_http(&config).await?;
    tracing::info!("dashboard on http://{}", listener.local_addr()?);
    let state = vigie_dashboard::AppState::with_http(
        stores.registry.clone(),
        stores.store.clone(),
        metrics.clone(),
        &config.http,
    );
    let web = tokio::spawn(vigie_dashboard::serve(listener, state, parts.wait()));
    spawn_retention(&config, stores.store.clone(), parts.wait());

    if simulate && config.mqtt.device_auth && config.mqtt.url.is_empty() {
        tracing::warn!(
            "mqtt.device_auth is on: the simulated devices have no credentials and will be refused by the embedded broker"
        );
    }
    let sim = if simulate {
        let (host, port) = broker_endpoint(&config)?;
        let opts = sim_options(&config, host, port)?;
        let (metrics, stop) = (metrics.clone(), signal.wait());
        tracing::info!(
            "simulating {} buildings: {} days of history, then live readings every {:?}",
            opts.buildings,
            opts.backfill_days,
            opts.interval
        );
        Some(tokio::spawn(async move {
            // Publish only once ingest has subscribed, so nothing is published into a void.
            while !metrics
                .mqtt_connected
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let report = vigie_firmware_sim::run(opts, stop).await;
            if let Ok(r) = &report {
                tracing::info!(
                    "simulator stopped: {} messages, {} samples published",
                    r.messages,
                    r.samples
                );
            }
            report
        }))
    } else {
        None
    };

    let early = tokio::select! {
        _ = signal.wait() => None,
        r = &mut ingest => Some(r),
    };
    signal.trigger();
    if let Some(sim) = sim {
        match tokio::time::timeout(Duration::from_secs(15), sim).await {
            Ok(Ok(Err(e))) => tracing::warn!("simulator stopped: {e}"),
            Ok(Err(e)) => tracing::warn!("simulator task: {e}"),
            Err(_) => tracing::warn!("simulator did not stop within 15 s"),
            Ok(Ok(Ok(_))) => {}
        }
    }
    parts.trigger();
    let ingest_result = match early {
        Some(r) => r,
        None => ingest.await,
    }
    .context("ingest task")?;
    web.await.context("web task")??;
    log_final_report(&metrics);
    ingest_result.context("ingest stopped")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

fn log_final_report(metrics: &Metrics) {
    use std::sync::atomic::Ordering::Relaxed;
    tracing::info!(
        "ingest report: messages received: {}, messages acknowledged: {}, samples written: {}, duplicates: {}",
        metrics.messages_received.load(Relaxed),
        metrics.messages_acked.load(Relaxed),
        metrics.samples_written.load(Relaxed),
        metrics.samples_duplicate.load(Relaxed)
    );
}

/// `vigie ingest`: ingest only (with the embedded broker when no external one is set).
pub(crate) async fn run_ingest(config: Config) -> Result<()> {
    let stores = open_stores(&config)?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let (_broker, ingest_login) = start_broker(&config, &stores.registry)?;
    let mut opts = ingest_options(&config)?;
    if ingest_login.is_some() {
        opts.credentials = ingest_login;
    }
    let metrics = Arc::new(Metrics::new());
    // Ingest is the role that writes raw samples: it keeps them within the window when
    // roles run as separate processes (several runs of retention are harmless).
    spawn_retention(&config, stores.store.clone(), shutdown.wait());
    let result = vigie_ingest::run(
        opts,
        stores.registry,
        stores.store,
        metrics.clone(),
        shutdown.wait(),
    )
    .await;
    log_final_report(&metrics);
    result?;
    Ok(())
}

/// `vigie dashboard`: the web app only; probes the broker for `/healthz`.
pub(crate) async fn run_dashboard(config: Config) -> Result<()> {
    let stores = open_stores(&config)?;
    bootstrap_admin(&stores.registry)?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let metrics = Arc::new(Metrics::new());
    let (host, port) = broker_endpoint(&config)?;
    let probe = metrics.clone();
    tokio::spawn(async move {
        loop {
            let up = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect((host.as_str(), port)),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            probe
                .mqtt_connected
                .store(up, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let listener = bind_http(&config).await?;
    tracing::info!("dashboard on http://{}", listener.local_addr()?);
    let state =
        vigie_dashboard::AppState::with_http(stores.registry, stores.store, metrics, &config.http);
    vigie_dashboard::serve(listener, state, shutdown.wait()).await?;
    Ok(())
}

/// `vigie sim`: publish the simulated fleet to the configured broker.
pub(crate) async fn run_sim(config: Config, args: SimArgs) -> Result<()> {
    let (host, port) = broker_endpoint(&config)?;
    let mut opts = sim_options(&config, host, port)?;
    opts.buildings = args.buildings.unwrap_or(opts.buildings);
    opts.seed = args.seed.unwrap_or(opts.seed);
    opts.backfill_days = args.backfill.unwrap_or(0);
    opts.rate = args.rate;
    opts.duration = args.duration.map(Duration::from_secs);
    opts.progress = true;
    opts.format = args.format;
    opts.skew = args.skew.map(Duration::from_secs);
    opts.resets = args.resets;
    if !args.no_provision {
        let stores = open_stores(&config)?;
        let fleet =
            vigie_firmware_sim::demo_fleet(opts.buildings, opts.seed).with_format(opts.format);
        fleet.provision(&stores.registry).await?;
        eprintln!(
            "registered {} buildings and {} devices in {}",
            fleet.buildings.len(),
            fleet.devices.len(),
            config.storage.data_dir.display()
        );
    }
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    let report = vigie_firmware_sim::run(opts, shutdown.wait()).await?;
    eprintln!(
        "simulated {} devices: {} messages ({} samples) acknowledged by the broker, {} lost with a broken connection",
        report.devices, report.messages, report.samples, report.lost
    );
    Ok(())
}
