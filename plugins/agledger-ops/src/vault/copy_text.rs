//! PostgreSQL's COPY text format, one row at a time: fields separated by
//! tabs, rows by newlines, `\N` for NULL and backslash escapes inside
//! fields. Reading row by row keeps memory flat however large the table.

use std::io::BufRead;

/// Read the next row into `fields` (reusing its allocations); false at the end.
pub fn next_row(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    fields: &mut Vec<Option<String>>,
) -> std::io::Result<bool> {
    line.clear();
    if input.read_until(b'\n', line)? == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    fields.clear();
    for raw in line.split(|b| *b == b'\t') {
        fields.push(field(raw));
    }
    Ok(true)
}

fn field(raw: &[u8]) -> Option<String> {
    if raw == b"\\N" {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'b') => out.push(8),
            Some(b'f') => out.push(12),
            Some(b'v') => out.push(11),
            Some(&other) => out.push(other),
            None => {}
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_escapes_and_nulls() {
        let data = b"m1\t1\ta\\tb\\nc\t\\N\nm1\t2\tx\\\\y\tabc\n";
        let mut input = &data[..];
        let (mut line, mut fields) = (Vec::new(), Vec::new());
        assert!(next_row(&mut input, &mut line, &mut fields).expect("row"));
        assert_eq!(
            fields,
            [
                Some("m1".into()),
                Some("1".into()),
                Some("a\tb\nc".into()),
                None
            ]
        );
        assert!(next_row(&mut input, &mut line, &mut fields).expect("row"));
        assert_eq!(fields[2].as_deref(), Some("x\\y"));
        assert!(!next_row(&mut input, &mut line, &mut fields).expect("end"));
    }
}
