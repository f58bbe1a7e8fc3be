//! The REST operations the apiserver serves, described once and rendered
//! into both OpenAPI versions: paths, methods, query parameters, bodies,
//! responses and the `x-kubernetes-action` / group-version-kind
//! extensions clients look for (kubectl checks that PATCH takes `dryRun`
//! and `fieldValidation` before using them).

use serde_json::{Map, Value};

use crate::resources::{RESOURCES, Resource};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
}

impl Method {
    pub fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Put => "put",
            Method::Post => "post",
            Method::Delete => "delete",
            Method::Patch => "patch",
        }
    }
}

/// A query parameter: name, OpenAPI type, description.
pub type QueryParam = (&'static str, &'static str, &'static str);

const PRETTY: QueryParam = (
    "pretty",
    "string",
    "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
);
const DRY_RUN: QueryParam = (
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: QueryParam = (
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
);
const FIELD_VALIDATION: QueryParam = (
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
);
const FORCE: QueryParam = (
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
);
const GRACE_PERIOD: QueryParam = (
    "gracePeriodSeconds",
    "integer",
    "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately.",
);
const PROPAGATION_POLICY: QueryParam = (
    "propagationPolicy",
    "string",
    "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background' and 'Foreground'.",
);
const ORPHAN_DEPENDENTS: QueryParam = (
    "orphanDependents",
    "boolean",
    "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned.",
);
const LIST: &[QueryParam] = &[
    (
        "allowWatchBookmarks",
        "boolean",
        "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
    ),
    (
        "continue",
        "string",
        "The continue option should be set when retrieving more results from the server.",
    ),
    (
        "fieldSelector",
        "string",
        "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
    ),
    (
        "labelSelector",
        "string",
        "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
    ),
    (
        "limit",
        "integer",
        "limit is a maximum number of responses to return for a list call.",
    ),
    (
        "resourceVersion",
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    (
        "resourceVersionMatch",
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
    ),
    (
        "sendInitialEvents",
        "boolean",
        "`sendInitialEvents=true` may be set together with `watch=true`.",
    ),
    (
        "timeoutSeconds",
        "integer",
        "Timeout for the list/watch call.",
    ),
    (
        "watch",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
    ),
];

pub const JSON_AND_YAML: &[&str] = &["application/json", "application/yaml"];
pub const WATCHABLE: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/json;stream=watch",
];
pub const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// What an operation's body or response is: a kind's definition, or a
/// fixed one (`Status`, `Patch`, `DeleteOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub method: Method,
    pub id: String,
    pub description: String,
    pub action: &'static str,
    /// Group, version, kind of the object the operation is about.
    pub gvk: (&'static str, &'static str, String),
    pub query: Vec<QueryParam>,
    pub consumes: &'static [&'static str],
    pub produces: &'static [&'static str],
    /// The body's definition name, and whether it is required.
    pub body: Option<(String, bool)>,
    /// Response codes with the definition each returns.
    pub responses: Vec<(u16, String)>,
}

/// A path and its operations; `name`/`namespace` path parameters are
/// implied by the `{…}` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathItem {
    pub path: String,
    /// The kind named in the `name` parameter's description.
    pub kind: String,
    pub operations: Vec<Operation>,
}

impl PathItem {
    pub fn has_name(&self) -> bool {
        self.path.contains("{name}")
    }

    pub fn has_namespace(&self) -> bool {
        self.path.contains("{namespace}")
    }
}

/// Renders a path item in either OpenAPI version: its operations keyed by
/// method, then the `name`/`namespace` path parameters and `pretty`.
pub fn render_path_item(
    item: &PathItem,
    operation: impl Fn(&Operation) -> Value,
    path_param: impl Fn(&str, &str) -> Value,
    query_param: impl Fn(QueryParam) -> Value,
) -> Value {
    let mut out = Map::new();
    for op in &item.operations {
        out.insert(op.method.key().into(), operation(op));
    }
    let mut parameters = Vec::new();
    if item.has_name() {
        parameters.push(path_param("name", &format!("name of the {}", item.kind)));
    }
    if item.has_namespace() {
        parameters.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    parameters.push(query_param(PRETTY));
    out.insert("parameters".into(), Value::Array(parameters));
    Value::Object(out)
}

/// `core_v1`, `apps_v1`, `discovery_v1`: the tag of a group-version.
pub fn tag(group: &str, version: &str) -> String {
    let group = group
        .split('.')
        .next()
        .filter(|g| !g.is_empty())
        .unwrap_or("core");
    format!("{group}_{version}")
}

/// `CoreV1`, `AppsV1`: the infix of operation ids.
fn id_infix(group: &str, version: &str) -> String {
    let mut out = String::new();
    for word in tag(group, version).split('_') {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.extend(chars);
        }
    }
    out
}

/// `/api/v1` or `/apis/apps/v1`.
pub fn group_version_root(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// Every path the apiserver serves for `definition_of` each resource.
pub fn paths(definition_of: impl Fn(&str, &str, &str) -> Option<String>) -> Vec<PathItem> {
    let mut paths = Vec::new();
    for res in RESOURCES {
        let Some(definition) = definition_of(res.group, res.version, res.kind) else {
            continue;
        };
        let list_definition = format!("{definition}List");
        resource_paths(
            res,
            &definition,
            &list_definition,
            &definition_of,
            &mut paths,
        );
    }
    paths.sort_by(|a, b| a.path.cmp(&b.path));
    paths
}

fn resource_paths(
    res: &Resource,
    definition: &str,
    list_definition: &str,
    definition_of: &impl Fn(&str, &str, &str) -> Option<String>,
    paths: &mut Vec<PathItem>,
) {
    let root = group_version_root(res.group, res.version);
    let (collection, scope) = if res.namespaced {
        (
            format!("{root}/namespaces/{{namespace}}/{}", res.plural),
            "Namespaced",
        )
    } else {
        (format!("{root}/{}", res.plural), "")
    };
    let op = Builder {
        res,
        scope,
        infix: id_infix(res.group, res.version),
    };
    let kind = res.kind;
    let status = "io.k8s.apimachinery.pkg.apis.meta.v1.Status".to_owned();

    paths.push(PathItem {
        path: collection.clone(),
        kind: kind.to_owned(),
        operations: vec![
            op.make(
                Method::Get,
                "list",
                "",
                format!("list or watch objects of kind {kind}"),
            )
            .query(LIST)
            .produces(WATCHABLE)
            .responds(list_definition),
            op.make(Method::Post, "create", "", format!("create a {kind}"))
                .query(&[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION])
                .body(definition, true)
                .responds_created(definition),
            op.make(
                Method::Delete,
                "deletecollection",
                "",
                format!("delete collection of {kind}"),
            )
            .query(&[DRY_RUN, GRACE_PERIOD, ORPHAN_DEPENDENTS, PROPAGATION_POLICY])
            .query(LIST)
            .body(super::definitions::DELETE_OPTIONS, false)
            .responds(&status),
        ],
    });
    paths.push(PathItem {
        path: format!("{collection}/{{name}}"),
        kind: kind.to_owned(),
        operations: vec![
            op.make(Method::Get, "get", "", format!("read the specified {kind}"))
                .responds(definition),
            op.make(
                Method::Put,
                "update",
                "",
                format!("replace the specified {kind}"),
            )
            .query(&[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION])
            .body(definition, true)
            .responds_created(definition),
            op.make(
                Method::Patch,
                "patch",
                "",
                format!("partially update the specified {kind}"),
            )
            .query(&[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE])
            .consumes(PATCH_TYPES)
            .body(super::definitions::PATCH, true)
            .responds_created(definition),
            op.make(Method::Delete, "delete", "", format!("delete a {kind}"))
                .query(&[DRY_RUN, GRACE_PERIOD, ORPHAN_DEPENDENTS, PROPAGATION_POLICY])
                .body(super::definitions::DELETE_OPTIONS, false)
                .responds(definition)
                .also_responds(202, definition),
        ],
    });
    if res.namespaced {
        let all = format!("{root}/{}", res.plural);
        let op = Builder {
            scope: "",
            ..op.clone()
        };
        paths.push(PathItem {
            path: all,
            kind: kind.to_owned(),
            operations: vec![
                op.make(
                    Method::Get,
                    "list",
                    "ForAllNamespaces",
                    format!("list or watch objects of kind {kind}"),
                )
                .query(LIST)
                .produces(WATCHABLE)
                .responds(list_definition),
            ],
        });
    }
    for &sub in res.subresources {
        let path = format!("{collection}/{{name}}/{sub}");
        let suffix = capitalized(sub);
        let item = |operations| PathItem {
            path: path.clone(),
            kind: kind.to_owned(),
            operations,
        };
        match sub {
            "status" => paths.push(item(
                op.read_replace_patch(&suffix, "status", definition, None),
            )),
            "scale" => {
                let Some(scale) = definition_of("autoscaling", "v1", "Scale") else {
                    continue;
                };
                let gvk = ("autoscaling", "v1", "Scale".to_owned());
                paths.push(item(op.read_replace_patch(
                    &suffix,
                    "scale",
                    &scale,
                    Some(gvk),
                )));
            }
            "binding" | "eviction" => {
                let (group, sub_kind) = if sub == "binding" {
                    ("", "Binding")
                } else {
                    ("policy", "Eviction")
                };
                let Some(body) = definition_of(group, "v1", sub_kind) else {
                    continue;
                };
                paths.push(item(vec![
                    op.make(
                        Method::Post,
                        "create",
                        &suffix,
                        format!("create {sub} of a {kind}"),
                    )
                    .query(&[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION])
                    .gvk((group, "v1", sub_kind.to_owned()))
                    .body(&body, true)
                    .responds_created(&body),
                ]));
            }
            "finalize" => paths.push(item(vec![
                op.make(
                    Method::Put,
                    "update",
                    &suffix,
                    format!("replace finalize of the specified {kind}"),
                )
                .query(&[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION])
                .body(definition, true)
                .responds_created(definition),
            ])),
            _ => {}
        }
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Builds the operations of one resource.
#[derive(Clone)]
struct Builder<'a> {
    res: &'a Resource,
    /// `Namespaced` or empty, as in `readCoreV1NamespacedPod`.
    scope: &'static str,
    infix: String,
}

impl Builder<'_> {
    fn make(
        &self,
        method: Method,
        action: &'static str,
        suffix: &str,
        description: String,
    ) -> Operation {
        let verb = match action {
            "list" => "list",
            "create" => "create",
            "get" => "read",
            "update" => "replace",
            "patch" => "patch",
            _ => "delete",
        };
        let collection = if action == "deletecollection" {
            "Collection"
        } else {
            ""
        };
        let id = format!(
            "{verb}{}{collection}{}{}{suffix}",
            self.infix, self.scope, self.res.kind
        );
        Operation {
            method,
            id,
            description,
            action,
            gvk: (self.res.group, self.res.version, self.res.kind.to_owned()),
            query: Vec::new(),
            consumes: &["*/*"],
            produces: JSON_AND_YAML,
            body: None,
            responses: Vec::new(),
        }
    }

    /// GET, PUT and PATCH of a subresource such as `status` or `scale`.
    fn read_replace_patch(
        &self,
        suffix: &str,
        sub: &str,
        definition: &str,
        gvk: Option<(&'static str, &'static str, String)>,
    ) -> Vec<Operation> {
        let kind = self.res.kind;
        let gvk = gvk.unwrap_or((self.res.group, self.res.version, kind.to_owned()));
        vec![
            self.make(
                Method::Get,
                "get",
                suffix,
                format!("read {sub} of the specified {kind}"),
            )
            .gvk(gvk.clone())
            .responds(definition),
            self.make(
                Method::Put,
                "update",
                suffix,
                format!("replace {sub} of the specified {kind}"),
            )
            .gvk(gvk.clone())
            .query(&[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION])
            .body(definition, true)
            .responds_created(definition),
            self.make(
                Method::Patch,
                "patch",
                suffix,
                format!("partially update {sub} of the specified {kind}"),
            )
            .gvk(gvk)
            .query(&[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE])
            .consumes(PATCH_TYPES)
            .body(super::definitions::PATCH, true)
            .responds_created(definition),
        ]
    }
}

impl Operation {
    fn query(mut self, params: &[QueryParam]) -> Self {
        self.query.extend_from_slice(params);
        self
    }

    fn consumes(mut self, types: &'static [&'static str]) -> Self {
        self.consumes = types;
        self
    }

    fn produces(mut self, types: &'static [&'static str]) -> Self {
        self.produces = types;
        self
    }

    fn gvk(mut self, gvk: (&'static str, &'static str, String)) -> Self {
        self.gvk = gvk;
        self
    }

    fn body(mut self, definition: &str, required: bool) -> Self {
        self.body = Some((definition.to_owned(), required));
        self
    }

    fn responds(self, definition: &str) -> Self {
        self.also_responds(200, definition)
    }

    /// 200 and 201, as creates and updates answer.
    fn responds_created(self, definition: &str) -> Self {
        self.responds(definition).also_responds(201, definition)
    }

    fn also_responds(mut self, code: u16, definition: &str) -> Self {
        self.responses.push((code, definition.to_owned()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<PathItem> {
        paths(|group, version, kind| {
            let group = if group.is_empty() { "core" } else { group };
            Some(format!("{group}.{version}.{kind}"))
        })
    }

    #[test]
    fn operation_ids_like_upstream() {
        let ids: Vec<String> = all()
            .into_iter()
            .flat_map(|p| p.operations.into_iter().map(|o| o.id))
            .collect();
        for id in [
            "listCoreV1NamespacedPod",
            "createCoreV1NamespacedPod",
            "deleteCoreV1CollectionNamespacedPod",
            "readCoreV1NamespacedPod",
            "replaceCoreV1NamespacedPod",
            "patchCoreV1NamespacedPod",
            "deleteCoreV1NamespacedPod",
            "listCoreV1PodForAllNamespaces",
            "readCoreV1NamespacedPodStatus",
            "createCoreV1NamespacedPodBinding",
            "createCoreV1NamespacedPodEviction",
            "patchAppsV1NamespacedDeploymentScale",
            "readCoreV1Node",
            "replaceCoreV1NamespaceFinalize",
            "listDiscoveryV1NamespacedEndpointSlice",
            "patchCoordinationV1NamespacedLease",
        ] {
            assert!(ids.iter().any(|i| i == id), "{id} missing");
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "operation ids are unique");
    }

    #[test]
    fn patch_takes_dry_run_and_field_validation() {
        let paths = all();
        let pod = paths
            .iter()
            .find(|p| p.path == "/api/v1/namespaces/{namespace}/pods/{name}")
            .unwrap();
        let patch = pod
            .operations
            .iter()
            .find(|o| o.method == Method::Patch)
            .unwrap();
        let names: Vec<&str> = patch.query.iter().map(|q| q.0).collect();
        assert_eq!(
            names,
            ["dryRun", "fieldManager", "fieldValidation", "force"]
        );
        assert_eq!(patch.gvk, ("", "v1", "Pod".to_owned()));
        let scale = paths
            .iter()
            .find(|p| p.path == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale")
            .unwrap();
        assert_eq!(
            scale.operations[0].gvk,
            ("autoscaling", "v1", "Scale".to_owned())
        );
    }
}
