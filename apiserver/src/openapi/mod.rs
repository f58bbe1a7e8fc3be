//! OpenAPI documents for the served kinds: `/openapi/v2` (JSON and the
//! gnostic protobuf kubectl asks for) and `/openapi/v3` (an index and one
//! document per group-version). Schemas come from `k8s-openapi`'s types;
//! every document is built once, on first use, and served from memory.

mod definitions;
mod gnostic;
mod model;
mod operations;
mod v2;
mod v3;

use std::sync::LazyLock;

use prost::Message;

pub use definitions::Definitions;
pub use model::{Field, Model, Shape, TypeId};

/// The media type kubectl asks for (`Accept`) to get the protobuf form of
/// `/openapi/v2`.
pub const V2_PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The `Content-Type` upstream answers that request with (Go's media type
/// parser rejects the `@` of the requested one).
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

static MODEL: LazyLock<Model> = LazyLock::new(|| Model::build(&Definitions::generate()));
/// The `/openapi/v2` document in both encodings, built from one tree.
struct V2Bytes {
    json: Vec<u8>,
    protobuf: Vec<u8>,
}

static V2: LazyLock<V2Bytes> = LazyLock::new(|| {
    let doc = v2::document(&Definitions::generate());
    V2Bytes {
        json: serde_json::to_vec(&doc).unwrap_or_default(),
        protobuf: gnostic::document(&doc).encode_to_vec(),
    }
});
static V3_DOCUMENTS: LazyLock<Vec<v3::GroupVersionDocument>> =
    LazyLock::new(|| v3::documents(&Definitions::generate()));
static V3_INDEX: LazyLock<Vec<u8>> =
    LazyLock::new(|| serde_json::to_vec(&v3::index(&V3_DOCUMENTS)).unwrap_or_default());

/// The compact model of the served kinds' schemas, built on first use.
pub fn model() -> &'static Model {
    &MODEL
}

/// The `/openapi/v2` document as JSON.
pub fn v2_json() -> &'static [u8] {
    &V2.json
}

/// The `/openapi/v2` document as gnostic protobuf (`V2_PROTOBUF_CONTENT_TYPE`).
pub fn v2_protobuf() -> &'static [u8] {
    &V2.protobuf
}

/// The `/openapi/v3` index: `{"paths": {"api/v1": {"serverRelativeURL": …}}}`.
pub fn v3_index() -> &'static [u8] {
    &V3_INDEX
}

/// The document of one group-version, by its path below `/openapi/v3/`
/// (`api/v1`, `apis/apps/v1`; a query string is not part of it).
pub fn v3_group_version(path: &str) -> Option<&'static [u8]> {
    let path = path.trim_matches('/');
    V3_DOCUMENTS
        .iter()
        .find(|doc| doc.path == path)
        .map(|doc| doc.json.as_slice())
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use serde_json::Value;

    use super::*;

    #[test]
    fn v2_lists_kinds_and_patch_operations() {
        let doc: Value = serde_json::from_slice(v2_json()).unwrap();
        assert_eq!(doc["swagger"], "2.0");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert_eq!(
            patch["responses"]["200"]["schema"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );
        let proto = gnostic::Document::decode(v2_protobuf()).unwrap();
        let defs = proto.definitions.unwrap().additional_properties;
        assert_eq!(defs.len(), doc["definitions"].as_object().unwrap().len());
        assert!(defs.iter().any(|d| d.name == "io.k8s.api.core.v1.Pod"));
        assert_eq!(
            proto.paths.unwrap().path.len(),
            doc["paths"].as_object().unwrap().len()
        );
    }

    #[test]
    fn v3_index_points_at_every_group_version() {
        let index: Value = serde_json::from_slice(v3_index()).unwrap();
        let paths = index["paths"].as_object().unwrap();
        for gv in [
            "api/v1",
            "apis/apps/v1",
            "apis/discovery.k8s.io/v1",
            "apis/events.k8s.io/v1",
            "apis/coordination.k8s.io/v1",
        ] {
            let url = paths[gv]["serverRelativeURL"].as_str().unwrap();
            assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
            assert!(v3_group_version(gv).is_some(), "{gv}");
        }
        assert!(v3_group_version("apis/batch/v1").is_none());
    }

    #[test]
    fn v3_documents_resolve_their_references() {
        for gv in ["api/v1", "apis/apps/v1"] {
            let doc: Value = serde_json::from_slice(v3_group_version(gv).unwrap()).unwrap();
            let schemas = doc["components"]["schemas"].as_object().unwrap();
            let text = serde_json::to_string(&doc).unwrap();
            for piece in text.split("\"$ref\":\"").skip(1) {
                let target = &piece[..piece.find('"').unwrap()];
                let name = target.strip_prefix("#/components/schemas/").expect(target);
                assert!(schemas.contains_key(name), "{gv}: {name}");
            }
        }
        let apps: Value =
            serde_json::from_slice(v3_group_version("apis/apps/v1").unwrap()).unwrap();
        let template = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
            ["template"];
        assert_eq!(
            template["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"
        );
        let strategy = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
            ["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        let scale = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
            ["patch"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
        assert!(
            apps["components"]["schemas"]
                .get("io.k8s.api.autoscaling.v1.Scale")
                .is_some()
        );
    }
}
