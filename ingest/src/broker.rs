//! The embedded MQTT broker: rumqttd, in-process, for the zero-setup default.
//!
//! [`EmbeddedBroker::start`] configures rumqttd (MQTT 3.1.1 listener, 10,000
//! connections, payloads up to the configured size, persistent sessions), runs it on its
//! own thread and returns once the port listens (seen in `/proc/net/tcp`, so that no
//! probe connection makes rumqttd log an error).
//!
//! What it does not do, and must never be documented as doing:
//! - **No persistence.** Sessions, retained messages and in-flight QoS 1 messages live
//!   in memory only: they are lost when the process ends. A message a device got a
//!   PUBACK for, but that ingest had not committed yet, is lost on a crash or restart.
//!   Durability across restarts needs an external broker (mosquitto with
//!   `persistence true`).
//! - **No shutdown.** rumqttd has no stop call: the broker runs until the process
//!   exits. Dropping [`EmbeddedBroker`] does not stop it.
//! - **Bounded memory, bounded lag.** Each subscription filter keeps a log of
//!   [`SEGMENT_COUNT`] in-memory segments; a subscriber lagging behind by more than that
//!   loses the oldest messages. The broker sends at most 100 unacknowledged QoS 1
//!   messages to one subscriber (a rumqttd constant).
//! - **Authentication, not authorisation.** With [`BrokerAuth`] (`mqtt.device_auth`)
//!   every CONNECT must carry a device's current credential (registry) or ingest's own
//!   (generated at start). A refused client sees its connection closed without a
//!   CONNACK refusal code (rumqttd's behaviour), so devices need their own backoff.
//!   Without it (the default) anyone who reaches the port may publish.
//! - **No topic ACLs**: a device with valid credentials may publish under another
//!   device's topic. Where that matters use mosquitto with the files of
//!   `vigie broker mosquitto-config` (see [`crate::auth`]). No TLS, no websockets
//!   (built without those features).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::auth::BrokerAuth;
use crate::error::IngestError;

/// Most simultaneous client connections.
pub const MAX_CONNECTIONS: usize = 10_000;
/// In-memory log segments kept per subscription filter.
pub const SEGMENT_COUNT: usize = 16;
/// Smallest size of one log segment (grown to the largest payload when that is larger).
pub const MIN_SEGMENT_BYTES: usize = 8 << 20;
/// Room for the topic and headers around the largest payload.
const PACKET_OVERHEAD: usize = 64 << 10;
/// How long `start` waits for the port to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    _thread: thread::JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts rumqttd on `listen` and returns once it accepts connections.
    ///
    /// Port 0 picks a free port (found by binding and releasing it just before the
    /// broker binds it; [`EmbeddedBroker::addr`] tells which). Fails with a message
    /// naming the address when it cannot be bound (already in use, no permission).
    pub fn start(
        listen: SocketAddr,
        max_payload_bytes: usize,
    ) -> Result<EmbeddedBroker, IngestError> {
        EmbeddedBroker::start_with_auth(listen, max_payload_bytes, None)
    }

    /// Like [`EmbeddedBroker::start`]; with `auth`, only clients with valid
    /// credentials may connect.
    pub fn start_with_auth(
        listen: SocketAddr,
        max_payload_bytes: usize,
        auth: Option<BrokerAuth>,
    ) -> Result<EmbeddedBroker, IngestError> {
        // rumqttd only logs a failed bind from its own thread: try it first, here, to
        // give the caller a real error.
        let probe = TcpListener::bind(listen).map_err(|source| IngestError::BrokerBind {
            addr: listen,
            source,
        })?;
        let addr = probe
            .local_addr()
            .map_err(|source| IngestError::BrokerBind {
                addr: listen,
                source,
            })?;
        drop(probe);

        let mut config = broker_config(addr, max_payload_bytes);
        if let Some(auth) = auth
            && let Some(server) = config.v4.as_mut().and_then(|v4| v4.values_mut().next())
        {
            server.set_auth_handler(move |_client_id, username, password| {
                let auth = auth.clone();
                async move { auth.check(username, password).await }
            });
        }
        let (done_tx, done_rx) = mpsc::channel::<String>();
        let thread = thread::Builder::new()
            .name("vigie-mqtt-broker".into())
            .spawn(move || {
                let mut broker = Broker::new(config);
                // Blocks for as long as the listener runs, i.e. the process's life.
                let outcome = match broker.start() {
                    Ok(()) => "the listener stopped (see the log: address in use?)".to_string(),
                    Err(e) => e.to_string(),
                };
                let _ = done_tx.send(outcome);
            })
            .map_err(|e| IngestError::BrokerStart {
                addr,
                reason: format!("cannot spawn the broker thread: {e}"),
            })?;

        let target = connect_target(addr);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(reason) = done_rx.try_recv() {
                return Err(IngestError::BrokerStart { addr, reason });
            }
            let ready = match listening_on(addr.port()) {
                Some(listening) => listening,
                // No /proc: probe with a connection (rumqttd then logs one error line).
                None => TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok(),
            };
            if ready {
                return Ok(EmbeddedBroker {
                    addr,
                    _thread: thread,
                });
            }
            if Instant::now() >= deadline {
                return Err(IngestError::BrokerStart {
                    addr,
                    reason: format!("not accepting connections after {START_TIMEOUT:?}"),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address the broker listens on (the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where a client on this machine connects: the listen address, with a wildcard
    /// IP replaced by loopback.
    pub fn client_addr(&self) -> SocketAddr {
        connect_target(self.addr)
    }

    /// `mqtt://host:port` for clients on this machine.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.client_addr())
    }
}

/// Whether a TCP socket listens on `port`, read from `/proc/net/tcp` and `tcp6`
/// without connecting: a probe connection that sends no CONNECT makes rumqttd log
/// "Error while handling MQTT connect packet". `None` where `/proc` is not there.
fn listening_on(port: u16) -> Option<bool> {
    let mut readable = false;
    let mut listening = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        listening |= text.lines().skip(1).any(|line| {
            // "  sl  local_address rem_address   st …", st 0A = LISTEN.
            let mut fields = line.split_whitespace();
            let local = fields.nth(1);
            let state = fields.nth(1);
            state == Some("0A")
                && local
                    .and_then(|l| l.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        });
    }
    readable.then_some(listening)
}

fn connect_target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// The rumqttd configuration vigie runs with.
fn broker_config(addr: SocketAddr, max_payload_bytes: usize) -> Config {
    let max_packet = max_payload_bytes.saturating_add(PACKET_OVERHEAD);
    let router = RouterConfig {
        // A little headroom above the advertised figure for vigie's own clients.
        max_connections: MAX_CONNECTIONS + 16,
        // QoS 0 read size per sweep; QoS 1 is bounded by the in-flight window.
        max_outgoing_packet_count: 200,
        max_segment_size: MIN_SEGMENT_BYTES.max(max_packet),
        max_segment_count: SEGMENT_COUNT,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let connections = ConnectionSettings {
        // u16 milliseconds: the time a new TCP connection has to send CONNECT.
        connection_timeout_ms: 60_000,
        max_payload_size: max_packet,
        // Packets read from one connection before they go to the router.
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: false,
    };
    let server = ServerSettings {
        name: "vigie-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_a_clear_error_naming_the_address() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let err = EmbeddedBroker::start(addr, 1024).unwrap_err().to_string();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(err.contains("in use"), "{err}");
    }

    #[test]
    fn the_broker_accepts_connections_when_start_returns() {
        let b = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        assert_ne!(b.addr().port(), 0);
        TcpStream::connect(b.client_addr()).unwrap();
        assert!(b.url().starts_with("mqtt://127.0.0.1:"));
    }

    #[test]
    fn payload_limits_leave_room_for_the_topic() {
        let c = broker_config("127.0.0.1:1".parse().unwrap(), 1 << 20);
        let v4 = c.v4.unwrap();
        let s = v4.values().next().unwrap();
        assert!(s.connections.max_payload_size > 1 << 20);
        assert!(c.router.max_connections >= MAX_CONNECTIONS);
    }

    /// Connects with `login` and says whether the broker accepted (CONNACK).
    async fn connects(addr: SocketAddr, login: Option<(&str, &str)>) -> bool {
        let mut o = rumqttc::MqttOptions::new("t", addr.ip().to_string(), addr.port());
        if let Some((u, p)) = login {
            o.set_credentials(u, p);
        }
        let (_c, mut ev) = rumqttc::AsyncClient::new(o, 10);
        let polled = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match ev.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                        return a.code == rumqttc::ConnectReturnCode::Success;
                    }
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        })
        .await;
        polled.expect("an answer or a closed connection within 10 s")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn with_device_auth_only_current_credentials_may_connect() {
        use vigie_core::registry::{Device, DeviceKind, Registry};
        let dir = tempfile::tempdir().unwrap();
        let db = vigie_core::db::Db::open_dir(dir.path()).unwrap();
        let registry = Registry::new(db.clone());
        let dev = vigie_core::DeviceId::new("meter-1").unwrap();
        registry
            .upsert_device(&Device::new(
                dev.clone(),
                None,
                DeviceKind::ElectricityMeter,
            ))
            .await
            .unwrap();
        let old = crate::auth::issue_device_password_blocking(&registry, &dev).unwrap();
        let password = crate::auth::issue_device_password_blocking(&registry, &dev).unwrap();
        let auth = BrokerAuth::new(db);
        let (ingest_user, ingest_pw) = auth.ingest_credentials();
        let b = EmbeddedBroker::start_with_auth("127.0.0.1:0".parse().unwrap(), 1024, Some(auth))
            .unwrap();
        let a = b.client_addr();
        assert!(connects(a, Some(("meter-1", &password))).await);
        assert!(connects(a, Some((&ingest_user, &ingest_pw))).await);
        assert!(
            !connects(a, Some(("meter-1", &old))).await,
            "replaced password"
        );
        assert!(
            !connects(a, Some(("meter-2", &password))).await,
            "unknown device"
        );
        assert!(!connects(a, Some((&ingest_user, &password))).await);
        assert!(!connects(a, None).await, "anonymous");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn without_device_auth_anyone_may_connect() {
        let b = EmbeddedBroker::start("127.0.0.1:0".parse().unwrap(), 1024).unwrap();
        assert!(connects(b.client_addr(), None).await);
        assert!(connects(b.client_addr(), Some(("x", "y"))).await);
    }
}
