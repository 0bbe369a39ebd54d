//! InfluxDB line protocol, one line at a time, from untrusted text.
//!
//! `<measurement>[,<tag>=<value>…] <field>=<value>[,<field>=<value>…] [<timestamp>]`.
//! Escapes: a backslash before a comma or a space in a measurement; before a comma,
//! an equals sign or a space in tag keys, tag values and field keys; string field
//! values are double-quoted with `\"` and `\\`. Field values are floats (`1`, `-1.5e3`),
//! integers (`1i`), unsigned integers (`1u`), booleans (`t`, `T`, `true`, `True`, `TRUE`,
//! `f`, …) or strings. The timestamp is an integer in the writer's precision. Lines
//! starting with `#` are comments. This parser works on bytes (every delimiter is
//! ASCII, so UTF-8 stays intact) and must never panic or index out of bounds.

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(String),
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    pub(crate) measurement: String,
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) fields: Vec<(String, FieldValue)>,
    pub(crate) timestamp: Option<i128>,
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Reads until an unescaped byte of `stops`; `escapable` bytes may follow `\`.
    fn until(&mut self, stops: &[u8], escapable: &[u8]) -> String {
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            if c == b'\\'
                && let Some(&n) = self.b.get(self.i + 1)
                && escapable.contains(&n)
            {
                out.push(n);
                self.i += 2;
                continue;
            } else if stops.contains(&c) {
                break;
            }
            out.push(c);
            self.i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(x) => Err(format!(
                "expected {what} at byte {}, found {:?}",
                self.i,
                char::from(x)
            )),
            None => Err(format!("expected {what}, found the end of the line")),
        }
    }

    fn string_value(&mut self) -> Result<String, String> {
        self.expect(b'"', "'\"'")?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string field value".into()),
                Some(b'\\') if matches!(self.b.get(self.i + 1), Some(b'"' | b'\\')) => {
                    out.push(self.b[self.i + 1]);
                    self.i += 2;
                }
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

fn field_value(token: &str) -> Result<FieldValue, String> {
    let bad = || format!("field value {token:?} is not a float, integer, boolean or string");
    match token {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Bool(false)),
        _ => {}
    }
    if let Some(n) = token.strip_suffix('i') {
        return n.parse().map(FieldValue::Int).map_err(|_| bad());
    }
    if let Some(n) = token.strip_suffix('u') {
        return n.parse().map(FieldValue::UInt).map_err(|_| bad());
    }
    // Rust also reads "inf" and "NaN": line protocol has neither.
    if !token
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return Err(bad());
    }
    match token.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(FieldValue::Float(f)),
        _ => Err(bad()),
    }
}

/// Parses one non-empty, non-comment line.
pub(crate) fn parse_line(line: &str) -> Result<Line, String> {
    const KEY_ESC: &[u8] = b",= \\";
    let mut s = Scanner {
        b: line.as_bytes(),
        i: 0,
    };
    let measurement = s.until(b", ", b", \\");
    if measurement.is_empty() {
        return Err("empty measurement name".into());
    }
    let mut tags = Vec::new();
    while s.peek() == Some(b',') {
        s.i += 1;
        let key = s.until(b"=, ", KEY_ESC);
        s.expect(b'=', "'=' after a tag key")?;
        let value = s.until(b", ", KEY_ESC);
        if key.is_empty() || value.is_empty() {
            return Err(format!("empty tag key or value ({key:?}={value:?})"));
        }
        tags.push((key, value));
    }
    s.expect(b' ', "a space before the fields")?;
    let mut fields = Vec::new();
    loop {
        let key = s.until(b"=, ", KEY_ESC);
        if key.is_empty() {
            return Err(format!("empty field key at byte {}", s.i));
        }
        s.expect(b'=', "'=' after a field key")?;
        let value = if s.peek() == Some(b'"') {
            FieldValue::Str(s.string_value()?)
        } else {
            let start = s.i;
            while !matches!(s.peek(), None | Some(b',' | b' ')) {
                s.i += 1;
            }
            let token = String::from_utf8_lossy(&s.b[start..s.i]);
            field_value(&token)?
        };
        fields.push((key, value));
        match s.peek() {
            Some(b',') => s.i += 1,
            _ => break,
        }
    }
    let rest = String::from_utf8_lossy(&s.b[s.i..]);
    let rest = rest.trim();
    let timestamp = if rest.is_empty() {
        None
    } else {
        let digits = rest.strip_prefix('-').unwrap_or(rest);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "timestamp {:?} is not an integer",
                super::truncate_chars(rest, 30)
            ));
        }
        Some(
            rest.parse::<i128>()
                .map_err(|e| format!("timestamp {rest:?}: {e}"))?,
        )
    };
    Ok(Line {
        measurement,
        tags,
        fields,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_line_parses() {
        // InfluxDB docs, "Line protocol": myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000
        let l = parse_line(
            r#"myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000"#,
        )
        .unwrap();
        assert_eq!(l.measurement, "myMeasurement");
        assert_eq!(
            l.tags,
            [
                ("tag1".into(), "value1".into()),
                ("tag2".into(), "value2".into())
            ]
        );
        assert_eq!(
            l.fields,
            [("fieldKey".into(), FieldValue::Str("fieldValue".into()))]
        );
        assert_eq!(l.timestamp, Some(1_556_813_561_098_000_000));
    }

    #[test]
    fn escapes_types_and_missing_timestamp() {
        // InfluxDB docs, "Special characters" examples.
        let l = parse_line(
            r#"my\ Measurement,tag\ key=tag\,value\=x fie\=ld=1i,u=2u,b=t,B=FALSE,f=-1.5e3,s="a \"quoted\" \\ word, with = signs""#,
        )
        .unwrap();
        assert_eq!(l.measurement, "my Measurement");
        assert_eq!(l.tags, [("tag key".into(), "tag,value=x".into())]);
        assert_eq!(
            l.fields,
            [
                ("fie=ld".into(), FieldValue::Int(1)),
                ("u".into(), FieldValue::UInt(2)),
                ("b".into(), FieldValue::Bool(true)),
                ("B".into(), FieldValue::Bool(false)),
                ("f".into(), FieldValue::Float(-1500.0)),
                (
                    "s".into(),
                    FieldValue::Str(r#"a "quoted" \ word, with = signs"#.into())
                ),
            ]
        );
        assert_eq!(l.timestamp, None);
    }

    #[test]
    fn broken_lines_say_what_is_wrong() {
        for (line, why) in [
            ("m", "space before the fields"),
            ("m f=1 x", "not an integer"),
            ("m f=inf", "not a float"),
            ("m f=\"open", "unterminated"),
            (",t=1 f=1", "empty measurement"),
            ("m,t= f=1", "empty tag"),
            ("m =1", "empty field key"),
            ("m f=1i2", "not a float"),
            ("m f=99999999999999999999i", "not a float"),
        ] {
            let e = parse_line(line).unwrap_err();
            assert!(e.contains(why), "{line}: {e}");
        }
    }
}
