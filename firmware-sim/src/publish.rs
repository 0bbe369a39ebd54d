//! Publishing the fleet over MQTT: options, the backfill plan, pacing, and the run
//! that starts one task per device ([`crate::device`]) and adds up what they published.
//!
//! The backfill publishes each device's history per Europe/Paris day, with explicit
//! timestamps on the quarter-hour grid, as fast as the broker acknowledges them; the
//! live phase then takes one reading per device every `interval`, stamped on the
//! interval grid, buffered while the broker is unreachable. This module must never
//! publish a value it did not get from the model, nor count a message the broker did
//! not acknowledge.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::time::Instant;
use vigie_core::Timestamp;
use vigie_core::registry::Device;
use vigie_core::time::{local_date, local_midnight};

use crate::SimError;
use crate::climate::SLOT_MS;
use crate::device::simulate_device;
use crate::firmware::{DeviceReadings, FirmwareOptions, Reading};
use crate::fleet::{DEFAULT_BUILDINGS, demo_fleet};
use crate::formats::SimFormat;

/// Readings a device keeps while the broker is unreachable, by default (Telegraf's
/// `metric_buffer_limit` default).
pub const DEFAULT_BUFFER: usize = 10_000;

/// How the devices reach the broker: `None` is plain TCP; `Some` a rumqttc transport,
/// such as the TLS one ingest builds for `mqtts://` (so both trust the same authorities).
#[derive(Clone, Default)]
pub struct BrokerTransport(pub Option<rumqttc::Transport>);

impl std::fmt::Debug for BrokerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a TLS configuration (it may carry client keys).
        f.write_str(match self.0 {
            None => "BrokerTransport(tcp)",
            Some(_) => "BrokerTransport(custom)",
        })
    }
}

impl PartialEq for BrokerTransport {
    /// Transports have no equality: two are equal when both are plain TCP.
    fn eq(&self, other: &Self) -> bool {
        self.0.is_none() && other.0.is_none()
    }
}

/// What to simulate and where to publish it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Broker host name or address.
    pub broker_host: String,
    /// Broker port.
    pub broker_port: u16,
    /// How to reach the broker: plain TCP (default) or TLS for `mqtts://`.
    pub transport: BrokerTransport,
    /// Client ids are `<prefix>-<device id>` (stable: sessions are persistent).
    pub client_id_prefix: String,
    /// Number of simulated buildings.
    pub buildings: usize,
    /// Seed of every simulated value (and of meter events and clock offsets).
    pub seed: u64,
    /// Local days of history to publish before going live (0: none). The last day is
    /// today, up to now.
    pub backfill_days: u32,
    /// The backfill's end instead of now (`None`: now, and the quarter-hours that pass
    /// while the backfill runs are published too). With an instant, the history is the
    /// same whenever the run happens (tests compare it with [`backfill_readings`]); the
    /// live phase still follows the wall clock, after a gap.
    pub backfill_until: Option<Timestamp>,
    /// Time between two live readings of a device.
    pub interval: Duration,
    /// Most messages per second, all devices together (`None`: as fast as acked).
    pub rate: Option<u32>,
    /// Length of the live phase (`None`: until shutdown).
    pub duration: Option<Duration>,
    /// Show a progress bar of the backfill on stderr.
    pub progress: bool,
    /// The ecosystem whose payloads and topics the devices use.
    pub format: SimFormat,
    /// Largest clock error of a device: each gets a fixed offset in `[-skew, +skew]`
    /// drawn from the seed, added to every timestamp it publishes (`None`: exact).
    pub skew: Option<Duration>,
    /// Meters are reset and swapped now and then, deterministically from the seed
    /// ([`crate::meter`]).
    pub resets: bool,
    /// Readings a device buffers while the broker is unreachable; past it the oldest
    /// are dropped (and counted).
    pub buffer: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            broker_host: "127.0.0.1".into(),
            broker_port: 1883,
            transport: BrokerTransport::default(),
            client_id_prefix: "vigie-sim".into(),
            buildings: DEFAULT_BUILDINGS,
            seed: 42,
            backfill_days: 0,
            backfill_until: None,
            interval: Duration::from_secs(10),
            rate: None,
            duration: None,
            progress: false,
            format: SimFormat::Native,
            skew: None,
            resets: false,
            buffer: DEFAULT_BUFFER,
        }
    }
}

/// What a run published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimReport {
    /// Simulated devices.
    pub devices: usize,
    /// Telemetry messages acknowledged by the broker.
    pub messages: u64,
    /// Values (one quantity at one instant) in those messages.
    pub samples: u64,
    /// Telemetry messages lost with a broken connection (never acknowledged).
    pub lost: u64,
    /// Readings dropped because a device's buffer was full, or still buffered when
    /// the run stopped with the broker unreachable.
    pub dropped: u64,
}

/// The history of one local day: quarter-hour instants from its midnight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillDay {
    /// The Europe/Paris date.
    pub date: NaiveDate,
    /// Sample instants, in order, all on that date.
    pub samples: Vec<Timestamp>,
}

/// The backfill of `days` local days ending at `now`: every quarter-hour from the
/// first day's midnight up to `now`, grouped by Europe/Paris date (92, 96 or 100
/// samples on a full day).
pub fn backfill_plan(now: Timestamp, days: u32) -> Vec<BackfillDay> {
    let today = local_date(now);
    (0..days)
        .rev()
        .filter_map(|back| today.checked_sub_days(chrono::Days::new(u64::from(back))))
        .map(|date| {
            let start = local_midnight(date).millis();
            let end = date
                .succ_opt()
                .map(|next| local_midnight(next).millis())
                .unwrap_or(start);
            let samples = (start..end.min(now.millis() + 1))
                .step_by(SLOT_MS as usize)
                .map(Timestamp)
                .collect();
            BackfillDay { date, samples }
        })
        .collect()
}

/// The ground truth of a backfill: for each device of the fleet `opts` describes, the
/// readings (values as measured, before any encoding) its backfill publishes when it
/// ends at `until` — exactly what [`run`] publishes with `backfill_until = Some(until)`
/// and the same options.
pub fn backfill_readings(opts: &SimOptions, until: Timestamp) -> Vec<(Device, Vec<Reading>)> {
    let fleet = demo_fleet(opts.buildings, opts.seed).with_format(opts.format);
    let plan = backfill_plan(until, opts.backfill_days);
    fleet
        .devices
        .iter()
        .filter_map(|device| {
            let building = fleet.building_of(device)?;
            let mut firmware = DeviceReadings::new(
                device,
                building,
                opts.seed,
                FirmwareOptions {
                    resets: opts.resets,
                    skew: opts.skew,
                    day_energy: opts.format.needs_day_energy(),
                },
            );
            let readings = plan
                .iter()
                .flat_map(|day| day.samples.iter())
                .map(|t| firmware.reading_at(*t))
                .collect();
            Some((device.clone(), readings))
        })
        .collect()
}

/// Spaces messages out so that all devices together stay under a rate.
#[derive(Debug)]
pub(crate) struct Pacer {
    step: Option<Duration>,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(rate: Option<u32>) -> Pacer {
        Pacer {
            step: rate.filter(|r| *r > 0).map(|r| Duration::from_secs(1) / r),
            next: Mutex::new(Instant::now()),
        }
    }

    pub(crate) async fn wait(&self) {
        let Some(step) = self.step else { return };
        let at = {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            let at = (*next).max(Instant::now());
            *next = at + step;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// What every device task shares.
pub(crate) struct Shared {
    pub(crate) opts: SimOptions,
    pub(crate) plan: Vec<BackfillDay>,
    pub(crate) pacer: Pacer,
    pub(crate) progress: ProgressBar,
    pub(crate) stop: watch::Receiver<bool>,
}

fn check(opts: &SimOptions) -> Result<(), SimError> {
    let invalid = |option, reason: &str| {
        Err(SimError::InvalidOption {
            option,
            reason: reason.into(),
        })
    };
    if opts.interval.is_zero() {
        return invalid("interval", "must be longer than zero");
    }
    if opts.buildings == 0 {
        return invalid("buildings", "at least one building is needed");
    }
    if opts.buffer == 0 {
        return invalid(
            "buffer",
            "a device must be able to keep at least one reading",
        );
    }
    Ok(())
}

/// Simulates the demo fleet of `opts.buildings` buildings and publishes it to the
/// broker in `opts.format` until `opts.duration` of live readings elapsed or
/// `shutdown` completes.
///
/// Each device whose ecosystem has an availability topic publishes `online` there
/// (retained) whenever it connects and `offline` when it stops; its last will says
/// `offline` too.
pub async fn run(
    opts: SimOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<SimReport, SimError> {
    check(&opts)?;
    let fleet = demo_fleet(opts.buildings, opts.seed).with_format(opts.format);
    let plan = backfill_plan(
        opts.backfill_until.unwrap_or_else(Timestamp::now),
        opts.backfill_days,
    );
    let per_device: usize = plan
        .iter()
        .map(|d| d.samples.len().div_ceil(opts.format.max_batch()))
        .sum();
    let total = (fleet.devices.len() * per_device) as u64;
    let progress = if opts.progress && total > 0 {
        let bar = ProgressBar::new(total);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:40}] {pos}/{len} messages ({per_sec}, {eta} left)",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("backfill of {} days", plan.len()));
        bar
    } else {
        ProgressBar::hidden()
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let shared = Arc::new(Shared {
        pacer: Pacer::new(opts.rate),
        opts,
        plan,
        progress,
        stop: stop_rx,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for device in &fleet.devices {
        let Some(building) = fleet.building_of(device) else {
            continue;
        };
        tasks.spawn(simulate_device(
            Arc::clone(&shared),
            device.clone(),
            building.clone(),
        ));
    }
    let devices = tasks.len();
    let stopper = Arc::clone(&stop_tx);
    let collect = async move {
        let mut report = SimReport {
            devices,
            ..SimReport::default()
        };
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let outcome = joined.map_err(|e| SimError::Task(e.to_string()));
            match outcome.and_then(|r| r) {
                Ok(r) => {
                    report.messages += r.link.messages;
                    report.samples += r.link.samples;
                    report.lost += r.link.lost;
                    report.dropped += r.dropped;
                }
                Err(e) => {
                    // One device failing (broker unreachable…) stops the others.
                    stopper.send_replace(true);
                    first_error.get_or_insert(e);
                }
            }
        }
        (report, first_error)
    };
    tokio::pin!(collect);
    tokio::pin!(shutdown);
    let (report, error) = tokio::select! {
        done = &mut collect => done,
        () = &mut shutdown => {
            // Ask every device to stop cleanly, then wait for them.
            stop_tx.send_replace(true);
            collect.await
        }
    };
    shared.progress.abandon();
    match error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
