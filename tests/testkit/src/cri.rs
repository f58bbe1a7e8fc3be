//! A CRI client over a unix socket (`k8s-cri` + tonic), for tests that drive
//! a runtime (ours or containerd) as the kubelet does.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Both CRI services on one connection.
#[derive(Clone)]
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the CRI socket at `socket`, waiting up to `timeout` for
    /// it to answer `Version`.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Cri> {
        let deadline = Instant::now() + timeout;
        loop {
            match Cri::try_connect(socket.to_path_buf()).await {
                Ok(cri) => return Ok(cri),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e)
                        .with_context(|| format!("connecting to CRI at {}", socket.display()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn try_connect(socket: PathBuf) -> Result<Cri> {
        let channel = Endpoint::try_from("http://[::]:50051")?
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await?;
        let mut cri = Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        };
        let version = cri
            .runtime
            .version(k8s_cri::v1::VersionRequest {
                version: "v1".into(),
            })
            .await?
            .into_inner();
        if version.runtime_api_version != "v1" {
            bail!("the runtime speaks CRI {}", version.runtime_api_version);
        }
        Ok(cri)
    }
}
