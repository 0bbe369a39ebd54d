//! From a batch of received messages to what must be written: samples, quarantine
//! entries, last-seen instants and status changes.
//!
//! [`decode_batch`] is pure and runs once per batch; [`resolve`] asks the registry
//! (known devices, series ids) and is re-run on every commit attempt, so that a device
//! provisioned or removed meanwhile is seen. Quarantine entries are grouped per message
//! and reason (one row holds the payload once, with up to [`MAX_DETAILS`] details), so
//! a large backlog full of bad values never multiplies its payload. Nothing here may
//! drop a message without a sample, a status or a quarantine entry to show for it.
//!
//! Counter readings are not turned into samples here: they become
//! [`CounterJob`]s for [`crate::normalise`], whose refusals join the message's other
//! problems in [`Plan::finish`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use rumqttc::Publish;
use vigie_core::registry::{DeviceKind, QuarantineEntry, QuarantineReason, Registry, Sighting};
use vigie_core::store::Sample;
use vigie_core::{DeviceId, Quantity, SeriesKind, Timestamp};

use super::connection::Inbound;
use crate::decode::{DecodeContext, Decoded, Decoders, MessageKind, Problem, Route};
use crate::normalise::{self, CounterJob, MeterCache};

/// Details kept per quarantine entry; the rest are counted.
pub(crate) const MAX_DETAILS: usize = 5;
/// Bytes of an oversized payload kept in quarantine.
pub(crate) const TOO_LARGE_KEPT_BYTES: usize = 4096;

/// One message after decoding.
#[derive(Debug)]
pub(crate) struct DecodedMessage {
    /// The packet (topic and payload; cheap to clone).
    pub(crate) publish: Publish,
    pub(crate) received_at: Timestamp,
    /// The route, or why the topic is unusable.
    pub(crate) route: Result<Route, Problem>,
    /// Format of the decoder that recognised the topic (empty if none did).
    pub(crate) format: &'static str,
    pub(crate) decoded: Decoded,
}

/// Decodes every message of a batch (pure; never panics).
pub(crate) fn decode_batch(
    batch: &[Inbound],
    decoders: &Decoders,
    max_payload_bytes: usize,
    max_future_skew: std::time::Duration,
) -> Vec<DecodedMessage> {
    batch
        .iter()
        .map(|m| {
            let p = &m.publish;
            let ctx = DecodeContext {
                received_at: m.received_at,
                max_future_skew,
            };
            let routed = decoders.route(&p.topic);
            let route = routed.as_ref().map(|(_, r)| r.clone()).map_err(Clone::clone);
            let decoded = match &routed {
                Err(problem) => Decoded {
                    problems: vec![problem.clone()],
                    ..Decoded::default()
                },
                Ok(_) if p.payload.len() > max_payload_bytes => Decoded::problem(
                    QuarantineReason::TooLarge,
                    format!(
                        "payload of {} bytes exceeds the limit of {max_payload_bytes} bytes; its first {} bytes are kept",
                        p.payload.len(),
                        TOO_LARGE_KEPT_BYTES.min(p.payload.len())
                    ),
                ),
                Ok((decoder, route)) => decoder.decode(route, &p.payload, &ctx),
            };
            DecodedMessage {
                publish: p.clone(),
                received_at: m.received_at,
                route,
                format: routed.as_ref().map(|(d, _)| d.format()).unwrap_or(""),
                decoded,
            }
        })
        .collect()
}

/// What one commit writes.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) samples: Vec<Sample>,
    pub(crate) quarantine: Vec<QuarantineEntry>,
    /// Quarantined items per reason (values, elements or messages), for metrics.
    pub(crate) quarantined: BTreeMap<&'static str, (QuarantineReason, u64)>,
    pub(crate) seen: Vec<(DeviceId, Timestamp)>,
    pub(crate) statuses: Vec<(DeviceId, bool)>,
    /// Messages of unknown devices, for the pending list.
    pub(crate) sightings: Vec<Sighting>,
    /// Counter readings to normalise.
    pub(crate) jobs: Vec<CounterJob>,
    /// Messages of known devices (index, device), whose problems [`Plan::finish`]
    /// quarantines.
    known: Vec<(usize, DeviceId)>,
    /// Problems found after decoding (normalisation), by message index.
    extra: Vec<(usize, Problem)>,
    /// Indexes of messages quarantined as `unknown_device`.
    pub(crate) unknown: Vec<usize>,
}

impl Plan {
    fn count(&mut self, reason: QuarantineReason, n: u64) {
        self.quarantined
            .entry(reason.as_str())
            .or_insert((reason, 0))
            .1 += n;
    }

    /// Adds an entry; an oversized payload is kept truncated, whatever the reason.
    fn quarantine(
        &mut self,
        m: &DecodedMessage,
        device: Option<&DeviceId>,
        reason: QuarantineReason,
        detail: String,
    ) {
        let full = &m.publish.payload;
        let oversized = m
            .decoded
            .problems
            .iter()
            .any(|p| p.reason == QuarantineReason::TooLarge);
        let payload = if oversized {
            full[..TOO_LARGE_KEPT_BYTES.min(full.len())].to_vec()
        } else {
            full.to_vec()
        };
        self.quarantine.push(QuarantineEntry {
            received_at: m.received_at,
            topic: m.publish.topic.clone(),
            device_id: device.cloned(),
            reason,
            detail,
            payload,
        });
    }
}

/// Devices known to exist, with their kind; only positive answers are cached, so that
/// a device provisioned later is found at once.
#[derive(Debug, Default)]
pub(crate) struct DeviceCache {
    known: Mutex<HashMap<DeviceId, DeviceKind>>,
}

impl DeviceCache {
    /// The kind of a registered device, `None` if it is unknown.
    fn kind_of(&self, registry: &Registry, id: &DeviceId) -> Result<Option<DeviceKind>, String> {
        if let Some(kind) = self.known.lock().ok().and_then(|k| k.get(id).copied()) {
            return Ok(Some(kind));
        }
        let found = registry
            .device_for_ingest_blocking(id)
            .map_err(|e| format!("registry lookup of device {id}: {e}"))?
            .map(|d| d.kind);
        if let (Some(kind), Ok(mut k)) = (found, self.known.lock()) {
            k.insert(id.clone(), kind);
        }
        Ok(found)
    }

    /// Forgets everything (after a failed commit: a device may have been removed).
    pub(crate) fn clear(&self) {
        if let Ok(mut k) = self.known.lock() {
            k.clear();
        }
    }
}

/// The quarantine detail of a reading older than the raw retention cut.
pub(crate) fn older_than_retention(ts: Timestamp, retained_before: Timestamp) -> Problem {
    Problem::new(
        QuarantineReason::OlderThanRetention,
        format!(
            "sample at {} is older than the raw retention window (raw samples before {} \
             were deleted, storage.raw_retention_days): not stored",
            ts.to_rfc3339(),
            retained_before.to_rfc3339()
        ),
    )
}

/// Resolves devices and series: blocking (registry); run on the blocking pool.
/// Readings before `retained_before` (the store's retention cut) become
/// `older_than_retention` problems of their message instead of samples.
pub(crate) fn resolve(
    messages: &[DecodedMessage],
    registry: &Registry,
    devices: &DeviceCache,
    meters: &MeterCache,
    retained_before: Option<Timestamp>,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    // Per batch, each device and series is asked for once (a batch holds a few
    // messages of each device): no clone, lock or lookup per reading.
    let mut last_seen: HashMap<&DeviceId, Timestamp> = HashMap::new();
    let mut kinds: HashMap<&DeviceId, Option<DeviceKind>> = HashMap::new();
    let mut series_ids: HashMap<(&DeviceId, Quantity), vigie_core::SeriesId> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let route = match &m.route {
            Ok(route) => route,
            Err(problem) => {
                plan.count(problem.reason, 1);
                plan.quarantine(m, None, problem.reason, problem.detail.clone());
                continue;
            }
        };
        // A payload may name its device itself (Telegraf's `device` tag); else the topic does.
        let device = m.decoded.device.as_ref().unwrap_or(&route.device);
        let kind = match kinds.get(device) {
            Some(&kind) => kind,
            None => *kinds
                .entry(device)
                .or_insert(devices.kind_of(registry, device)?),
        };
        let Some(kind) = kind else {
            plan.count(QuarantineReason::UnknownDevice, 1);
            plan.quarantine(
                m,
                Some(device),
                QuarantineReason::UnknownDevice,
                format!(
                    "device {device} is not in the registry ({} message)",
                    match route.kind {
                        MessageKind::Telemetry => "telemetry",
                        MessageKind::Status => "status",
                    }
                ),
            );
            plan.unknown.push(i);
            plan.sightings.push(Sighting {
                device_id: device.clone(),
                received_at: m.received_at,
                topic: m.publish.topic.clone(),
                format: m.format.to_string(),
                payload: m.publish.payload.to_vec(),
            });
            continue;
        };
        let seen = last_seen.entry(device).or_insert(m.received_at);
        *seen = (*seen).max(m.received_at);
        if let Some(online) = m.decoded.online {
            plan.statuses.push((device.clone(), online));
        }
        for r in &m.decoded.readings {
            if let Some(cut) = retained_before
                && r.ts < cut
            {
                plan.extra.push((i, older_than_retention(r.ts, cut)));
                continue;
            }
            if r.quantity.kind() == SeriesKind::Counter {
                match normalise::counter_job(i, device, r, registry, meters)? {
                    Ok(job) => plan.jobs.push(job),
                    Err(problem) => plan.extra.push((i, problem)),
                }
                continue;
            }
            // Ecosystems publish a bare `temperature`: outdoors, it is the outdoor one.
            let quantity = match (kind, r.quantity) {
                (DeviceKind::OutdoorThermometer, Quantity::TemperatureC) => {
                    Quantity::OutdoorTemperatureC
                }
                (_, q) => q,
            };
            let series = match series_ids.get(&(device, quantity)) {
                Some(&id) => id,
                None => {
                    let id = registry
                        .series_id_blocking(device, quantity)
                        .map_err(|e| format!("series of {device} {quantity}: {e}"))?;
                    series_ids.insert((device, quantity), id);
                    id
                }
            };
            plan.samples.push(Sample {
                series,
                ts: r.ts,
                value: r.value,
            });
        }
        plan.known.push((i, device.clone()));
    }
    plan.seen = last_seen
        .into_iter()
        .map(|(d, ts)| (d.clone(), ts))
        .collect();
    Ok(plan)
}

impl Plan {
    /// Adds the normaliser's output: its samples and refusals.
    pub(crate) fn add_normalised(&mut self, samples: Vec<Sample>, problems: Vec<(usize, Problem)>) {
        self.samples.extend(samples);
        self.extra.extend(problems);
    }

    /// Quarantines the problems of known devices' messages: one entry per message and
    /// reason, with the first details.
    pub(crate) fn finish(&mut self, messages: &[DecodedMessage]) {
        let mut extra: HashMap<usize, Vec<&Problem>> = HashMap::new();
        let taken = std::mem::take(&mut self.extra);
        for (i, p) in &taken {
            extra.entry(*i).or_default().push(p);
        }
        for (i, device) in std::mem::take(&mut self.known) {
            let Some(m) = messages.get(i) else { continue };
            let mut by_reason: BTreeMap<&'static str, (QuarantineReason, Vec<&str>)> =
                BTreeMap::new();
            let more = extra.get(&i).map(Vec::as_slice).unwrap_or_default();
            for p in m.decoded.problems.iter().chain(more.iter().copied()) {
                by_reason
                    .entry(p.reason.as_str())
                    .or_insert((p.reason, Vec::new()))
                    .1
                    .push(&p.detail);
            }
            for (_, (reason, details)) in by_reason {
                self.count(reason, details.len() as u64);
                let mut detail = details
                    .iter()
                    .take(MAX_DETAILS)
                    .copied()
                    .collect::<Vec<_>>()
                    .join("; ");
                if details.len() > MAX_DETAILS {
                    detail.push_str(&format!(" (and {} more)", details.len() - MAX_DETAILS));
                }
                self.quarantine(m, Some(&device), reason, detail);
            }
        }
    }
}

/// Writes the registry side of a plan (quarantine, last seen, pending devices, statuses)
/// in one transaction of its own, for a store in another file (blocking).
pub(crate) fn write_registry(plan: &Plan, registry: &Registry) -> Result<(), String> {
    let mut step = "";
    registry
        .db()
        .call_blocking(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            write_registry_in(plan, registry, &tx, &mut step)?;
            tx.commit()?;
            Ok(())
        })
        .map_err(|e| match step {
            "" => format!("registry write: {e}"),
            step => format!("{step}: {e}"),
        })
}

/// Writes the registry side of a plan within the caller's transaction on `c` (a
/// connection to the registry's file, see [`Committer`](super::commit::Committer));
/// `step` names the write under way, for the error's context.
pub(crate) fn write_registry_in(
    plan: &Plan,
    registry: &Registry,
    c: &rusqlite::Connection,
    step: &mut &'static str,
) -> Result<(), vigie_core::db::DbError> {
    *step = "quarantine write";
    registry.quarantine_in(c, &plan.quarantine)?;
    *step = "last-seen update";
    registry.touch_devices_in(c, &plan.seen)?;
    *step = "pending devices update";
    registry.record_sightings_in(c, &plan.sightings)?;
    *step = "status update";
    for (device, online) in &plan.statuses {
        registry.set_device_online_in(c, device, *online)?;
    }
    *step = "";
    Ok(())
}
