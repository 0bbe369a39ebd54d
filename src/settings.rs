//! Loading the configuration: the embedded default file, an optional file given with
//! `--config`, then environment variables.
//!
//! Every error is one line naming where the bad value came from (file and key, or
//! environment variable), what was found and what is expected. Secrets read here
//! (passwords, tokens) must never be logged.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use vigie_core::config::{Addr, Config};

/// The documented default configuration, embedded in the binary.
pub(crate) const DEFAULT_CONFIG: &str = include_str!("../config/vigie.toml");

/// Parses a TOML configuration; the error names `origin`, the key, and the problem.
pub(crate) fn parse(text: &str, origin: &str) -> Result<Config> {
    let de = match toml::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => bail!("{origin}: invalid TOML: {}", one_line(&e.to_string())),
    };
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = one_line(inner.message());
        anyhow::anyhow!("{origin}: key `{key}`: {message}")
    })
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with('|')
                && !l.chars().next().is_some_and(|c| c.is_ascii_digit())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Loads the configuration: `file` if given (else the embedded default), then the
/// environment overrides.
pub(crate) fn load(file: Option<&Path>) -> Result<Config> {
    let mut config = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            parse(&text, &path.display().to_string())?
        }
        None => parse(DEFAULT_CONFIG, "embedded config/vigie.toml")?,
    };
    apply_env(&mut config, |k| std::env::var(k).ok())?;
    Ok(config)
}

/// Applies the `VIGIE_*` environment overrides (read through `get`, for tests).
pub(crate) fn apply_env(config: &mut Config, get: impl Fn(&str) -> Option<String>) -> Result<()> {
    let addr = |name: &str, v: String| -> Result<Addr> {
        v.parse::<Addr>()
            .map_err(|e| anyhow::anyhow!("environment variable {name}: {e}"))
    };
    if let Some(v) = get("VIGIE_DATA_DIR").filter(|v| !v.is_empty()) {
        config.storage.data_dir = PathBuf::from(v);
    }
    if let Some(v) = get("VIGIE_HTTP_ADDR").filter(|v| !v.is_empty()) {
        config.http.addr = addr("VIGIE_HTTP_ADDR", v)?;
    }
    if let Some(v) = get("VIGIE_MQTT_LISTEN").filter(|v| !v.is_empty()) {
        config.mqtt.listen = addr("VIGIE_MQTT_LISTEN", v)?;
    }
    if let Some(v) = get("VIGIE_MQTT_URL") {
        config.mqtt.url = v;
    }
    if let Some(v) = get("VIGIE_MQTT_CA_FILE") {
        config.mqtt.ca_file = v;
    }
    if let Some(v) = get("VIGIE_MQTT_USERNAME") {
        config.mqtt.username = v;
    }
    if let Some(v) = get("VIGIE_MQTT_PASSWORD") {
        config.mqtt.password = v;
    }
    if let Some(v) = get("VIGIE_MQTT_CLIENT_ID").filter(|v| !v.is_empty()) {
        config.mqtt.client_id = v;
    }
    if let Some(v) = get("VIGIE_MQTT_SHARED_GROUP") {
        config.mqtt.shared_group = v;
    }
    if let Some(v) = get("VIGIE_MQTT_DEVICE_AUTH").filter(|v| !v.is_empty()) {
        config.mqtt.device_auth = match v.as_str() {
            "true" | "1" | "on" => true,
            "false" | "0" | "off" => false,
            _ => bail!(
                "environment variable VIGIE_MQTT_DEVICE_AUTH: found {v:?}, expected true or false"
            ),
        };
    }
    if let Some(v) = get("VIGIE_TSDB_URL") {
        config.tsdb.url = v;
    }
    if let Some(v) = get("VIGIE_TSDB_TOKEN") {
        config.tsdb.token = v;
    }
    if let Some(v) = get("VIGIE_TSDB_ORG") {
        config.tsdb.org = v;
    }
    if let Some(v) = get("VIGIE_TSDB_BUCKET") {
        config.tsdb.bucket = v;
    }
    if let Some(v) = get("VIGIE_TSDB_DIALECT").filter(|v| !v.is_empty()) {
        config.tsdb.dialect = v;
    }
    if !matches!(config.tsdb.dialect.as_str(), "flux" | "prometheus") {
        bail!(
            "tsdb.dialect (or VIGIE_TSDB_DIALECT): found {:?}, expected \"flux\" or \"prometheus\"",
            config.tsdb.dialect
        );
    }
    if config.ingest.batch_max_messages == 0 || config.ingest.batch_max_messages > 65_535 {
        bail!(
            "key `ingest.batch_max_messages`: found {}, expected 1 to 65535",
            config.ingest.batch_max_messages
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_default_file_equals_the_built_in_defaults() {
        let parsed = parse(DEFAULT_CONFIG, "default").expect("default file parses");
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn a_bad_value_names_the_file_the_key_what_was_found_and_what_is_expected() {
        let err = parse("[http]\naddr = \"localhost\"\n", "my.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("my.toml: key `http.addr`:"), "{err}");
        assert!(
            err.contains("\"localhost\"") && err.contains("expected an address"),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn an_unknown_key_is_an_error_not_ignored() {
        let err = parse("[ingest]\nbatch_linger_ms = 5\n", "my.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch_linger_ms") && err.contains("my.toml"),
            "{err}"
        );
    }

    #[test]
    fn a_wrong_type_says_what_is_expected() {
        let err = parse("[simulator]\nbuildings = \"three\"\n", "my.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("simulator.buildings"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c = Config::default();
        apply_env(&mut c, |k| match k {
            "VIGIE_HTTP_ADDR" => Some("127.0.0.1:9999".into()),
            "VIGIE_DATA_DIR" => Some("/tmp/x".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(c.http.addr.to_string(), "127.0.0.1:9999");
        assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let mut c = Config::default();
        let err = apply_env(&mut c, |k| {
            (k == "VIGIE_MQTT_LISTEN").then(|| "nope".into())
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("VIGIE_MQTT_LISTEN") && err.contains("\"nope\""),
            "{err}"
        );
    }
}
