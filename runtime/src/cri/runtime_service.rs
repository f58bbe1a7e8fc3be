//! `runtime.v1.RuntimeService`.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::convert::{self, id_matches, matches};
use super::{Cri, status};
use crate::container::Container;
use crate::state::now_nanos;

type Reply<T> = Result<Response<T>, Status>;

impl Cri {
    fn stats(&self, c: &Container) -> cri::ContainerStats {
        let now = now_nanos();
        let usage = self.runtime.usage(c);
        cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: c.id.clone(),
                metadata: c.config.metadata.clone(),
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            }),
            cpu: usage.as_ref().map(|u| cri::CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: Some(cri::UInt64Value { value: u.cpu_nanos }),
                usage_nano_cores: None,
            }),
            memory: usage.as_ref().map(|u| cri::MemoryUsage {
                timestamp: now,
                working_set_bytes: Some(cri::UInt64Value {
                    value: u.working_set,
                }),
                usage_bytes: Some(cri::UInt64Value {
                    value: u.memory_usage,
                }),
                ..Default::default()
            }),
            writable_layer: usage.as_ref().map(|u| cri::FilesystemUsage {
                timestamp: now,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: self.runtime.root().join("containers").display().to_string(),
                }),
                used_bytes: Some(cri::UInt64Value {
                    value: u.writable_bytes,
                }),
                inodes_used: None,
            }),
            swap: None,
        }
    }

    fn sandbox_stats(&self, id: &str) -> Result<cri::PodSandboxStats, Status> {
        let sb = self.runtime.sandbox(id).map_err(status)?;
        let containers: Vec<cri::ContainerStats> = self
            .runtime
            .containers()
            .iter()
            .filter(|c| c.sandbox_id == sb.id)
            .map(|c| self.stats(c))
            .collect();
        let now = now_nanos();
        let sum = |f: &dyn Fn(&cri::ContainerStats) -> Option<u64>| {
            Some(cri::UInt64Value {
                value: containers.iter().filter_map(f).sum(),
            })
        };
        Ok(cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: sb.id.clone(),
                metadata: sb.config.metadata.clone(),
                labels: sb.config.labels.clone(),
                annotations: sb.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cri::CpuUsage {
                    timestamp: now,
                    usage_core_nano_seconds: sum(&|c| {
                        c.cpu
                            .as_ref()?
                            .usage_core_nano_seconds
                            .as_ref()
                            .map(|v| v.value)
                    }),
                    usage_nano_cores: None,
                }),
                memory: Some(cri::MemoryUsage {
                    timestamp: now,
                    working_set_bytes: sum(&|c| {
                        c.memory
                            .as_ref()?
                            .working_set_bytes
                            .as_ref()
                            .map(|v| v.value)
                    }),
                    usage_bytes: sum(&|c| c.memory.as_ref()?.usage_bytes.as_ref().map(|v| v.value)),
                    ..Default::default()
                }),
                network: None,
                process: None,
                containers,
            }),
            windows: None,
        })
    }
}

#[tonic::async_trait]
impl RuntimeService for Cri {
    async fn version(&self, _: Request<cri::VersionRequest>) -> Reply<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "paddock".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Reply<cri::RunPodSandboxResponse> {
        let request = request.into_inner();
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("RunPodSandbox needs a config"))?;
        let id = self
            .runtime
            .run_pod_sandbox(config, request.runtime_handler)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Reply<cri::StopPodSandboxResponse> {
        self.runtime
            .stop_pod_sandbox(&request.into_inner().pod_sandbox_id)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Reply<cri::RemovePodSandboxResponse> {
        self.runtime
            .remove_pod_sandbox(&request.into_inner().pod_sandbox_id)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Reply<cri::PodSandboxStatusResponse> {
        let request = request.into_inner();
        let sb = self
            .runtime
            .sandbox(&request.pod_sandbox_id)
            .map_err(status)?;
        let containers_statuses = self
            .runtime
            .containers()
            .iter()
            .filter(|c| c.sandbox_id == sb.id)
            .map(|c| {
                convert::container_status(c, self.runtime.images().resolve(&c.image_id).as_ref())
            })
            .collect();
        let mut info = HashMap::new();
        if request.verbose {
            info.insert(
                "info".to_string(),
                serde_json::json!({
                    "cgroupParent": sb.cgroup_parent,
                    "network": sb.network.as_ref().map(|n| &n.result),
                })
                .to_string(),
            );
        }
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(convert::pod_sandbox_status(&sb)),
            info,
            containers_statuses,
            timestamp: now_nanos(),
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Reply<cri::ListPodSandboxResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let items = self
            .runtime
            .sandboxes()
            .iter()
            .filter(|sb| id_matches(&sb.id, &filter.id))
            .filter(|sb| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|s| s.state == convert::sandbox_state(sb) as i32)
            })
            .filter(|sb| matches(&sb.config.labels, &filter.label_selector))
            .map(convert::pod_sandbox)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Reply<cri::CreateContainerResponse> {
        let request = request.into_inner();
        let config = request
            .config
            .ok_or_else(|| Status::invalid_argument("CreateContainer needs a config"))?;
        let id = self
            .runtime
            .create_container(&request.pod_sandbox_id, config)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Reply<cri::StartContainerResponse> {
        self.runtime
            .start_container(&request.into_inner().container_id)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Reply<cri::StopContainerResponse> {
        let request = request.into_inner();
        self.runtime
            .stop_container(&request.container_id, request.timeout)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Reply<cri::RemoveContainerResponse> {
        self.runtime
            .remove_container(&request.into_inner().container_id)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Reply<cri::ListContainersResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let containers = self
            .runtime
            .containers()
            .iter()
            .filter(|c| id_matches(&c.id, &filter.id))
            .filter(|c| id_matches(&c.sandbox_id, &filter.pod_sandbox_id))
            .filter(|c| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|s| s.state == c.state() as i32)
            })
            .filter(|c| matches(&c.config.labels, &filter.label_selector))
            .map(convert::container)
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Reply<cri::ContainerStatusResponse> {
        let c = self
            .runtime
            .container(&request.into_inner().container_id)
            .map_err(status)?;
        let image = self.runtime.images().resolve(&c.image_id);
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(convert::container_status(&c, image.as_ref())),
            info: HashMap::new(),
        }))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Reply<cri::UpdateContainerResourcesResponse> {
        let request = request.into_inner();
        let resources = request.linux.ok_or_else(|| {
            Status::invalid_argument("UpdateContainerResources needs linux resources")
        })?;
        self.runtime
            .update_resources(&request.container_id, resources)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Reply<cri::ReopenContainerLogResponse> {
        self.runtime
            .reopen_log(&request.into_inner().container_id)
            .map_err(status)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Reply<cri::ExecSyncResponse> {
        let request = request.into_inner();
        let out = self
            .runtime
            .exec_sync(&request.container_id, request.cmd, request.timeout)
            .await
            .map_err(status)?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn exec(&self, request: Request<cri::ExecRequest>) -> Reply<cri::ExecResponse> {
        let url = self.runtime.exec(request.into_inner()).map_err(status)?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, _: Request<cri::AttachRequest>) -> Reply<cri::AttachResponse> {
        Err(Status::unimplemented(
            "Attach is not supported: container output is in its log, and stdin is not kept open",
        ))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Reply<cri::PortForwardResponse> {
        let request = request.into_inner();
        let url = self
            .runtime
            .port_forward(&request.pod_sandbox_id, &request.port)
            .map_err(status)?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Reply<cri::ContainerStatsResponse> {
        let c = self
            .runtime
            .container(&request.into_inner().container_id)
            .map_err(status)?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(self.stats(&c)),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Reply<cri::ListContainerStatsResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let stats = self
            .runtime
            .containers()
            .iter()
            .filter(|c| id_matches(&c.id, &filter.id))
            .filter(|c| id_matches(&c.sandbox_id, &filter.pod_sandbox_id))
            .filter(|c| matches(&c.config.labels, &filter.label_selector))
            .map(|c| self.stats(c))
            .collect();
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Reply<cri::PodSandboxStatsResponse> {
        let stats = self.sandbox_stats(&request.into_inner().pod_sandbox_id)?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Reply<cri::ListPodSandboxStatsResponse> {
        let filter = request.into_inner().filter.unwrap_or_default();
        let stats = self
            .runtime
            .sandboxes()
            .iter()
            .filter(|sb| id_matches(&sb.id, &filter.id))
            .filter(|sb| matches(&sb.config.labels, &filter.label_selector))
            .filter_map(|sb| self.sandbox_stats(&sb.id).ok())
            .collect();
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        _: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Reply<cri::UpdateRuntimeConfigResponse> {
        // The pod CIDR reaches the runtime through the CNI conflist the agent writes.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(&self, _: Request<cri::StatusRequest>) -> Reply<cri::StatusResponse> {
        let network = self.runtime.network_ready();
        let conditions = vec![
            cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: network.is_ok(),
                reason: if network.is_ok() {
                    String::new()
                } else {
                    "NetworkPluginNotReady".into()
                },
                message: network
                    .err()
                    .map(|e| {
                        format!("Network plugin returns error: cni plugin not initialized: {e}")
                    })
                    .unwrap_or_default(),
            },
        ];
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info: HashMap::new(),
            runtime_handlers: vec![cri::RuntimeHandler {
                name: String::new(),
                features: Some(cri::RuntimeHandlerFeatures::default()),
            }],
            features: None,
        }))
    }

    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> Reply<cri::CheckpointContainerResponse> {
        Err(Status::unimplemented("checkpointing is not supported"))
    }

    type GetContainerEventsStream =
        futures::stream::Empty<Result<cri::ContainerEventResponse, Status>>;

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        Err(Status::unimplemented(
            "container events are not supported: use polling (generic PLEG)",
        ))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Reply<cri::ListMetricDescriptorsResponse> {
        Err(Status::unimplemented("CRI metrics are not supported"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Reply<cri::ListPodSandboxMetricsResponse> {
        Err(Status::unimplemented("CRI metrics are not supported"))
    }

    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> Reply<cri::RuntimeConfigResponse> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}
