//! The configuration as a tree of plain values, before it is read against the known
//! keys: the TOML file parsed (syntax errors reported by position, never quoting the
//! line, which may hold a secret), then overridden by the environment (`env.rs`).

use std::collections::BTreeMap;

use super::Problem;

/// A table of the tree: key → value.
pub(super) type Map = BTreeMap<String, Value>;

/// One value of the tree. TOML dates and times arrive as strings (the readers parse
/// what they expect); the environment only gives strings.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Array(Vec<Value>),
    Table(Map),
}

impl Value {
    /// What the value is, for "expected …, got …" problems; never the value itself.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// Parses the file's text; on error, the problems (with `file` as their source).
pub(super) fn parse(text: &str, file: &str) -> Result<Map, Vec<Problem>> {
    let file_problem = |message: String| Problem {
        key: String::new(),
        source: file.to_owned(),
        message,
    };
    // Our own parse, reporting position and message only: the parser's default
    // display quotes the offending line, which may hold a secret.
    let (table, syntax_errors) = toml::de::DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        return Err(syntax_errors
            .into_iter()
            .map(|e| {
                let at = e
                    .span()
                    .map(|span| {
                        let (line, column) = line_column(text, span.start);
                        format!(" at line {line}, column {column}")
                    })
                    .unwrap_or_default();
                file_problem(format!(
                    "TOML syntax error{at}: {}",
                    e.message().trim().replace('\n', "; ")
                ))
            })
            .collect());
    }
    // An integer or float out of range: reported without position, like before.
    from_table(table.into_inner()).ok_or_else(|| vec![file_problem("TOML syntax error".to_owned())])
}

fn from_table(table: toml::de::DeTable<'_>) -> Option<Map> {
    table
        .into_iter()
        .map(|(key, value)| {
            Some((
                key.into_inner().into_owned(),
                from_value(value.into_inner())?,
            ))
        })
        .collect()
}

fn from_value(value: toml::de::DeValue<'_>) -> Option<Value> {
    use toml::de::DeValue;
    Some(match value {
        DeValue::String(s) => Value::String(s.into_owned()),
        DeValue::Integer(n) => Value::Integer(i64::from_str_radix(n.as_str(), n.radix()).ok()?),
        DeValue::Float(f) => {
            let float = f.as_str().parse::<f64>().ok()?;
            if float.is_infinite() && !f.as_str().contains("inf") {
                return None;
            }
            Value::Float(float)
        }
        DeValue::Boolean(b) => Value::Boolean(b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| from_value(item.into_inner()))
                .collect::<Option<_>>()?,
        ),
        DeValue::Table(table) => Value::Table(from_table(table)?),
    })
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_arrive_as_strings_and_numbers_keep_their_kind() {
        let tree = parse(
            "[s]\nt = 08:00:00\nd = 1979-05-27\nn = 0x10\nf = 1.5\nb = true\na = [1, \"x\"]\n",
            "f.toml",
        )
        .unwrap();
        let Some(Value::Table(s)) = tree.get("s") else {
            panic!("{tree:?}");
        };
        assert_eq!(s["t"], Value::String("08:00:00".into()));
        assert_eq!(s["d"], Value::String("1979-05-27".into()));
        assert_eq!(s["n"], Value::Integer(16));
        assert_eq!(s["f"], Value::Float(1.5));
        assert_eq!(s["b"], Value::Boolean(true));
        assert_eq!(
            s["a"],
            Value::Array(vec![Value::Integer(1), Value::String("x".into())])
        );
    }

    #[test]
    fn errors_give_a_position_and_never_the_line() {
        let problems = parse("[s]\nsecret = \"hunter2\n", "f.toml").unwrap_err();
        assert!(!problems.is_empty());
        for p in &problems {
            assert_eq!((p.key.as_str(), p.source.as_str()), ("", "f.toml"));
            assert!(p.message.starts_with("TOML syntax error at line 2"), "{p}");
            assert!(!p.message.contains("hunter2"), "{p}");
        }
        let problems = parse("n = 99999999999999999999\n", "f.toml").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].message, "TOML syntax error");
    }
}
