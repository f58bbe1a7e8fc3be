//! Table printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`):
//! the columns and cells upstream's printers produce, so `kubectl get` and
//! `-o wide` (columns with priority > 0) look like upstream. Like
//! upstream's server side, every row carries the wide cells too.

mod age;
mod cluster;
mod docs;
mod format;
mod network;
mod pod;
mod workloads;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::resources::Resource;

/// A `TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `date`, …
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for default columns, 1 for `-o wide` columns.
    pub priority: i32,
}

impl Column {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }

    fn new(name: &'static str, type_: &'static str, description: &'static str) -> Column {
        Column {
            name,
            type_,
            format: "",
            description,
            priority: 0,
        }
    }

    /// A default string column.
    fn text(name: &'static str, description: &'static str) -> Column {
        Column::new(name, "string", description)
    }

    fn integer(name: &'static str, description: &'static str) -> Column {
        Column::new(name, "integer", description)
    }

    /// A string column shown only by `-o wide`.
    fn wide(name: &'static str, description: &'static str) -> Column {
        Column {
            priority: 1,
            ..Column::text(name, description)
        }
    }

    /// The `Name` column every printer starts with.
    fn name() -> Column {
        Column {
            format: "name",
            ..Column::text("Name", meta_doc("name"))
        }
    }

    /// The `Age` column.
    fn age() -> Column {
        Column::text("Age", meta_doc("creationTimestamp"))
    }
}

use docs::doc;

fn meta_doc(property: &str) -> &'static str {
    doc("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", property)
}

/// The description of a field of a core/v1 type (`PodStatus`, `podIP`).
fn core_doc(type_name: &str, property: &str) -> &'static str {
    doc(&format!("io.k8s.api.core.v1.{type_name}"), property)
}

type ColumnsFn = fn() -> Vec<Column>;
type CellsFn = fn(&Value, DateTime<Utc>) -> Vec<Value>;

/// The columns and row printer of one kind.
struct Printer {
    columns: ColumnsFn,
    cells: CellsFn,
}

fn printer(res: &Resource) -> Option<Printer> {
    let (columns, cells): (ColumnsFn, CellsFn) = match (res.group, res.kind) {
        ("", "Pod") => (pod::columns, pod::cells),
        ("", "Service") => (network::service_columns, network::service_cells),
        ("", "Endpoints") => (network::endpoints_columns, network::endpoints_cells),
        ("discovery.k8s.io", "EndpointSlice") => (
            network::endpoint_slice_columns,
            network::endpoint_slice_cells,
        ),
        ("apps", "Deployment") => (workloads::deployment_columns, workloads::deployment_cells),
        ("apps", "ReplicaSet") => (workloads::replica_set_columns, workloads::replica_set_cells),
        ("", "Node") => (cluster::node_columns, cluster::node_cells),
        ("", "Namespace") => (cluster::namespace_columns, cluster::namespace_cells),
        ("", "Event") => (cluster::event_columns, cluster::core_event_cells),
        ("events.k8s.io", "Event") => (cluster::event_columns, cluster::event_cells),
        ("", "ConfigMap") => (cluster::config_map_columns, cluster::config_map_cells),
        ("", "Secret") => (cluster::secret_columns, cluster::secret_cells),
        ("", "ServiceAccount") => (
            cluster::service_account_columns,
            cluster::service_account_cells,
        ),
        ("coordination.k8s.io", "Lease") => (cluster::lease_columns, cluster::lease_cells),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

/// The columns for `res`.
pub fn columns(res: &Resource) -> Vec<Column> {
    match printer(res) {
        Some(printer) => (printer.columns)(),
        None => vec![
            Column::name(),
            Column::new("Created At", "date", meta_doc("creationTimestamp")),
        ],
    }
}

/// One row's cells for `obj`, in the order of `columns(res)`.
pub fn cells(res: &Resource, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    match printer(res) {
        Some(printer) => (printer.cells)(obj, now),
        None => vec![
            obj.pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null),
            obj.pointer("/metadata/creationTimestamp")
                .cloned()
                .unwrap_or(Value::Null),
        ],
    }
}

/// The name and age of an object, the cells most printers share.
fn name_of(obj: &Value) -> Value {
    Value::String(format::str_at(obj, "/metadata/name").to_owned())
}

fn age_of(obj: &Value, now: DateTime<Utc>) -> Value {
    Value::String(age::since(obj.pointer("/metadata/creationTimestamp"), now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::RESOURCES;

    #[test]
    fn every_resource_has_as_many_cells_as_columns() {
        let now = Utc::now();
        let empty = json!({"metadata": {"name": "x", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        for res in RESOURCES {
            let columns = columns(res);
            assert_eq!(
                columns[0].name,
                if res.kind == "Event" {
                    "Last Seen"
                } else {
                    "Name"
                }
            );
            assert_eq!(cells(res, &empty, now).len(), columns.len(), "{}", res.kind);
            for column in &columns {
                assert!(
                    !column.description.is_empty(),
                    "{} {}",
                    res.kind,
                    column.name
                );
            }
        }
    }
}
