//! The CRI v1 gRPC services over a unix socket: `RuntimeService` and
//! `ImageService`, mapping requests onto [`crate::Runtime`].

mod convert;
mod image_service;
mod runtime_service;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use futures::FutureExt;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::Runtime;

/// The CRI services of one runtime.
#[derive(Clone)]
pub struct Cri {
    runtime: Arc<Runtime>,
}

fn status(e: crate::error::Error) -> tonic::Status {
    tonic::Status::from(e)
}

/// Binds `path` (a stale socket file is replaced), creating its directory.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing the stale socket {}", path.display()));
        }
        _ => {}
    }
    UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))
}

/// Serves CRI on `listener`, and the Exec/PortForward streams, until
/// `shutdown` completes.
pub async fn serve(
    runtime: Arc<Runtime>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shutdown = shutdown.boxed().shared();
    let streams = tokio::spawn(runtime.streams().clone().serve(shutdown.clone()));
    let cri = Cri { runtime };
    tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(cri.clone()).max_decoding_message_size(16 << 20))
        .add_service(ImageServiceServer::new(cri).max_decoding_message_size(16 << 20))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .context("serving CRI")?;
    streams.await.context("the streaming server task")?
}
