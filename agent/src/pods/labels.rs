//! The labels and annotations the agent puts on sandboxes and containers
//! (upstream's names), by which it finds them again after a restart.

use std::collections::HashMap;

pub const POD_NAME: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const POD_UID: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";

pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
pub const GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";

/// The selector for everything of the pod with `uid`.
pub fn of_pod(uid: &str) -> HashMap<String, String> {
    HashMap::from([(POD_UID.to_string(), uid.to_string())])
}
