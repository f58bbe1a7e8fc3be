//! The authentication and authorization layer in front of the API: a
//! verified client certificate or a known bearer token names the caller
//! (401 otherwise), and the authorizer decides (403 when it refuses).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, header};

use super::AppState;
use super::path;
use crate::auth::{Decision, Identity, PeerIdentity, authorize};
use crate::status::ApiError;

pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let from_cert = req
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.clone());
    let identity = match from_cert {
        Some(identity) => Some(identity),
        None => bearer_token(req.headers()).and_then(|t| state.tokens.authenticate(t)),
    };
    let Some(identity) = identity else {
        return ApiError::unauthorized().into_response();
    };
    if authorize(&identity) == Decision::Deny {
        return ApiError::forbidden(forbidden_message(&identity, req.method(), req.uri()))
            .into_response();
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Upstream's wording: `pods is forbidden: User "x" cannot list resource
/// "pods" in API group "" in the namespace "default"`.
fn forbidden_message(identity: &Identity, method: &Method, uri: &http::Uri) -> String {
    let user = &identity.user;
    let p = uri.path();
    let resource = p
        .strip_prefix("/api/v1/")
        .map(|rest| ("", "v1", rest))
        .or_else(|| {
            let rest = p.strip_prefix("/apis/")?;
            let mut parts = rest.splitn(3, '/');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
        .and_then(|(g, v, rest)| path::parse(g, v, rest).ok());
    let Some(rp) = resource else {
        let verb = method.as_str().to_lowercase();
        return format!("forbidden: User \"{user}\" cannot {verb} path \"{p}\"");
    };
    let watch = rp.watch
        || uri
            .query()
            .is_some_and(|q| q.contains("watch=true") || q.contains("watch=1"));
    let verb = match (method, rp.name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "access",
    };
    let resource = match &rp.subresource {
        Some(sub) => format!("{}/{sub}", rp.res.plural),
        None => rp.res.plural.to_string(),
    };
    let what = match &rp.name {
        Some(name) => format!("{} \"{name}\"", rp.res.plural),
        None => rp.res.plural.to_string(),
    };
    let scope = match &rp.namespace {
        Some(ns) => format!(" in the namespace \"{ns}\""),
        None => " at the cluster scope".to_string(),
    };
    format!(
        "{what} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\"{scope}",
        rp.res.group
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_messages_name_the_request() {
        let alice = Identity {
            user: "alice".into(),
            groups: vec![],
        };
        let uri: http::Uri = "/api/v1/namespaces/default/pods".parse().unwrap();
        assert_eq!(
            forbidden_message(&alice, &Method::GET, &uri),
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let uri: http::Uri = "/apis/apps/v1/namespaces/d/deployments/web/scale"
            .parse()
            .unwrap();
        assert_eq!(
            forbidden_message(&alice, &Method::PATCH, &uri),
            "deployments \"web\" is forbidden: User \"alice\" cannot patch resource \"deployments/scale\" in API group \"apps\" in the namespace \"d\""
        );
        let uri: http::Uri = "/version".parse().unwrap();
        assert_eq!(
            forbidden_message(&alice, &Method::GET, &uri),
            "forbidden: User \"alice\" cannot get path \"/version\""
        );
    }
}
