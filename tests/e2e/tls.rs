//! `mqtts://`: the real binary against a real mosquitto with a TLS listener, its
//! certificates made by the test (a private CA and a server certificate for
//! `localhost`). With the right `VIGIE_MQTT_CA_FILE` every QoS 1 sample published over
//! TLS is stored; with a CA that did not sign the broker's certificate, or a host name
//! the certificate does not carry, ingest logs one clear line naming the URL and the
//! TLS reason, keeps retrying and stores nothing; a missing CA file stops start-up with
//! an error naming it. `vigie sim` reaches the same broker over TLS with the same
//! settings, and every sample it reports acknowledged is stored once.
//!
//! The broker tests are gated on `VIGIE_TEST_MOSQUITTO_BIN` like `external.rs`.

// Test helpers: a failed setup step should stop the test with its error.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use rustls::pki_types::CertificateDer;

use crate::external::{
    Mosquitto, Vigie, acknowledged_samples, mosquitto_bin, register_devices, stored,
    stored_as_published, wait_until,
};
use crate::server::{ADMIN_PASSWORD, free_addr, vigie_bin};

/// 2020-01-01T00:00:00Z.
const BASE_MS: i64 = 1_577_836_800_000;
const MESSAGES: usize = 300;
const DEVICES: usize = 2;

/// A certificate authority, as PEM and DER, and the key that signs with it.
struct Ca {
    pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

/// A mosquitto whose second listener speaks TLS with a certificate for `localhost`
/// signed by `ca`.
struct TlsBroker {
    mosquitto: Mosquitto,
    tls_port: u16,
}

fn start_tls_broker(bin: &Path, pki: &Path, ca: &Ca) -> TlsBroker {
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let (ca_file, cert_file, key_file) = (
        pki.join("broker-ca.pem"),
        pki.join("server.pem"),
        pki.join("server.key"),
    );
    std::fs::write(&ca_file, &ca.pem).unwrap();
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let tls_port = free_addr().port();
    let mosquitto = Mosquitto::start(
        bin,
        &format!(
            "allow_anonymous true\nlistener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca_file.display(),
            cert_file.display(),
            key_file.display()
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not open its TLS listener on {tls_port}: {}",
            mosquitto.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    TlsBroker {
        mosquitto,
        tls_port,
    }
}

/// The environment of `vigie run` on `data`, reaching the broker at `url` and trusting
/// `ca_file`.
fn env(data: &Path, http: SocketAddr, url: &str, ca_file: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("VIGIE_DATA_DIR", data.display().to_string()),
        ("VIGIE_HTTP_ADDR", http.to_string()),
        ("VIGIE_MQTT_URL", url.to_string()),
        ("VIGIE_MQTT_CA_FILE", ca_file.display().to_string()),
        ("VIGIE_MQTT_CLIENT_ID", "vigie-ingest-tls".to_string()),
        ("VIGIE_ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
    ]
}

/// `MESSAGES` native messages spread over `DEVICES` devices, one temperature each, one
/// minute apart.
fn messages() -> Vec<(String, Vec<u8>)> {
    (0..MESSAGES)
        .map(|i| {
            let ts = BASE_MS + i as i64 * 60_000;
            let p = format!(
                r#"{{"ts":{ts},"values":{{"temperature_c":{}}}}}"#,
                (i % 40) as f64 / 2.0
            );
            (
                format!("vigie/dev-{:04}/telemetry", i % DEVICES),
                p.into_bytes(),
            )
        })
        .collect()
}

/// Publishes every message at QoS 1 over TLS to `localhost:port`, trusting `ca`, and
/// returns once each has its PUBACK.
async fn publish_tls(port: u16, ca: &CertificateDer<'static>, msgs: Vec<(String, Vec<u8>)>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut o = MqttOptions::new("e2e-tls-publisher", "localhost", port);
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(config),
    )))
    .set_inflight(100);
    let (client, mut ev) = AsyncClient::new(o, 1000);
    let total = msgs.len();
    let sender = tokio::spawn(async move {
        for (t, p) in msgs {
            client
                .publish(t, QoS::AtLeastOnce, false, p)
                .await
                .expect("queue");
        }
        client
    });
    let mut acked = 0;
    while acked < total {
        match tokio::time::timeout(Duration::from_secs(30), ev.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("publisher over TLS: {e}"),
            Err(_) => panic!("publisher over TLS: no MQTT event for 30 s after {acked} PUBACKs"),
        }
    }
    let client = sender.await.expect("sender");
    let _ = client.disconnect().await;
}

/// An API token for the admin of `data`.
fn admin_token(data: &Path) -> String {
    let out = Command::new(vigie_bin())
        .args(["user", "token", "admin"])
        .env("VIGIE_DATA_DIR", data)
        .output()
        .expect("run vigie");
    assert!(
        out.status.success(),
        "vigie user token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Samples of `device`'s temperature in January 2020, through the API.
async fn api_samples(http: SocketAddr, token: &str, device: &str) -> usize {
    let url = format!(
        "http://{http}/api/v1/devices/{device}/samples?quantity=temperature_c&from=2020-01-01T00:00:00Z&to=2020-02-01T00:00:00Z"
    );
    let r = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET samples");
    assert!(r.status().is_success(), "GET samples: {}", r.status());
    let body: serde_json::Value = r.json().await.expect("JSON");
    body.as_array().map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mqtts_with_the_brokers_ca_every_qos1_sample_is_stored() {
    let Some(bin) = mosquitto_bin("mqtts to mosquitto") else {
        return;
    };
    let pki = tempfile::tempdir().unwrap();
    let ca = new_ca("vigie e2e CA");
    let broker = start_tls_broker(&bin, pki.path(), &ca);
    let ca_file = pki.path().join("trusted-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    register_devices(&data, DEVICES).await;
    let http = free_addr();
    let url = format!("mqtts://localhost:{}", broker.tls_port);
    let mut vigie = Vigie::spawn(
        &["run"],
        &env(&data, http, &url, &ca_file),
        dir.path().join("vigie.log"),
    );
    vigie.wait_log("subscribed to", 1).await;
    let log = vigie.log_text();
    assert!(
        log.contains(&format!("MQTT connected to {url}")),
        "the log should name the mqtts:// URL:\n{log}"
    );

    publish_tls(broker.tls_port, &ca.der, messages()).await;
    let token = admin_token(&data);
    let per_device = MESSAGES / DEVICES;
    let waited = wait_until(
        "every sample readable through the API",
        Duration::from_secs(60),
        || {
            let token = token.clone();
            async move {
                api_samples(http, &token, "dev-0000").await >= per_device
                    && api_samples(http, &token, "dev-0001").await >= per_device
            }
        },
    )
    .await;
    if let Err(e) = waited {
        panic!(
            "{e}; vigie log:\n{}\nmosquitto log:\n{}",
            vigie.log_text(),
            broker.mosquitto.log()
        );
    }
    vigie.stop();
    assert_eq!(stored(&data).await, MESSAGES as u64, "exactly once");
}

/// Starts `vigie run` against the TLS listener at `host` trusting `trusted`, waits for
/// the second failed attempt (it retries), and returns the first failure line.
async fn refused_connection_line(host: &str, trusted: &Ca, broker_ca: &Ca) -> (String, String) {
    let bin = mosquitto_bin("mqtts refusal").unwrap();
    let pki = tempfile::tempdir().unwrap();
    let broker = start_tls_broker(&bin, pki.path(), broker_ca);
    let ca_file: PathBuf = pki.path().join("trusted-ca.pem");
    std::fs::write(&ca_file, &trusted.pem).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    register_devices(&data, DEVICES).await;
    let url = format!("mqtts://{host}:{}", broker.tls_port);
    let mut vigie = Vigie::spawn(
        &["run"],
        &env(&data, free_addr(), &url, &ca_file),
        dir.path().join("vigie.log"),
    );
    vigie.wait_log("attempt 2,", 1).await;
    let log = vigie.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("MQTT connection to"))
        .unwrap_or_else(|| panic!("no failed connection line in:\n{log}"))
        .to_string();
    assert!(
        !log.contains("panicked") && !log.contains("subscribed to"),
        "{log}"
    );
    vigie.stop();
    assert_eq!(stored(&data).await, 0, "nothing may be stored");
    eprintln!("refused as expected: {line}");
    (line, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_one_clear_log_line_and_retried() {
    if mosquitto_bin("mqtts with an unknown CA").is_none() {
        return;
    }
    let (broker_ca, other_ca) = (new_ca("broker CA"), new_ca("some other CA"));
    let (line, url) = refused_connection_line("localhost", &other_ca, &broker_ca).await;
    assert!(
        line.contains(&format!(
            "MQTT connection to {url} failed (TLS handshake failed:"
        )) && line.contains("not signed by a trusted authority (mqtt.ca_file")
            && line.contains("UnknownIssuer")
            && line.contains("retrying in"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_the_broker_certificate_does_not_carry_is_refused_with_that_reason() {
    if mosquitto_bin("mqtts with a wrong host name").is_none() {
        return;
    }
    let ca = new_ca("broker CA");
    // The certificate names `localhost`, not `127.0.0.1`.
    let (line, url) = refused_connection_line("127.0.0.1", &ca, &ca).await;
    assert!(
        line.contains(&format!(
            "MQTT connection to {url} failed (TLS handshake failed:"
        )) && line.contains("does not name the host of mqtt.url"),
        "{line}"
    );
}

#[test]
fn a_missing_ca_file_stops_ingest_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let out = Command::new(vigie_bin())
        .arg("ingest")
        .env("VIGIE_DATA_DIR", dir.path().join("data"))
        .env("VIGIE_MQTT_URL", "mqtts://localhost:1")
        .env("VIGIE_MQTT_CA_FILE", &missing)
        .env("VIGIE_MQTT_SHARED_GROUP", "")
        .output()
        .expect("run vigie");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot read mqtt.ca_file {}: No such file",
            missing.display()
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_publishes_over_mqtts_and_every_sample_is_stored() {
    let Some(bin) = mosquitto_bin("vigie sim over mqtts") else {
        return;
    };
    let pki = tempfile::tempdir().unwrap();
    let ca = new_ca("vigie e2e CA");
    let broker = start_tls_broker(&bin, pki.path(), &ca);
    let ca_file = pki.path().join("trusted-ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A registry that is not empty, so `vigie run` does not start its own demo.
    register_devices(&data, 1).await;
    let url = format!("mqtts://localhost:{}", broker.tls_port);
    let env = env(&data, free_addr(), &url, &ca_file);
    let mut vigie = Vigie::spawn(&["run"], &env, dir.path().join("vigie.log"));
    vigie.wait_log("subscribed to", 1).await;

    let out = Command::new(vigie_bin())
        .args([
            "sim",
            "--buildings",
            "1",
            "--backfill",
            "1",
            "--duration",
            "0",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run vigie sim");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "vigie sim failed:\n{stderr}");
    let published = acknowledged_samples(&stderr);
    assert!(published > 0, "the simulator published nothing:\n{stderr}");
    assert!(stderr.contains(", 0 lost"), "{stderr}");

    let waited = wait_until(
        "every simulated sample stored",
        Duration::from_secs(60),
        || {
            let data = data.clone();
            async move { stored_as_published(&data).await >= published }
        },
    )
    .await;
    if let Err(e) = waited {
        panic!("{e}; vigie log:\n{}", vigie.log_text());
    }
    vigie.stop();
    assert_eq!(
        stored_as_published(&data).await,
        published,
        "each sample exactly once"
    );
}
