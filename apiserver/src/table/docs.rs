//! Column descriptions: the API documentation of the fields the columns
//! show, read from `k8s-openapi`'s schemas of just those types, so printing
//! a table does not build the whole OpenAPI document.

use std::collections::HashMap;
use std::sync::LazyLock;

use k8s_openapi::api::{
    apps::v1 as apps, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::Value;

/// `definition.property` → description.
static DOCS: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let mut generator = SchemaSettings::draft07().into_generator();
    let mut docs = HashMap::new();
    collect::<meta::ObjectMeta>(&mut generator, &mut docs);
    collect::<core::PodSpec>(&mut generator, &mut docs);
    collect::<core::PodStatus>(&mut generator, &mut docs);
    collect::<core::ServiceSpec>(&mut generator, &mut docs);
    collect::<core::NodeStatus>(&mut generator, &mut docs);
    collect::<core::NodeSystemInfo>(&mut generator, &mut docs);
    collect::<core::Event>(&mut generator, &mut docs);
    collect::<core::ObjectReference>(&mut generator, &mut docs);
    collect::<core::Endpoints>(&mut generator, &mut docs);
    collect::<core::Secret>(&mut generator, &mut docs);
    collect::<core::ConfigMap>(&mut generator, &mut docs);
    collect::<core::ServiceAccount>(&mut generator, &mut docs);
    collect::<coordination::LeaseSpec>(&mut generator, &mut docs);
    collect::<discovery::EndpointSlice>(&mut generator, &mut docs);
    collect::<apps::DeploymentSpec>(&mut generator, &mut docs);
    collect::<apps::DeploymentStatus>(&mut generator, &mut docs);
    collect::<apps::ReplicaSetSpec>(&mut generator, &mut docs);
    collect::<apps::ReplicaSetStatus>(&mut generator, &mut docs);
    docs
});

fn collect<T: JsonSchema>(generator: &mut SchemaGenerator, docs: &mut HashMap<String, String>) {
    let schema = T::json_schema(generator).to_value();
    let name = T::schema_name();
    for (property, field) in schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if let Some(description) = field.get("description").and_then(Value::as_str) {
            docs.insert(format!("{name}.{property}"), description.to_owned());
        }
    }
}

/// The description of `definition.property`
/// (`io.k8s.api.core.v1.PodStatus`, `podIP`); empty when unknown.
pub fn doc(definition: &str, property: &str) -> &'static str {
    DOCS.get(&format!("{definition}.{property}"))
        .map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_of_printed_fields() {
        assert!(doc("io.k8s.api.core.v1.PodStatus", "podIP").contains("IP address"));
        assert!(
            doc("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "name")
                .starts_with("Name must be unique")
        );
        assert_eq!(doc("io.k8s.api.core.v1.PodStatus", "nope"), "");
    }
}
