//! Publishing the fleet over MQTT: history first (backfill), then live readings.
//!
//! Each device runs as its own task with its own connection ([`crate::link`]). The
//! backfill publishes one JSON array per device per Europe/Paris day, with explicit
//! timestamps on the quarter-hour grid, as fast as the broker acknowledges them; the
//! live phase then publishes one reading per device every `interval`, stamped on the
//! interval grid. This module must never publish a value it did not get from the
//! model, nor count a message the broker did not acknowledge.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::NaiveDate;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;
use tokio::time::Instant;
use vigie_core::payload::{Telemetry, status_topic, telemetry_topic};
use vigie_core::registry::Device;
use vigie_core::time::{local_date, local_midnight};
use vigie_core::{DeviceId, Timestamp};

use crate::SimError;
use crate::climate::SLOT_MS;
use crate::fleet::{DEFAULT_BUILDINGS, demo_fleet};
use crate::link::{DeviceLink, LinkReport, MessageKind};
use crate::model::DeviceModel;

/// Messages a device may have in flight (sent, not yet acknowledged).
const WINDOW: usize = 16;

/// How long a stopping device waits for its last acknowledgements.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to simulate and where to publish it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimOptions {
    /// Broker host name or address.
    pub broker_host: String,
    /// Broker port.
    pub broker_port: u16,
    /// Client ids are `<prefix>-<device id>`.
    pub client_id_prefix: String,
    /// Number of simulated buildings.
    pub buildings: usize,
    /// Seed of every simulated value.
    pub seed: u64,
    /// Local days of history to publish before going live (0: none). The last day is
    /// today, up to now.
    pub backfill_days: u32,
    /// Time between two live readings of a device.
    pub interval: Duration,
    /// Most messages per second, all devices together (`None`: as fast as acked).
    pub rate: Option<u32>,
    /// Length of the live phase (`None`: until shutdown).
    pub duration: Option<Duration>,
    /// Show a progress bar of the backfill on stderr.
    pub progress: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            broker_host: "127.0.0.1".into(),
            broker_port: 1883,
            client_id_prefix: "vigie-sim".into(),
            buildings: DEFAULT_BUILDINGS,
            seed: 42,
            backfill_days: 0,
            interval: Duration::from_secs(10),
            rate: None,
            duration: None,
            progress: false,
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

/// Spaces messages out so that all devices together stay under a rate.
#[derive(Debug)]
struct Pacer {
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

    async fn wait(&self) {
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
struct Shared {
    opts: SimOptions,
    plan: Vec<BackfillDay>,
    pacer: Pacer,
    progress: ProgressBar,
    stop: watch::Receiver<bool>,
}

/// Simulates the demo fleet of `opts.buildings` buildings and publishes it to the
/// broker until `opts.duration` of live readings elapsed or `shutdown` completes.
///
/// Each device publishes `online` (retained) on its status topic when it connects
/// and `offline` when it stops; its last will says `offline` too.
pub async fn run(
    opts: SimOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<SimReport, SimError> {
    if opts.interval.is_zero() {
        return Err(SimError::InvalidOption {
            option: "interval",
            reason: "must be longer than zero".into(),
        });
    }
    if opts.buildings == 0 {
        return Err(SimError::InvalidOption {
            option: "buildings",
            reason: "at least one building is needed".into(),
        });
    }
    let fleet = demo_fleet(opts.buildings, opts.seed);
    let plan = backfill_plan(Timestamp::now(), opts.backfill_days);
    let total = (fleet.devices.len() * plan.len()) as u64;
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
        let model = DeviceModel::new(device, building, shared.opts.seed);
        tasks.spawn(simulate_device(Arc::clone(&shared), device.clone(), model));
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
                    report.messages += r.messages;
                    report.samples += r.samples;
                    report.lost += r.lost;
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

/// Runs `f` unless the stop signal comes first (`None` then).
async fn unless_stopped<F: Future>(stop: &mut watch::Receiver<bool>, f: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => None,
        out = f => Some(out),
    }
}

/// One device: connect, say online, backfill, catch up, live, say offline.
async fn simulate_device(
    shared: Arc<Shared>,
    device: Device,
    mut model: DeviceModel,
) -> Result<LinkReport, SimError> {
    let opts = &shared.opts;
    let mut stop = shared.stop.clone();
    let client_id = format!("{}-{}", opts.client_id_prefix, device.id);
    let connect = DeviceLink::connect(
        &device.id,
        client_id,
        &opts.broker_host,
        opts.broker_port,
        WINDOW,
        shared.progress.clone(),
    );
    let Some(link) = unless_stopped(&mut stop, connect).await else {
        return Ok(LinkReport::default());
    };
    let link = link?;
    let outcome = publish_all(&shared, &link, &device.id, &mut model, &mut stop).await;
    let report = link.close(CLOSE_TIMEOUT).await;
    outcome.map(|()| report)
}

/// One device's publishing session.
struct Session<'a> {
    shared: &'a Shared,
    link: &'a DeviceLink,
    stop: &'a mut watch::Receiver<bool>,
    telemetry_topic: String,
}

impl Session<'_> {
    /// Publishes one message once a window slot is free and the pacer allows it;
    /// `Ok(false)` when stopped first.
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
        kind: MessageKind,
        samples: u64,
    ) -> Result<bool, SimError> {
        let (link, pacer) = (self.link, &self.shared.pacer);
        let wait = async {
            link.ready().await?;
            pacer.wait().await;
            Ok::<(), SimError>(())
        };
        match unless_stopped(self.stop, wait).await {
            None => Ok(false),
            Some(ready) => {
                ready?;
                link.send(topic, payload, retain, kind, samples).await?;
                Ok(true)
            }
        }
    }

    /// Publishes readings on the telemetry topic: an object for one, an array for
    /// several (a backlog).
    async fn telemetry(
        &mut self,
        batch: &[Telemetry],
        kind: MessageKind,
    ) -> Result<bool, SimError> {
        let payload = match batch {
            [one] => one.to_json(),
            _ => Telemetry::backlog_to_json(batch),
        };
        let samples = batch.iter().map(|t| t.values.len() as u64).sum();
        let topic = self.telemetry_topic.clone();
        self.publish(topic, payload, false, kind, samples).await
    }
}

async fn publish_all(
    shared: &Shared,
    link: &DeviceLink,
    id: &DeviceId,
    model: &mut DeviceModel,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), SimError> {
    let mut session = Session {
        shared,
        link,
        stop,
        telemetry_topic: telemetry_topic(id),
    };
    let online = b"online".to_vec();
    if !session
        .publish(status_topic(id), online, true, MessageKind::Status, 0)
        .await?
    {
        return Ok(());
    }
    // History, one message (a JSON array) per local day.
    let mut last = None;
    for day in &shared.plan {
        let batch: Vec<Telemetry> = day.samples.iter().map(|t| model.reading_at(*t)).collect();
        if !session.telemetry(&batch, MessageKind::Backfill).await? {
            return Ok(());
        }
        last = day.samples.last().copied().or(last);
    }
    // Quarter-hours that passed while the backfill ran, as one short backlog.
    if let Some(last) = last {
        let now = Timestamp::now().millis();
        let batch: Vec<Telemetry> = (last.millis() + SLOT_MS..=now)
            .step_by(SLOT_MS as usize)
            .map(|t| model.reading_at(Timestamp(t)))
            .collect();
        if !batch.is_empty() && !session.telemetry(&batch, MessageKind::Live).await? {
            return Ok(());
        }
    }
    // Live readings on the interval grid.
    let interval = i64::try_from(shared.opts.interval.as_millis()).unwrap_or(i64::MAX);
    let deadline = shared.opts.duration.map(|d| Instant::now() + d);
    loop {
        let now = Timestamp::now().millis();
        let tick = (now.div_euclid(interval) + 1).saturating_mul(interval);
        let wake = Instant::now() + Duration::from_millis(u64::try_from(tick - now).unwrap_or(0));
        if deadline.is_some_and(|d| wake > d) {
            return Ok(());
        }
        if unless_stopped(session.stop, tokio::time::sleep_until(wake))
            .await
            .is_none()
        {
            return Ok(());
        }
        let reading = model.reading_at(Timestamp(tick));
        if !session.telemetry(&[reading], MessageKind::Live).await? {
            return Ok(());
        }
    }
}
