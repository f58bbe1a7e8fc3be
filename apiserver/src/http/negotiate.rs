//! Content negotiation: which representation the `Accept` header asks for
//! (plain JSON, a Table, or metadata only), and what a request body is.

use crate::status::{ApiError, ApiResult};

/// The response representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    /// `meta.k8s.io` Table, in `v1` or `v1beta1` (kubectl 1.20 accepts both).
    Table {
        version: &'static str,
    },
    /// `PartialObjectMetadata` / `PartialObjectMetadataList`.
    Metadata {
        version: &'static str,
    },
}

/// One media range of an `Accept` header.
struct MediaRange<'a> {
    essence: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> MediaRange<'a> {
    fn parse(s: &'a str) -> MediaRange<'a> {
        let mut parts = s.split(';').map(str::trim);
        let essence = parts.next().unwrap_or_default();
        let params = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        MediaRange { essence, params }
    }

    fn param(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
    }
}

fn meta_version(v: Option<&str>) -> Option<&'static str> {
    match v {
        Some("v1") => Some("v1"),
        Some("v1beta1") => Some("v1beta1"),
        _ => None,
    }
}

/// The first representation of `accept` we can produce; JSON when absent.
pub fn output(accept: Option<&str>) -> ApiResult<Output> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::Json);
    };
    for range in accept.split(',').map(MediaRange::parse) {
        let json = matches!(range.essence, "application/json" | "application/*" | "*/*");
        if !json {
            continue;
        }
        match range.param("as") {
            None => return Ok(Output::Json),
            Some("Table") if range.param("g") == Some("meta.k8s.io") => {
                if let Some(version) = meta_version(range.param("v")) {
                    return Ok(Output::Table { version });
                }
            }
            Some("PartialObjectMetadata" | "PartialObjectMetadataList")
                if range.param("g") == Some("meta.k8s.io") =>
            {
                if let Some(version) = meta_version(range.param("v")) {
                    return Ok(Output::Metadata { version });
                }
            }
            Some(_) => {}
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/json;as=Table;g=meta.k8s.io;v=v1 (asked for {accept:?})"
    )))
}

/// The format of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    /// `application/vnd.kubernetes.protobuf`, which kubectl's typed
    /// clients send (`kubectl create deployment`, …).
    Protobuf,
}

/// The body format named by `Content-Type` (JSON when absent).
pub fn body_format(content_type: Option<&str>) -> ApiResult<BodyFormat> {
    let Some(ct) = content_type else {
        return Ok(BodyFormat::Json);
    };
    match MediaRange::parse(ct).essence {
        "application/json" | "" => Ok(BodyFormat::Json),
        "application/yaml" | "application/apply-patch+yaml" => Ok(BodyFormat::Yaml),
        crate::protobuf::CONTENT_TYPE => Ok(BodyFormat::Protobuf),
        _ => Err(ApiError::unsupported_media_type(ct)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_table_requests() {
        let k120 = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(output(Some(k120)).unwrap(), Output::Table { version: "v1" });
        let beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io";
        assert_eq!(
            output(Some(beta)).unwrap(),
            Output::Table { version: "v1beta1" }
        );
        assert_eq!(output(None).unwrap(), Output::Json);
        assert_eq!(output(Some("*/*")).unwrap(), Output::Json);
        let meta = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(
            output(Some(meta)).unwrap(),
            Output::Metadata { version: "v1" }
        );
    }

    #[test]
    fn protobuf_only_is_not_acceptable() {
        let err = output(Some("application/vnd.kubernetes.protobuf")).unwrap_err();
        assert_eq!(err.code, 406);
        let fallback = "application/vnd.kubernetes.protobuf, application/json";
        assert_eq!(output(Some(fallback)).unwrap(), Output::Json);
    }

    #[test]
    fn body_formats() {
        assert_eq!(
            body_format(Some("application/json; charset=utf-8")).unwrap(),
            BodyFormat::Json
        );
        assert_eq!(
            body_format(Some("application/yaml")).unwrap(),
            BodyFormat::Yaml
        );
        assert_eq!(
            body_format(Some("application/vnd.kubernetes.protobuf")).unwrap(),
            BodyFormat::Protobuf
        );
        assert_eq!(body_format(Some("application/cbor")).unwrap_err().code, 415);
    }
}
