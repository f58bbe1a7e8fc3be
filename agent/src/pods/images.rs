//! Getting a container's image per its pull policy, with events (Pulling,
//! Pulled, Failed, BackOff) and ImagePullBackOff as upstream.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, ObjectReference};

use super::backoff::Backoff;
use super::status::Waiting;
use crate::cri::Cri;
use crate::events::{Kind, Recorder};

/// The image a container runs.
pub struct Image {
    /// The reference to create the container with (the image's id).
    pub reference: String,
    /// The image's user, for runAsNonRoot checks.
    pub uid: Option<i64>,
    pub username: String,
}

/// Pull state of one pod's images.
pub struct Puller<'a> {
    pub cri: &'a Cri,
    pub events: &'a Recorder,
    pub backoff: &'a mut Backoff,
    /// When each image's last pull failed.
    pub failures: &'a mut HashMap<String, SystemTime>,
    /// Image names (first repo tag) by reference, for statuses.
    pub names: &'a std::sync::Mutex<HashMap<String, String>>,
}

/// `Always` for `:latest` or untagged images, else `IfNotPresent`.
pub fn default_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    let tagged = last.contains(':') && !last.ends_with(":latest");
    if image.contains('@') || tagged {
        "IfNotPresent"
    } else {
        "Always"
    }
}

impl Puller<'_> {
    pub async fn ensure(
        &mut self,
        c: &Container,
        reference: &ObjectReference,
        sandbox: &cri::PodSandboxConfig,
    ) -> Result<Image, Waiting> {
        let name = c.image.clone().unwrap_or_default();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(waiting(
                "InvalidImageName",
                format!(
                    "Failed to apply default image tag {name:?}: couldn't parse image name {name:?}: invalid reference format"
                ),
            ));
        }
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_policy(&name).to_string());
        let present = match self.cri.image_status(&name).await {
            Ok(present) => present,
            Err(e) => {
                return Err(waiting(
                    "ErrImageInspect",
                    format!("Failed to inspect image {name:?}: {e:#}"),
                ));
            }
        };
        match (policy.as_str(), present) {
            ("Never", None) => {
                let message =
                    format!("Container image {name:?} is not present with pull policy of Never");
                self.events.record(
                    reference.clone(),
                    Kind::Warning,
                    "ErrImageNeverPull",
                    message.clone(),
                );
                Err(waiting("ErrImageNeverPull", message))
            }
            ("Never" | "IfNotPresent", Some(image)) => {
                self.events.record(
                    reference.clone(),
                    Kind::Normal,
                    "Pulled",
                    format!("Container image {name:?} already present on machine"),
                );
                Ok(self.remember(image))
            }
            _ => self.pull(&name, reference, sandbox).await,
        }
    }

    async fn pull(
        &mut self,
        name: &str,
        reference: &ObjectReference,
        sandbox: &cri::PodSandboxConfig,
    ) -> Result<Image, Waiting> {
        let now = SystemTime::now();
        if let Some(failed) = self.failures.get(name)
            && self.backoff.in_backoff(name, *failed, now).is_some()
        {
            let message = format!("Back-off pulling image {name:?}");
            self.events
                .record(reference.clone(), Kind::Normal, "BackOff", message.clone());
            return Err(waiting("ImagePullBackOff", message));
        }
        self.events.record(
            reference.clone(),
            Kind::Normal,
            "Pulling",
            format!("Pulling image {name:?}"),
        );
        let started = Instant::now();
        let pulled = match self.cri.pull_image(name, sandbox.clone()).await {
            Ok(id) => self.cri.image_status(&id).await.ok().flatten(),
            Err(e) => {
                self.backoff.next(name, now);
                self.failures.insert(name.to_string(), SystemTime::now());
                let message = format!("Failed to pull image {name:?}: {e:#}");
                self.events
                    .record(reference.clone(), Kind::Warning, "Failed", message.clone());
                self.events.record(
                    reference.clone(),
                    Kind::Warning,
                    "Failed",
                    "Error: ErrImagePull".into(),
                );
                return Err(waiting("ErrImagePull", message));
            }
        };
        let Some(image) = pulled else {
            return Err(waiting(
                "ErrImagePull",
                format!("image {name:?} is not there after its pull"),
            ));
        };
        self.failures.remove(name);
        let took = started.elapsed().as_secs_f64();
        self.events.record(
            reference.clone(),
            Kind::Normal,
            "Pulled",
            format!(
                "Successfully pulled image {name:?} in {took:.3}s ({took:.3}s including waiting). Image size: {} bytes.",
                image.size
            ),
        );
        Ok(self.remember(image))
    }

    /// Notes the image's display name; returns what containers need of it.
    fn remember(&self, image: cri::Image) -> Image {
        if let Some(tag) = image.repo_tags.first() {
            let mut names = self.names.lock().expect("image names lock");
            names.insert(image.id.clone(), tag.clone());
            for digest in &image.repo_digests {
                names.insert(digest.clone(), tag.clone());
            }
        }
        Image {
            reference: image.id,
            uid: image.uid.map(|u| u.value),
            username: image.username,
        }
    }
}

fn waiting(reason: &str, message: String) -> Waiting {
    Waiting {
        reason: reason.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_and_untagged_images_are_always_pulled() {
        assert_eq!(default_policy("nginx"), "Always");
        assert_eq!(default_policy("nginx:latest"), "Always");
        assert_eq!(default_policy("registry:5000/nginx"), "Always");
        assert_eq!(default_policy("nginx:1.25"), "IfNotPresent");
        assert_eq!(default_policy("registry:5000/nginx:1.25"), "IfNotPresent");
        assert_eq!(default_policy("nginx@sha256:abc"), "IfNotPresent");
    }
}
