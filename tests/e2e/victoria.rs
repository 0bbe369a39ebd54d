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
        let log = dir.path().join("victoria-metrics.log");
        // A free port may be taken between its release and the server's bind: then the
        // server exits at once, and another port is tried (after a healthy answer too,
        // since that answer may come from whoever took the port).
        for _ in 0..5 {
            let addr = free_addr();
            let mut child = Command::new(&bin)
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
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let url = format!("http://{addr}");
            if wait_healthy(&url, &mut child).await {
                return Some(VictoriaMetrics {
                    child,
                    url,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "VictoriaMetrics did not start; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

/// Whether the server `child` answers healthy on `url` (false: it exited).
async fn wait_healthy(url: &str, child: &mut Child) -> bool {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok(r) = client.get(format!("{url}/health")).send().await
            && r.status().is_success()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return child.try_wait().ok().flatten().is_none();
        }
        assert!(
            Instant::now() < deadline,
            "VictoriaMetrics did not answer on {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for VictoriaMetrics {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
