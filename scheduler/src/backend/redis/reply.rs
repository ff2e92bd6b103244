//! Reading script replies: small helpers over `fred::types::Value`.

use chrono::{DateTime, Utc};
use fred::types::Value;

use crate::api::error::Error;

pub(crate) fn corrupt(what: &str) -> Error {
    Error::Corrupt(format!("unexpected script reply: {what}"))
}

pub(crate) fn array(value: Value, what: &str) -> Result<Vec<Value>, Error> {
    match value {
        Value::Array(items) => Ok(items),
        Value::Null => Ok(Vec::new()),
        _ => Err(corrupt(what)),
    }
}

pub(crate) fn int(value: &Value, what: &str) -> Result<i64, Error> {
    match value {
        Value::Integer(i) => Ok(*i),
        Value::Double(d) => Ok(*d as i64),
        Value::String(_) | Value::Bytes(_) => value
            .as_str()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(|f| f as i64)
            .ok_or_else(|| corrupt(what)),
        _ => Err(corrupt(what)),
    }
}

pub(crate) fn opt_int(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(i) => Some(*i),
        Value::Double(d) => Some(*d as i64),
        Value::String(_) | Value::Bytes(_) => value
            .as_str()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(|f| f as i64),
        _ => None,
    }
}

pub(crate) fn string(value: &Value) -> String {
    value
        .as_str_lossy()
        .map(|s| s.into_owned())
        .unwrap_or_default()
}

pub(crate) fn bytes(value: Value) -> Vec<u8> {
    match value {
        Value::Bytes(b) => b.to_vec(),
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

pub(crate) fn opt_time(value: &Value) -> Option<DateTime<Utc>> {
    opt_int(value)
        .filter(|ms| *ms > 0)
        .map(crate::clock::time_from_ms)
}
