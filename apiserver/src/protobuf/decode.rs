//! Protobuf messages to JSON, driven by the message table: field by field,
//! with upstream's special types (times, quantities, int-or-strings, raw
//! JSON) turned into their JSON forms.

use base64::Engine;
use base64::prelude::BASE64_STANDARD;
use bytes::Buf;
use chrono::{DateTime, SecondsFormat};
use prost::encoding::{WireType, decode_key, decode_varint};
use serde_json::{Map, Value as Json};

use super::DecodeError;
use super::names::{JsonField, json_field, keeps_zero};
use super::table::{self, Field, Kind, Message, Value};

/// Messages nest a few levels deep; this bounds hostile input.
const MAX_DEPTH: usize = 64;

const TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const RAW_EXTENSION: &str = "io.k8s.apimachinery.pkg.runtime.RawExtension";
const FIELDS_V1: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1";

fn invalid(what: impl std::fmt::Display) -> DecodeError {
    DecodeError::new(what)
}

/// The JSON form of the message `name` encoded in `bytes`.
pub fn message(name: &str, bytes: &[u8], depth: usize) -> Result<Json, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(invalid("messages nest too deeply"));
    }
    match name {
        TIME => return timestamp(bytes, SecondsFormat::Secs),
        MICRO_TIME => return timestamp(bytes, SecondsFormat::Micros),
        QUANTITY => return Ok(Json::String(string_field(bytes, 1)?.unwrap_or_default())),
        INT_OR_STRING => return int_or_string(bytes),
        RAW_EXTENSION | FIELDS_V1 => return raw_json(bytes),
        _ => {}
    }
    let message = table::message(name).ok_or_else(|| invalid(format!("unknown message {name}")))?;
    let mut out = Map::new();
    let mut buf = bytes;
    while buf.has_remaining() {
        let (tag, wire) = decode_key(&mut buf).map_err(invalid)?;
        let Some((index, field)) = message.field(tag) else {
            skip(wire, &mut buf)?;
            continue;
        };
        let key = match json_field(message, index) {
            JsonField::Named(key) => key.as_str(),
            JsonField::Inline(target) => {
                if let Json::Object(inner) =
                    self::message(target, length_delimited(wire, &mut buf)?, depth + 1)?
                {
                    out.extend(inner);
                }
                continue;
            }
        };
        let len = match out.get(key) {
            Some(Json::Array(items)) => items.len(),
            _ => 0,
        };
        field_value(field, wire, &mut buf, key, &mut out, depth).map_err(|e| {
            e.within(if field.repeated {
                format!("{key}[{len}]")
            } else {
                key.to_owned()
            })
        })?;
    }
    drop_zeros(message, &mut out);
    Ok(Json::Object(out))
}

/// Decodes one occurrence of `field` into `out[key]`.
fn field_value(
    field: &Field,
    wire: WireType,
    buf: &mut &[u8],
    key: &str,
    out: &mut Map<String, Json>,
    depth: usize,
) -> Result<(), DecodeError> {
    match field.kind {
        Kind::Map(value) => {
            let (k, v) = map_entry(length_delimited(wire, buf)?, value, depth)?;
            if let Json::Object(map) = out.entry(key).or_insert_with(|| Json::Object(Map::new())) {
                map.insert(k, v);
            }
        }
        Kind::Scalar(value)
            if field.repeated && wire == WireType::LengthDelimited && is_packable(value) =>
        {
            let mut packed = length_delimited(wire, buf)?;
            while packed.has_remaining() {
                let item = scalar(value, wire_of(value), &mut packed)?;
                push(out, key, item);
            }
        }
        Kind::Scalar(value) => {
            let item = scalar(value, wire, buf)?;
            if field.repeated {
                push(out, key, item)
            } else {
                out.insert(key.to_owned(), item);
            }
        }
        Kind::Message(target) => {
            let item = message(target, length_delimited(wire, buf)?, depth + 1)?;
            if field.repeated {
                push(out, key, item)
            } else {
                out.insert(key.to_owned(), item);
            }
        }
    }
    Ok(())
}

/// What Go's JSON encoding leaves out: zero values of non-pointer fields
/// (including `IntOrString` 0 and the zero `Time`, decoded as `null`).
fn drop_zeros(message: &Message, out: &mut Map<String, Json>) {
    for (index, field) in message.fields.iter().enumerate() {
        if field.repeated || matches!(field.kind, Kind::Map(_)) {
            continue;
        }
        let JsonField::Named(key) = json_field(message, index) else {
            continue;
        };
        let zero = match out.get(key) {
            Some(Json::Null) => true,
            Some(Json::String(s)) => s.is_empty(),
            Some(Json::Bool(b)) => !b,
            Some(Json::Number(n)) => n.as_i64() == Some(0),
            _ => false,
        };
        if zero && (out[key].is_null() || !keeps_zero(message.name, key)) {
            out.remove(key);
        }
    }
}

fn push(out: &mut Map<String, Json>, key: &str, item: Json) {
    if let Json::Array(items) = out.entry(key).or_insert_with(|| Json::Array(Vec::new())) {
        items.push(item);
    }
}

fn is_packable(value: Value) -> bool {
    matches!(value, Value::Bool | Value::Int32 | Value::Int64)
}

fn wire_of(value: Value) -> WireType {
    match value {
        Value::Bool | Value::Int32 | Value::Int64 => WireType::Varint,
        _ => WireType::LengthDelimited,
    }
}

fn scalar(value: Value, wire: WireType, buf: &mut &[u8]) -> Result<Json, DecodeError> {
    if wire != wire_of(value) {
        return Err(invalid(format!("a {value:?} field came as {wire:?}")));
    }
    Ok(match value {
        Value::String => {
            let bytes = length_delimited(wire, buf)?;
            Json::String(std::str::from_utf8(bytes).map_err(invalid)?.to_owned())
        }
        Value::Bytes => Json::String(BASE64_STANDARD.encode(length_delimited(wire, buf)?)),
        Value::Bool => Json::Bool(decode_varint(buf).map_err(invalid)? != 0),
        // Negative int32s are sign-extended to 64 bits on the wire.
        Value::Int32 => Json::from(decode_varint(buf).map_err(invalid)? as i64 as i32),
        Value::Int64 => Json::from(decode_varint(buf).map_err(invalid)? as i64),
        Value::Message(_) => return Err(invalid("a message is not a scalar")),
    })
}

/// A `map<string, V>` entry: key (1) and value (2).
fn map_entry(mut entry: &[u8], value: Value, depth: usize) -> Result<(String, Json), DecodeError> {
    let mut key = String::new();
    let mut item = match value {
        Value::Message(name) => self::message(name, &[], depth + 1)?,
        Value::String | Value::Bytes => Json::String(String::new()),
        _ => Json::Null,
    };
    while entry.has_remaining() {
        let (tag, wire) = decode_key(&mut entry).map_err(invalid)?;
        match (tag, value) {
            (1, _) => {
                key = std::str::from_utf8(length_delimited(wire, &mut entry)?)
                    .map_err(invalid)?
                    .to_owned();
            }
            (2, Value::Message(name)) => {
                item = self::message(name, length_delimited(wire, &mut entry)?, depth + 1)?;
            }
            (2, scalar_value) => item = scalar(scalar_value, wire, &mut entry)?,
            _ => skip(wire, &mut entry)?,
        }
    }
    Ok((key, item))
}

/// A field read without its message's schema.
struct RawField<'a> {
    tag: u32,
    value: RawValue<'a>,
}

enum RawValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of the small messages read without the table (the
/// envelope, times, quantities, int-or-strings); fixed-width ones skipped.
fn fields_of(mut bytes: &[u8]) -> Result<Vec<RawField<'_>>, DecodeError> {
    let mut fields = Vec::new();
    while bytes.has_remaining() {
        let (tag, wire) = decode_key(&mut bytes).map_err(invalid)?;
        let value = match wire {
            WireType::Varint => RawValue::Varint(decode_varint(&mut bytes).map_err(invalid)?),
            WireType::LengthDelimited => RawValue::Bytes(length_delimited(wire, &mut bytes)?),
            other => {
                skip(other, &mut bytes)?;
                continue;
            }
        };
        fields.push(RawField { tag, value });
    }
    Ok(fields)
}

/// The last length-delimited field `tag` of a message.
pub fn bytes_field(bytes: &[u8], tag: u32) -> Result<Option<&[u8]>, DecodeError> {
    Ok(fields_of(bytes)?
        .into_iter()
        .rev()
        .find_map(|f| match f.value {
            RawValue::Bytes(value) if f.tag == tag => Some(value),
            _ => None,
        }))
}

/// The last string field `tag` of a message.
pub fn string_field(bytes: &[u8], tag: u32) -> Result<Option<String>, DecodeError> {
    bytes_field(bytes, tag)?
        .map(|value| {
            std::str::from_utf8(value)
                .map(str::to_owned)
                .map_err(invalid)
        })
        .transpose()
}

fn varint_field(bytes: &[u8], tag: u32) -> Result<u64, DecodeError> {
    Ok(fields_of(bytes)?
        .into_iter()
        .rev()
        .find_map(|f| match f.value {
            RawValue::Varint(value) if f.tag == tag => Some(value),
            _ => None,
        })
        .unwrap_or(0))
}

/// `Time` (seconds, nanos) as RFC 3339; the zero time as `null`.
fn timestamp(bytes: &[u8], format: SecondsFormat) -> Result<Json, DecodeError> {
    let seconds = varint_field(bytes, 1)? as i64;
    let nanos = varint_field(bytes, 2)? as i64 as i32;
    if seconds == 0 && nanos == 0 {
        return Ok(Json::Null);
    }
    let time = DateTime::from_timestamp(seconds, u32::try_from(nanos).map_err(invalid)?)
        .ok_or_else(|| invalid(format!("time {seconds}s is out of range")))?;
    Ok(Json::String(time.to_rfc3339_opts(format, true)))
}

/// `IntOrString`: type 0 with an int (2), type 1 with a string (3).
fn int_or_string(bytes: &[u8]) -> Result<Json, DecodeError> {
    if varint_field(bytes, 1)? == 1 {
        Ok(Json::String(string_field(bytes, 3)?.unwrap_or_default()))
    } else {
        Ok(Json::from(varint_field(bytes, 2)? as i64 as i32))
    }
}

/// `RawExtension` / `FieldsV1`: JSON bytes in field 1.
fn raw_json(bytes: &[u8]) -> Result<Json, DecodeError> {
    let raw = bytes_field(bytes, 1)?.unwrap_or_default();
    if raw.is_empty() {
        return Ok(Json::Null);
    }
    serde_json::from_slice(raw).map_err(|e| invalid(format!("embedded JSON: {e}")))
}

fn length_delimited<'a>(wire: WireType, buf: &mut &'a [u8]) -> Result<&'a [u8], DecodeError> {
    if wire != WireType::LengthDelimited {
        return Err(invalid(format!(
            "expected a length-delimited field, got {wire:?}"
        )));
    }
    let len = usize::try_from(decode_varint(buf).map_err(invalid)?).map_err(invalid)?;
    if buf.len() < len {
        return Err(invalid("a field is cut short"));
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

fn skip(wire: WireType, buf: &mut &[u8]) -> Result<(), DecodeError> {
    let len = match wire {
        WireType::Varint => return decode_varint(buf).map(drop).map_err(invalid),
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        WireType::LengthDelimited => return length_delimited(wire, buf).map(drop),
        WireType::StartGroup | WireType::EndGroup => {
            return Err(invalid("groups are not supported"));
        }
    };
    if buf.len() < len {
        return Err(invalid("a field is cut short"));
    }
    buf.advance(len);
    Ok(())
}
