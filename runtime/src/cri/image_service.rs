//! `runtime.v1.ImageService`.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use oci_client::secrets::RegistryAuth;
use tonic::{Request, Response, Status};

use super::convert;
use super::{Cri, status};
use crate::image::registries::credentials;
use crate::state::now_nanos;

type Reply<T> = Result<Response<T>, Status>;

fn image_name(spec: Option<cri::ImageSpec>) -> Result<String, Status> {
    spec.map(|s| s.image)
        .filter(|i| !i.is_empty())
        .ok_or_else(|| Status::invalid_argument("an image name is required"))
}

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Reply<cri::ListImagesResponse> {
        let wanted = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let images = match wanted {
            Some(name) => self.runtime.images().resolve(&name).into_iter().collect(),
            None => self.runtime.images().list(),
        };
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(convert::image).collect(),
        }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Reply<cri::ImageStatusResponse> {
        let request = request.into_inner();
        let name = image_name(request.image)?;
        let image = self.runtime.images().resolve(&name);
        let mut info = HashMap::new();
        if request.verbose
            && let Some(image) = &image
        {
            info.insert(
                "info".to_string(),
                serde_json::json!({
                    "imageSpec": image.config,
                    "layers": image.layers,
                })
                .to_string(),
            );
        }
        Ok(Response::new(cri::ImageStatusResponse {
            image: image.as_ref().map(convert::image),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Reply<cri::PullImageResponse> {
        let request = request.into_inner();
        let name = image_name(request.image)?;
        let auth = match request.auth {
            Some(a) => credentials(
                Some(&a.username),
                Some(&a.password),
                Some(&a.auth),
                Some(a.identity_token.as_str())
                    .filter(|t| !t.is_empty())
                    .or(Some(a.registry_token.as_str())),
            )
            .map_err(|e| Status::invalid_argument(format!("{e:#}")))?,
            None => RegistryAuth::Anonymous,
        };
        let image_ref = self.runtime.pull_image(&name, auth).await.map_err(status)?;
        Ok(Response::new(cri::PullImageResponse { image_ref }))
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Reply<cri::RemoveImageResponse> {
        let name = image_name(request.into_inner().image)?;
        self.runtime.remove_image(&name).map_err(status)?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Reply<cri::ImageFsInfoResponse> {
        let (bytes, inodes) = self.runtime.images().usage();
        let usage = cri::FilesystemUsage {
            timestamp: now_nanos(),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: self.runtime.images().dir().display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![usage],
            container_filesystems: vec![],
        }))
    }
}
