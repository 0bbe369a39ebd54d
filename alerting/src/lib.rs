//! Alerting: rules over series, an alert state machine (pending → firing → resolved,
//! acknowledged), notifications by email with a chart, and an outbox folder when no
//! SMTP server is configured.
//!
//! It reads the store and the registry and never writes samples. Intentionally empty
//! until the alerting issue; the binary already depends on it so that `vigie run` will
//! compose it like the other parts.
