//! One simulated device's life: connect, say online, publish its history, then take
//! a reading every interval and publish it, buffering while the broker is unreachable.
//!
//! Readings are taken on schedule whether or not the broker is reachable: they go into
//! a bounded buffer (oldest dropped first when full, and counted), which is emptied as
//! soon as the link is connected and the in-flight window has room. A single fresh
//! reading goes out as the ecosystem publishes a current reading; several waiting
//! readings (a backlog after an outage or a slow broker) go out with their original
//! timestamps, batched where the format allows it ([`crate::formats::Delivery`]).
//! After every reconnection the device says `online` again, like Tasmota does. This
//! module never takes a reading off the schedule's grid and never changes a reading
//! after it was taken.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use vigie_core::Timestamp;
use vigie_core::registry::{Building, Device};

use crate::SimError;
use crate::climate::SLOT_MS;
use crate::firmware::{DeviceReadings, FirmwareOptions, Reading};
use crate::formats::{self, Delivery, DeviceInfo, Message};
use crate::link::{DeviceLink, LinkReport, MessageKind, Slot};
use crate::publish::Shared;

/// Messages a device may have in flight (sent, not yet acknowledged).
const WINDOW: usize = 16;

/// How long a stopping device waits for its last acknowledgements.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one device achieved.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DeviceReport {
    pub(crate) link: LinkReport,
    pub(crate) dropped: u64,
}

/// Runs `f` unless the stop signal comes first (`None` then).
async fn unless_stopped<F: std::future::Future>(
    stop: &mut watch::Receiver<bool>,
    f: F,
) -> Option<F::Output> {
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => None,
        out = f => Some(out),
    }
}

/// One device: connect, say online, backfill, live with a buffer, say offline.
pub(crate) async fn simulate_device(
    shared: Arc<Shared>,
    device: Device,
    building: Building,
) -> Result<DeviceReport, SimError> {
    let opts = &shared.opts;
    let Some(info) = DeviceInfo::of(&device) else {
        return Ok(DeviceReport::default());
    };
    let firmware = DeviceReadings::new(
        &device,
        &building,
        opts.seed,
        FirmwareOptions {
            resets: opts.resets,
            skew: opts.skew,
            day_energy: opts.format.needs_day_energy(),
        },
    );
    let mut stop = shared.stop.clone();
    let connect = DeviceLink::connect(
        &device.id,
        format!("{}-{}", opts.client_id_prefix, device.id),
        (&opts.broker_host, opts.broker_port),
        opts.transport.0.clone(),
        formats::status(opts.format, &info, false),
        WINDOW,
        shared.progress.clone(),
    );
    let Some(link) = unless_stopped(&mut stop, connect).await else {
        return Ok(DeviceReport::default());
    };
    let link = link?;
    let mut state = DeviceState {
        shared: &shared,
        link: &link,
        info,
        firmware,
        buffer: VecDeque::new(),
        backlogged: false,
        announced: 0,
        dropped: 0,
    };
    let outcome = state.run(&mut stop).await;
    let dropped = state.dropped + state.buffer.len() as u64;
    let offline = formats::status(opts.format, &state.info, false);
    let report = link.close(offline, CLOSE_TIMEOUT).await;
    outcome.map(|()| DeviceReport {
        link: report,
        dropped,
    })
}

struct DeviceState<'a> {
    shared: &'a Shared,
    link: &'a DeviceLink,
    info: DeviceInfo,
    firmware: DeviceReadings,
    /// Readings taken, not yet published.
    buffer: VecDeque<Reading>,
    /// The buffer held more than one reading since it was last empty.
    backlogged: bool,
    /// The connection number `online` was last published for.
    announced: u64,
    dropped: u64,
}

/// How a wait of the live loop ended.
enum Step<'a> {
    Tick,
    Slot(Result<Slot<'a>, SimError>),
    Stopped,
}

impl DeviceState<'_> {
    async fn run(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), SimError> {
        let opts = &self.shared.opts;
        self.announced = self.link.connections();
        if let Some(online) = formats::status(opts.format, &self.info, true)
            && !self.publish_now(stop, online, MessageKind::Status).await?
        {
            return Ok(());
        }
        // History: each local day in chunks the format allows, with timestamps.
        let mut last = None;
        for day in &self.shared.plan {
            let readings: Vec<Reading> = day
                .samples
                .iter()
                .map(|t| self.firmware.reading_at(*t))
                .collect();
            for chunk in readings.chunks(opts.format.max_batch()) {
                for m in formats::encode(opts.format, &self.info, chunk, Delivery::History) {
                    if !self.publish_now(stop, m, MessageKind::Backfill).await? {
                        return Ok(());
                    }
                }
            }
            last = day.samples.last().copied().or(last);
        }
        // Quarter-hours that passed while the backfill ran wait in the buffer (none
        // when the backfill ends at a given instant).
        if let Some(last) = last.filter(|_| opts.backfill_until.is_none()) {
            let now = Timestamp::now().millis();
            for t in (last.millis() + SLOT_MS..=now).step_by(SLOT_MS as usize) {
                let r = self.firmware.reading_at(Timestamp(t));
                self.keep(r);
            }
        }
        // Live readings on the interval grid, every tick taken even when late.
        let interval = i64::try_from(opts.interval.as_millis()).unwrap_or(i64::MAX);
        let deadline = opts.duration.map(|d| Instant::now() + d);
        let now = Timestamp::now().millis();
        let mut tick = (now.div_euclid(interval) + 1).saturating_mul(interval);
        loop {
            let wait = u64::try_from(tick - Timestamp::now().millis()).unwrap_or(0);
            let wake = Instant::now() + Duration::from_millis(wait);
            if deadline.is_some_and(|d| wake > d) {
                break;
            }
            let link = self.link;
            let pending = !self.buffer.is_empty();
            let step = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => Step::Stopped,
                () = tokio::time::sleep_until(wake) => Step::Tick,
                slot = link.ready(), if pending => Step::Slot(slot),
            };
            match step {
                Step::Stopped => return Ok(()),
                Step::Tick => {
                    let r = self.firmware.reading_at(Timestamp(tick));
                    self.keep(r);
                    tick = tick.saturating_add(interval);
                }
                Step::Slot(slot) => self.send_next(slot?).await?,
            }
        }
        // The live phase is over: publish what is still buffered while connected.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while !self.buffer.is_empty() && self.link.is_connected() {
                let slot = self.link.ready().await?;
                self.send_next(slot).await?;
            }
            Ok::<(), SimError>(())
        })
        .await;
        Ok(())
    }

    /// Buffers a reading, dropping the oldest when full.
    fn keep(&mut self, r: Reading) {
        if self.buffer.len() >= self.shared.opts.buffer {
            self.buffer.pop_front();
            self.dropped += 1;
        }
        self.buffer.push_back(r);
        if self.buffer.len() > 1 {
            self.backlogged = true;
        }
    }

    /// Uses a window slot: `online` after a (re)connection, else the next readings.
    async fn send_next(&mut self, slot: Slot<'_>) -> Result<(), SimError> {
        let format = self.shared.opts.format;
        let connections = self.link.connections();
        if self.announced != connections {
            self.announced = connections;
            if let Some(online) = formats::status(format, &self.info, true) {
                return self.link.send(slot, online, MessageKind::Status).await;
            }
        }
        self.shared.pacer.wait().await;
        let n = format.max_batch().min(self.buffer.len());
        let chunk: Vec<Reading> = self.buffer.drain(..n).collect();
        let delivery = if chunk.len() == 1 && !self.backlogged {
            Delivery::Current
        } else {
            Delivery::History
        };
        if self.buffer.is_empty() {
            self.backlogged = false;
        }
        let mut slot = Some(slot);
        // One message per chunk for every format; any more would wait for a slot.
        for m in formats::encode(format, &self.info, &chunk, delivery) {
            let s = match slot.take() {
                Some(s) => s,
                None => self.link.ready().await?,
            };
            self.link.send(s, m, MessageKind::Live).await?;
        }
        Ok(())
    }

    /// Publishes one message once a slot is free and the pacer allows it; `Ok(false)`
    /// when stopped first.
    async fn publish_now(
        &self,
        stop: &mut watch::Receiver<bool>,
        m: Message,
        kind: MessageKind,
    ) -> Result<bool, SimError> {
        let (link, pacer) = (self.link, &self.shared.pacer);
        let wait = async {
            let slot = link.ready().await?;
            pacer.wait().await;
            Ok::<_, SimError>(slot)
        };
        match unless_stopped(stop, wait).await {
            None => Ok(false),
            Some(slot) => {
                link.send(slot?, m, kind).await?;
                Ok(true)
            }
        }
    }
}
