//! The agent's one CRI client (`k8s-cri` + tonic over a unix socket).
//! Nothing above it knows whether Paddock's runtime or containerd answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// Both CRI services over one connection; cheap to clone.
#[derive(Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// The socket path of a `unix://` endpoint (or a bare path).
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    match endpoint.split_once("://") {
        None => Ok(PathBuf::from(endpoint)),
        Some(("unix", path)) => Ok(PathBuf::from(path)),
        Some((scheme, _)) => {
            bail!("CRI endpoint {endpoint:?}: only unix:// sockets are supported, not {scheme}://")
        }
    }
}

/// Whether `error` (anywhere in its chain) is a CRI NotFound.
pub fn is_not_found(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<tonic::Status>())
        .any(|s| s.code() == tonic::Code::NotFound)
}

/// What a user is shown of a failed CRI call: the runtime's own message
/// (without the gRPC code), as the kubelet shows it.
pub fn message(error: &anyhow::Error) -> String {
    match error
        .chain()
        .find_map(|e| e.downcast_ref::<tonic::Status>())
    {
        Some(status) => status.message().to_string(),
        None => format!("{error:#}"),
    }
}

/// CRI timeouts are whole seconds: what is left of a grace period is
/// rounded up, so that a container is never killed before its time.
fn seconds_rounded_up(d: Duration) -> i64 {
    d.as_secs() as i64 + i64::from(d.subsec_nanos() > 0)
}

impl Cri {
    /// Connects to `socket`, waiting for the runtime to answer `Version`
    /// (an embedded runtime or containerd may still be starting).
    pub async fn connect(socket: &Path) -> Result<(Cri, cri::VersionResponse)> {
        for attempt in 0u64.. {
            match Cri::try_connect(socket).await {
                Ok(connected) => return Ok(connected),
                // Every 10 s.
                Err(e) if attempt % 50 == 0 => {
                    tracing::warn!(socket = %socket.display(), "waiting for the container runtime: {e:#}");
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        unreachable!("the attempts never run out")
    }

    async fn try_connect(socket: &Path) -> Result<(Cri, cri::VersionResponse)> {
        let socket = socket.to_path_buf();
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
        let cri = Cri {
            runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(16 << 20),
            images: ImageServiceClient::new(channel).max_decoding_message_size(16 << 20),
        };
        let version = cri.version().await?;
        if version.runtime_api_version != "v1" {
            bail!(
                "the runtime {} speaks CRI {}, not v1",
                version.runtime_name,
                version.runtime_api_version
            );
        }
        Ok((cri, version))
    }

    pub async fn version(&self) -> Result<cri::VersionResponse> {
        let request = cri::VersionRequest {
            version: "v1".into(),
        };
        Ok(self.runtime.clone().version(request).await?.into_inner())
    }

    pub async fn status(&self) -> Result<cri::RuntimeStatus> {
        self.runtime
            .clone()
            .status(cri::StatusRequest { verbose: false })
            .await
            .context("CRI Status")?
            .into_inner()
            .status
            .context("CRI Status returned no status")
    }

    // ---- sandboxes ----

    pub async fn list_sandboxes(
        &self,
        labels: HashMap<String, String>,
    ) -> Result<Vec<cri::PodSandbox>> {
        let filter = cri::PodSandboxFilter {
            label_selector: labels,
            ..Default::default()
        };
        let request = cri::ListPodSandboxRequest {
            filter: Some(filter),
        };
        Ok(self
            .runtime
            .clone()
            .list_pod_sandbox(request)
            .await
            .context("CRI ListPodSandbox")?
            .into_inner()
            .items)
    }

    pub async fn sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        self.runtime
            .clone()
            .pod_sandbox_status(request)
            .await
            .with_context(|| format!("CRI PodSandboxStatus {id}"))?
            .into_inner()
            .status
            .context("CRI PodSandboxStatus returned no status")
    }

    pub async fn run_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String> {
        let request = cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        Ok(self
            .runtime
            .clone()
            .run_pod_sandbox(request)
            .await
            .context("CRI RunPodSandbox")?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn stop_sandbox(&self, id: &str) -> Result<()> {
        let request = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime
            .clone()
            .stop_pod_sandbox(request)
            .await
            .with_context(|| format!("CRI StopPodSandbox {id}"))?;
        Ok(())
    }

    pub async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let request = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.runtime
            .clone()
            .remove_pod_sandbox(request)
            .await
            .with_context(|| format!("CRI RemovePodSandbox {id}"))?;
        Ok(())
    }

    // ---- containers ----

    pub async fn list_containers(
        &self,
        labels: HashMap<String, String>,
    ) -> Result<Vec<cri::Container>> {
        let filter = cri::ContainerFilter {
            label_selector: labels,
            ..Default::default()
        };
        let request = cri::ListContainersRequest {
            filter: Some(filter),
        };
        Ok(self
            .runtime
            .clone()
            .list_containers(request)
            .await
            .context("CRI ListContainers")?
            .into_inner()
            .containers)
    }

    pub async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let request = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.runtime
            .clone()
            .container_status(request)
            .await
            .with_context(|| format!("CRI ContainerStatus {id}"))?
            .into_inner()
            .status
            .context("CRI ContainerStatus returned no status")
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String> {
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        Ok(self
            .runtime
            .clone()
            .create_container(request)
            .await
            .context("CRI CreateContainer")?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let request = cri::StartContainerRequest {
            container_id: id.into(),
        };
        self.runtime
            .clone()
            .start_container(request)
            .await
            .with_context(|| format!("CRI StartContainer {id}"))?;
        Ok(())
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout`.
    pub async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        let request = cri::StopContainerRequest {
            container_id: id.into(),
            timeout: seconds_rounded_up(timeout),
        };
        self.runtime
            .clone()
            .stop_container(request)
            .await
            .with_context(|| format!("CRI StopContainer {id}"))?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let request = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.runtime
            .clone()
            .remove_container(request)
            .await
            .with_context(|| format!("CRI RemoveContainer {id}"))?;
        Ok(())
    }

    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<cri::ExecSyncResponse> {
        let request = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout.as_secs().max(1) as i64,
        };
        Ok(self
            .runtime
            .clone()
            .exec_sync(request)
            .await
            .with_context(|| format!("CRI ExecSync in {id}"))?
            .into_inner())
    }

    /// A streaming session for `request` in the runtime: the URL to
    /// connect to.
    pub async fn exec(&self, request: cri::ExecRequest) -> Result<String> {
        let id = request.container_id.clone();
        Ok(self
            .runtime
            .clone()
            .exec(request)
            .await
            .with_context(|| format!("CRI Exec in {id}"))?
            .into_inner()
            .url)
    }

    // ---- images ----

    /// The image `name` refers to, if the runtime has it.
    pub async fn image_status(&self, name: &str) -> Result<Option<cri::Image>> {
        let request = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        Ok(self
            .images
            .clone()
            .image_status(request)
            .await
            .with_context(|| format!("CRI ImageStatus {name}"))?
            .into_inner()
            .image)
    }

    /// Pulls `name`; returns the image's reference (its id).
    pub async fn pull_image(&self, name: &str, sandbox: cri::PodSandboxConfig) -> Result<String> {
        let request = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: Some(sandbox),
        };
        Ok(self
            .images
            .clone()
            .pull_image(request)
            .await
            .map_err(|status| anyhow::anyhow!("{}", status.message()))?
            .into_inner()
            .image_ref)
    }

    pub async fn list_images(&self) -> Result<Vec<cri::Image>> {
        Ok(self
            .images
            .clone()
            .list_images(cri::ListImagesRequest { filter: None })
            .await
            .context("CRI ListImages")?
            .into_inner()
            .images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_unix_sockets() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(
            socket_path("/run/paddock/runtime.sock").unwrap(),
            PathBuf::from("/run/paddock/runtime.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:1234").is_err());
    }

    #[test]
    fn grace_left_is_rounded_up_to_whole_seconds() {
        assert_eq!(seconds_rounded_up(Duration::from_millis(2990)), 3);
        assert_eq!(seconds_rounded_up(Duration::from_secs(3)), 3);
        assert_eq!(seconds_rounded_up(Duration::ZERO), 0);
    }

    #[test]
    fn users_see_the_runtimes_message() {
        let e = anyhow::Error::from(tonic::Status::internal("exec: no such file"))
            .context("CRI StartContainer x");
        assert_eq!(message(&e), "exec: no such file");
        assert_eq!(message(&anyhow::anyhow!("plain")), "plain");
    }

    #[test]
    fn not_found_is_seen_through_context() {
        let e =
            anyhow::Error::from(tonic::Status::not_found("gone")).context("CRI ContainerStatus x");
        assert!(is_not_found(&e));
        let e = anyhow::Error::from(tonic::Status::internal("boom")).context("CRI");
        assert!(!is_not_found(&e));
    }
}
