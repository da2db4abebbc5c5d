//! Values across the sandbox: WIT `value` to PostgreSQL parameters (typed
//! by what the server says each `$n` is) and result cells back to `value`.

use std::error::Error;
use std::time::SystemTime;

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

use super::super::bindings::opshost::plugin::db::Value;
use super::super::CapError;

type BoxError = Box<dyn Error + Sync + Send>;

/// SQL NULL for a parameter of any type.
#[derive(Debug)]
struct Null;

impl ToSql for Null {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

pub type Param = Box<dyn ToSql + Sync + Send>;

fn is_text(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    )
}

fn parse_time(text: &str, n: usize) -> Result<SystemTime, CapError> {
    humantime::parse_rfc3339_weak(text).map_err(|e| {
        CapError::Invalid(format!(
            "parameter ${n}: {text:?} is not an RFC 3339 timestamp: {e}"
        ))
    })
}

/// Convert parameter `n` (1-based) to the type the statement expects.
pub fn to_param(value: &Value, ty: &Type, n: usize) -> Result<Param, CapError> {
    let mismatch = || {
        CapError::Invalid(format!(
            "parameter ${n} is {} but the plugin passed {}; pass a matching value or cast in SQL (${n}::text)",
            ty.name(),
            kind(value)
        ))
    };
    let range = |_| {
        CapError::Invalid(format!(
            "parameter ${n}: value out of range for {}",
            ty.name()
        ))
    };
    Ok(match (value, ty) {
        (Value::Null, _) => Box::new(Null),
        (Value::Boolean(b), &Type::BOOL) => Box::new(*b),
        (Value::Int(i), &Type::INT2) => Box::new(i16::try_from(*i).map_err(range)?),
        (Value::Int(i), &Type::INT4) => Box::new(i32::try_from(*i).map_err(range)?),
        (Value::Int(i), &Type::INT8) => Box::new(*i),
        (Value::Int(i), &Type::OID) => Box::new(u32::try_from(*i).map_err(range)?),
        (Value::Int(i), &Type::FLOAT8) => Box::new(*i as f64),
        (Value::Int(i), &Type::FLOAT4) => Box::new(*i as f32),
        (Value::Float(f), &Type::FLOAT8) => Box::new(*f),
        (Value::Float(f), &Type::FLOAT4) => Box::new(*f as f32),
        (Value::Int(i), t) if is_text(t) => Box::new(i.to_string()),
        (Value::Text(s), t) if is_text(t) => Box::new(s.clone()),
        (Value::Text(s) | Value::Json(s), &Type::JSON | &Type::JSONB) => Box::new(
            serde_json::from_str::<serde_json::Value>(s)
                .map_err(|e| CapError::Invalid(format!("parameter ${n} is not JSON: {e}")))?,
        ),
        (Value::Text(s) | Value::Timestamp(s), &Type::TIMESTAMPTZ | &Type::TIMESTAMP) => {
            Box::new(parse_time(s, n)?)
        }
        (Value::Bytes(b), &Type::BYTEA) => Box::new(b.clone()),
        _ => return Err(mismatch()),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "a boolean",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Text(_) => "text",
        Value::Bytes(_) => "bytes",
        Value::Json(_) => "json",
        Value::Timestamp(_) => "a timestamp",
    }
}

/// A result cell of any type.
pub struct Cell(pub Value);

/// Days and microseconds in PostgreSQL's binary format count from 2000-01-01.
const PG_EPOCH_UNIX_SECS: u64 = 946_684_800;

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// NUMERIC's binary form: base-10000 digits with weight, sign and scale.
fn numeric(raw: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<i16, BoxError> {
        raw.get(i..i + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "short numeric".into())
    };
    let (ndigits, weight, sign, dscale) = (
        word(0)? as usize,
        word(2)?,
        word(4)? as u16,
        word(6)? as usize,
    );
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Result<_, _>>()?;
    let mut int_part = String::new();
    for pos in 0..=weight.max(0) {
        let d = if pos <= weight {
            digits.get(pos as usize).copied().unwrap_or(0)
        } else {
            0
        };
        if int_part.is_empty() {
            int_part = d.to_string();
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if weight < 0 {
        int_part = "0".into();
    }
    let mut frac = String::new();
    let mut pos = weight as i32 + 1;
    while frac.len() < dscale {
        let d = if pos >= 0 {
            digits.get(pos as usize).copied().unwrap_or(0)
        } else {
            0
        };
        frac.push_str(&format!("{d:04}"));
        pos += 1;
    }
    frac.truncate(dscale);
    let sign = if sign == 0x4000 { "-" } else { "" };
    Ok(if dscale > 0 {
        format!("{sign}{int_part}.{frac}")
    } else {
        format!("{sign}{int_part}")
    })
}

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let value = match *ty {
            Type::BOOL => Value::Boolean(bool::from_sql(ty, raw)?),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::OID => Value::Int(u32::from_sql(ty, raw)?.into()),
            Type::FLOAT4 => Value::Float(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Float(f64::from_sql(ty, raw)?),
            Type::BYTEA => Value::Bytes(raw.to_vec()),
            Type::JSON | Type::JSONB => {
                Value::Json(serde_json::Value::from_sql(ty, raw)?.to_string())
            }
            Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                Value::Timestamp(rfc3339(SystemTime::from_sql(ty, raw)?))
            }
            Type::DATE => {
                let days = i32::from_sql(ty, raw)?;
                let (y, m, d) = civil(i64::from(days) + (PG_EPOCH_UNIX_SECS / 86_400) as i64);
                Value::Timestamp(format!("{y:04}-{m:02}-{d:02}"))
            }
            Type::NUMERIC => Value::Text(numeric(raw)?),
            Type::UUID if raw.len() == 16 => {
                let h = hex::encode(raw);
                Value::Text(format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                ))
            }
            // Text-like types (text, varchar, name, enums, citext…) arrive as UTF-8.
            _ => match std::str::from_utf8(raw) {
                Ok(s) => Value::Text(s.to_string()),
                Err(_) => Value::Bytes(raw.to_vec()),
            },
        };
        Ok(Cell(value))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Cell(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(10_957), (2000, 1, 1));
        assert_eq!(civil(20_454), (2026, 1, 1));
    }

    #[test]
    fn numerics_decode() {
        // 12345.678 : ndigits 3, weight 1, sign +, dscale 3, digits [1, 2345, 6780]
        let raw = [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1A, 0x7C];
        assert_eq!(numeric(&raw).expect("numeric"), "12345.678");
        let zero = [0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(numeric(&zero).expect("zero"), "0");
    }

    #[test]
    fn params_follow_the_statement_types() {
        assert!(to_param(&Value::Int(5), &Type::INT4, 1).is_ok());
        assert!(to_param(&Value::Int(1 << 40), &Type::INT4, 1).is_err());
        assert!(to_param(&Value::Text("x".into()), &Type::INT4, 1).is_err());
        assert!(to_param(
            &Value::Text("2026-01-01T00:00:00Z".into()),
            &Type::TIMESTAMPTZ,
            1
        )
        .is_ok());
        assert!(to_param(&Value::Json("{".into()), &Type::JSONB, 1).is_err());
        assert!(to_param(&Value::Null, &Type::INT4, 1).is_ok());
    }
}
