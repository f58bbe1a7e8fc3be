//! The resource endpoints: one handler per verb, each parsing the request
//! into registry calls and the outcome into the asked representation.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::Value;

use super::AppState;
use super::body;
use super::encode;
use super::negotiate::{Output, output};
use super::path::{self, ResourcePath};
use super::query::{IncludeObject, Query};
use super::watch::{self, Source, WatchSpec};
use crate::registry::{ListResult, PatchKind, Registry, ScaleChange, Target, Written};
use crate::resources::Resource;
use crate::status::{self, ApiError, ApiResult};

pub async fn core(
    State(state): State<Arc<AppState>>,
    Path((version, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    handle(&state, "", &version, &rest, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn grouped(
    State(state): State<Arc<AppState>>,
    Path((group, version, rest)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    handle(&state, &group, &version, &rest, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// One request, parsed.
struct Call<'a> {
    state: &'a AppState,
    path: ResourcePath,
    query: Query,
    headers: HeaderMap,
    output: Output,
    include: IncludeObject,
}

impl Call<'_> {
    fn res(&self) -> &'static Resource {
        self.path.res
    }

    fn namespace(&self) -> Option<&str> {
        self.path.namespace.as_deref()
    }

    fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or_default()
    }

    fn registry(&self) -> &Registry {
        &self.state.registry
    }

    fn written(&self, written: Written) -> Response {
        let code = if written.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let response = encode::object(self.res(), code, &written.object, self.output, self.include);
        encode::with_warnings(response, &written.warnings)
    }
}

async fn handle(
    state: &AppState,
    group: &str,
    version: &str,
    rest: &str,
    req: Request,
) -> ApiResult<Response> {
    let path = path::parse(group, version, rest)?;
    // Only pods have it; it needs the whole request, to upgrade it.
    if path.subresource.as_deref() == Some("exec") {
        return super::exec::pod_exec(state, &path, req).await;
    }
    let (parts, body) = req.into_parts();
    let query = Query::parse(parts.uri.query())?;
    let raw_query = parts.uri.query().map(str::to_string);
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let call = Call {
        state,
        output: output(accept)?,
        include: query.include_object()?,
        query,
        headers: parts.headers,
        path,
    };
    let named = call.path.name.is_some();
    let sub = call.path.subresource.clone();
    match (parts.method, named, sub.as_deref()) {
        (Method::GET, false, None) if call.path.watch || call.query.is_watch() => watch(&call),
        (Method::GET, false, None) => list(&call),
        (Method::POST, false, None) => create(&call, body::read(body).await?).await,
        (Method::DELETE, false, None) => delete_collection(&call).await,
        (Method::GET, true, None | Some("status")) => get(&call),
        (Method::PUT, true, None) => update(&call, Target::Main, body::read(body).await?).await,
        (Method::PUT, true, Some("status")) => {
            update(&call, Target::Status, body::read(body).await?).await
        }
        (Method::PUT, true, Some("finalize")) => {
            update(&call, Target::Finalize, body::read(body).await?).await
        }
        (Method::PATCH, true, None) => patch(&call, Target::Main, body::read(body).await?).await,
        (Method::PATCH, true, Some("status")) => {
            patch(&call, Target::Status, body::read(body).await?).await
        }
        (Method::DELETE, true, None) => delete(&call, body::read(body).await?).await,
        (Method::GET, true, Some("scale")) => get_scale(&call),
        (Method::PUT, true, Some("scale")) => {
            update_scale(&call, body::read(body).await?, true).await
        }
        (Method::PATCH, true, Some("scale")) => {
            update_scale(&call, body::read(body).await?, false).await
        }
        (Method::POST, true, Some("binding")) => bind(&call, body::read(body).await?).await,
        (Method::POST, true, Some("eviction")) => evict(&call, body::read(body).await?).await,
        (Method::GET, true, Some("log")) => {
            let namespace = call.namespace().unwrap_or("default");
            let container = call.query.get("container");
            super::logs::pod_log(
                state,
                call.res(),
                namespace,
                call.name(),
                container,
                raw_query.as_deref(),
            )
            .await
        }
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn get(call: &Call<'_>) -> ApiResult<Response> {
    let obj = call
        .registry()
        .get(call.res(), call.namespace(), call.name())?;
    Ok(encode::object(
        call.res(),
        StatusCode::OK,
        &obj,
        call.output,
        call.include,
    ))
}

fn list(call: &Call<'_>) -> ApiResult<Response> {
    let opts = call.query.list_options()?;
    let list = call.registry().list(call.res(), call.namespace(), &opts)?;
    Ok(encode::list(call.res(), &list, call.output, call.include))
}

fn watch(call: &Call<'_>) -> ApiResult<Response> {
    let opts = call.query.list_options()?;
    Registry::check_field_selector(call.res(), &opts.fields)?;
    let initial_events_end = call.query.send_initial_events();
    let start = if initial_events_end {
        None
    } else {
        call.query.resource_version()?
    };
    let (initial, from) = match start {
        Some(from) => (Vec::new(), from),
        None => {
            let unpaged = crate::registry::ListOptions {
                limit: None,
                continue_token: None,
                ..opts.clone()
            };
            let snapshot = call
                .registry()
                .list(call.res(), call.namespace(), &unpaged)?;
            (snapshot.items, snapshot.revision)
        }
    };
    let source = match call.registry().watch(call.res(), call.namespace(), from) {
        Ok(events) => Source::Events {
            initial,
            events,
            from,
        },
        Err(e) if e.code == 410 => Source::Failed(e),
        Err(e) => return Err(e),
    };
    let spec = WatchSpec {
        res: call.res(),
        output: call.output,
        include: call.include,
        labels: opts.labels,
        fields: opts.fields,
        bookmarks: call.query.bookmarks(),
        initial_events_end,
        timeout: call.query.watch_timeout()?,
    };
    Ok(watch::respond(spec, source, call.state.shutdown.clone()))
}

async fn create(call: &Call<'_>, bytes: bytes::Bytes) -> ApiResult<Response> {
    let obj = body::object_of(call.res(), body::parse(&call.headers, &bytes)?)?;
    let opts = call.query.write_options()?;
    let written = call
        .registry()
        .create(call.res(), call.namespace(), obj, &opts)
        .await?;
    Ok(call.written(written))
}

async fn update(call: &Call<'_>, target: Target, bytes: bytes::Bytes) -> ApiResult<Response> {
    let obj = body::object_of(call.res(), body::parse(&call.headers, &bytes)?)?;
    let opts = call.query.write_options()?;
    let written = call
        .registry()
        .update(
            call.res(),
            call.namespace(),
            call.name(),
            obj,
            &opts,
            target,
        )
        .await?;
    Ok(call.written(written))
}

fn patch_kind(headers: &HeaderMap) -> ApiResult<PatchKind> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match ct.split(';').next().unwrap_or_default().trim() {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchKind::Apply),
        _ => Err(ApiError::unsupported_patch(ct)),
    }
}

fn patch_body(kind: PatchKind, bytes: &[u8]) -> ApiResult<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the patch is empty"));
    }
    match kind {
        PatchKind::Apply => body::parse_yaml(bytes),
        _ => serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}"))),
    }
}

async fn patch(call: &Call<'_>, target: Target, bytes: bytes::Bytes) -> ApiResult<Response> {
    let kind = patch_kind(&call.headers)?;
    let patch = patch_body(kind, &bytes)?;
    let opts = call.query.write_options()?;
    if kind == PatchKind::Apply && opts.field_manager.is_none() {
        return Err(ApiError::unprocessable(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let written = call
        .registry()
        .patch(
            call.res(),
            call.namespace(),
            call.name(),
            kind,
            &patch,
            &opts,
            target,
        )
        .await?;
    Ok(call.written(written))
}

async fn delete(call: &Call<'_>, bytes: bytes::Bytes) -> ApiResult<Response> {
    let opts = call
        .query
        .delete_options(body::parse_optional(&call.headers, &bytes)?.as_ref())?;
    let deleted = call
        .registry()
        .delete(call.res(), call.namespace(), call.name(), opts)
        .await?;
    let code = if deleted.finished {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(encode::object(
        call.res(),
        code,
        &deleted.object,
        call.output,
        call.include,
    ))
}

async fn delete_collection(call: &Call<'_>) -> ApiResult<Response> {
    let list_opts = call.query.list_options()?;
    let delete_opts = call.query.delete_options(None)?;
    let listed = call
        .registry()
        .list(call.res(), call.namespace(), &list_opts)?;
    let mut removed = Vec::new();
    for obj in listed.items {
        let value = obj.parse();
        let ns = crate::registry::meta::namespace(&value);
        let ns = (!ns.is_empty()).then_some(ns);
        let name = crate::registry::meta::name(&value);
        match call
            .registry()
            .delete(call.res(), ns, name, delete_opts.clone())
            .await
        {
            Ok(deleted) => removed.push(deleted.object),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let result = ListResult {
        items: removed,
        revision: call.registry().store().revision(),
        continue_token: None,
        remaining: None,
    };
    Ok(encode::list(
        call.res(),
        &result,
        Output::Json,
        IncludeObject::Object,
    ))
}

fn namespace_of(call: &Call<'_>) -> ApiResult<String> {
    call.namespace()
        .map(str::to_string)
        .ok_or_else(path::not_found)
}

fn get_scale(call: &Call<'_>) -> ApiResult<Response> {
    let scale = call
        .registry()
        .get_scale(call.res(), &namespace_of(call)?, call.name())?;
    Ok(encode::json_value(StatusCode::OK, &scale))
}

async fn update_scale(call: &Call<'_>, bytes: bytes::Bytes, put: bool) -> ApiResult<Response> {
    let ns = namespace_of(call)?;
    let opts = call.query.write_options()?;
    let scale = if put {
        let scale = body::parse(&call.headers, &bytes)?;
        if scale
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Scale")
        {
            return Err(ApiError::bad_request(
                "the body of a scale update must be a Scale",
            ));
        }
        call.registry()
            .update_scale(
                call.res(),
                &ns,
                call.name(),
                ScaleChange::Replace(&scale),
                &opts,
            )
            .await?
    } else {
        let kind = patch_kind(&call.headers)?;
        let patch = patch_body(kind, &bytes)?;
        call.registry()
            .update_scale(
                call.res(),
                &ns,
                call.name(),
                ScaleChange::Patch(kind, &patch),
                &opts,
            )
            .await?
    };
    Ok(encode::json_value(StatusCode::OK, &scale))
}

async fn bind(call: &Call<'_>, bytes: bytes::Bytes) -> ApiResult<Response> {
    let binding = body::parse(&call.headers, &bytes)?;
    if binding.get("kind").and_then(Value::as_str) != Some("Binding") {
        return Err(ApiError::bad_request(
            "the body of a binding must be a v1 Binding",
        ));
    }
    let opts = call.query.write_options()?;
    call.registry()
        .bind(
            call.res(),
            &namespace_of(call)?,
            call.name(),
            &binding,
            &opts,
        )
        .await?;
    Ok(encode::json_value(
        StatusCode::CREATED,
        &status::success(201, None),
    ))
}

async fn evict(call: &Call<'_>, bytes: bytes::Bytes) -> ApiResult<Response> {
    let eviction = body::parse(&call.headers, &bytes)?;
    if eviction.get("kind").and_then(Value::as_str) != Some("Eviction") {
        return Err(ApiError::bad_request(
            "the body of an eviction must be a policy/v1 Eviction",
        ));
    }
    let opts = call.query.delete_options(eviction.get("deleteOptions"))?;
    call.registry()
        .evict(call.res(), &namespace_of(call)?, call.name(), opts)
        .await?;
    Ok(encode::json_value(
        StatusCode::CREATED,
        &status::success(201, None),
    ))
}
