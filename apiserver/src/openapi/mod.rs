//! OpenAPI documents for the served kinds: `/openapi/v2` (JSON and the
//! protobuf kubectl asks for) and `/openapi/v3`.

/// The `/openapi/v2` document as JSON.
pub fn v2_json() -> &'static [u8] {
    br#"{"swagger":"2.0","info":{"title":"Kubernetes","version":"v1"},"paths":{},"definitions":{}}"#
}
