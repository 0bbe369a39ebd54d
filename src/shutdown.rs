//! One shutdown signal for every task of the process.
//!
//! Ctrl-C or SIGTERM flips a watch channel; each long-running part takes a future that
//! resolves when it flips, finishes its work in progress (ingest commits its pending
//! batch) and returns. Nothing here may exit the process by itself.

use tokio::sync::watch;

/// The sending side: trigger once.
#[derive(Clone)]
pub(crate) struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    pub(crate) fn new() -> Shutdown {
        Shutdown {
            tx: watch::channel(false).0,
        }
    }

    /// Asks every part to stop.
    pub(crate) fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// A future that resolves once shutdown is asked for.
    pub(crate) fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Triggers on Ctrl-C or SIGTERM.
    pub(crate) fn on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term =
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!("cannot listen for SIGTERM: {e}");
                            let _ = ctrl_c.await;
                            this.trigger();
                            return;
                        }
                    };
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = ctrl_c.await;
            tracing::info!("shutting down: committing pending batches");
            this.trigger();
        });
    }
}
