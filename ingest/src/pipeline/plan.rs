//! From a batch of received messages to what must be written: samples, quarantine
//! entries, last-seen instants and status changes.
//!
//! [`decode_batch`] is pure and runs once per batch; [`resolve`] asks the registry
//! (known devices, series ids) and is re-run on every commit attempt, so that a device
//! provisioned or removed meanwhile is seen. Quarantine entries are grouped per message
//! and reason (one row holds the payload once, with up to [`MAX_DETAILS`] details), so
//! a large backlog full of bad values never multiplies its payload. Nothing here may
//! drop a message without a sample, a status or a quarantine entry to show for it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use rumqttc::Publish;
use vigie_core::registry::{QuarantineEntry, QuarantineReason, Registry};
use vigie_core::store::Sample;
use vigie_core::{DeviceId, Timestamp};

use super::connection::Inbound;
use crate::decode::{DecodeContext, Decoded, Decoders, MessageKind, Problem, Route};

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

/// Devices known to exist; only positive answers are cached, so that a device
/// provisioned later is found at once.
#[derive(Debug, Default)]
pub(crate) struct DeviceCache {
    known: Mutex<HashSet<DeviceId>>,
}

impl DeviceCache {
    fn is_known(&self, registry: &Registry, id: &DeviceId) -> Result<bool, String> {
        if self.known.lock().map(|k| k.contains(id)).unwrap_or(false) {
            return Ok(true);
        }
        let found = registry
            .device_for_ingest_blocking(id)
            .map_err(|e| format!("registry lookup of device {id}: {e}"))?
            .is_some();
        if let (true, Ok(mut k)) = (found, self.known.lock()) {
            k.insert(id.clone());
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

/// Resolves devices and series: blocking (registry); run on the blocking pool.
pub(crate) fn resolve(
    messages: &[DecodedMessage],
    registry: &Registry,
    devices: &DeviceCache,
) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let mut last_seen: HashMap<DeviceId, Timestamp> = HashMap::new();
    for m in messages {
        let route = match &m.route {
            Ok(route) => route,
            Err(problem) => {
                plan.count(problem.reason, 1);
                plan.quarantine(m, None, problem.reason, problem.detail.clone());
                continue;
            }
        };
        let device = &route.device;
        if !devices.is_known(registry, device)? {
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
            continue;
        }
        let seen = last_seen.entry(device.clone()).or_insert(m.received_at);
        *seen = (*seen).max(m.received_at);
        if let Some(online) = m.decoded.online {
            plan.statuses.push((device.clone(), online));
        }
        for r in &m.decoded.readings {
            let series = registry
                .series_id_blocking(device, r.quantity)
                .map_err(|e| format!("series of {device} {}: {e}", r.quantity))?;
            plan.samples.push(Sample {
                series,
                ts: r.ts,
                value: r.value,
            });
        }
        // One entry per reason for this message, with the first details.
        let mut by_reason: BTreeMap<&'static str, (QuarantineReason, Vec<&str>)> = BTreeMap::new();
        for p in &m.decoded.problems {
            by_reason
                .entry(p.reason.as_str())
                .or_insert((p.reason, Vec::new()))
                .1
                .push(&p.detail);
        }
        for (_, (reason, details)) in by_reason {
            plan.count(reason, details.len() as u64);
            let mut detail = details
                .iter()
                .take(MAX_DETAILS)
                .copied()
                .collect::<Vec<_>>()
                .join("; ");
            if details.len() > MAX_DETAILS {
                detail.push_str(&format!(" (and {} more)", details.len() - MAX_DETAILS));
            }
            plan.quarantine(m, Some(device), reason, detail);
        }
    }
    plan.seen = last_seen.into_iter().collect();
    Ok(plan)
}

/// Writes the registry side of a plan: quarantine, last seen, statuses (blocking).
pub(crate) fn write_registry(plan: &Plan, registry: &Registry) -> Result<(), String> {
    registry
        .quarantine_blocking(&plan.quarantine)
        .map_err(|e| format!("quarantine write: {e}"))?;
    registry
        .touch_devices_blocking(&plan.seen)
        .map_err(|e| format!("last-seen update: {e}"))?;
    for (device, online) in &plan.statuses {
        registry
            .set_device_online_blocking(device, *online)
            .map_err(|e| format!("status of {device}: {e}"))?;
    }
    Ok(())
}
