//! The server-wide shutdown signal: a `watch` channel that turns true.

use tokio::sync::watch;

/// Resolves once shutdown is signalled (or the signal's sender is gone).
pub async fn signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}
