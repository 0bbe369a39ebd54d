//! A VictoriaMetrics of a test's own: the tests that write to one start their own
//! server, so that no test sees another's series (and a local run repeated against a
//! long-lived server sees nothing of the last one).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::free_addr;

/// A VictoriaMetrics single node on a free loopback port and a temporary directory,
/// killed on drop.
pub(crate) struct VictoriaMetrics {
    child: Child,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

impl VictoriaMetrics {
    /// Starts one, or `None` (test skipped) outside CI.
    pub(crate) async fn start(test: &str) -> Option<VictoriaMetrics> {
        if std::env::var("VIGIE_TEST_VICTORIAMETRICS_URL").is_err() {
            eprintln!(
                "skipped {test}: VIGIE_TEST_VICTORIAMETRICS_URL is not set (.ci/run installs VictoriaMetrics and sets it)"
            );
            return None;
        }
        let bin: PathBuf = std::env::var("VIGIE_TEST_VICTORIAMETRICS_BIN")
            .expect("VIGIE_TEST_VICTORIAMETRICS_BIN must name the victoria-metrics binary in CI")
            .into();
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = free_addr();
        let child = Command::new(&bin)
            .arg(format!("-httpListenAddr={addr}"))
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("vm").display()
            ))
            .arg("-retentionPeriod=100y")
            // A redelivered sample (same series and instant) is kept once, as the
            // embedded store does.
            .arg("-dedup.minScrapeInterval=1ms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let vm = VictoriaMetrics {
            child,
            url: format!("http://{addr}"),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/health", vm.url)).send().await
                && r.status().is_success()
            {
                return Some(vm);
            }
            assert!(
                Instant::now() < deadline,
                "VictoriaMetrics did not answer on {}",
                vm.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
