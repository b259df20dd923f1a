//! Reading: the file's table and the `ITWIN_PROXY__SECTION__KEY` variables merged over the
//! defaults into the file model, key by key, so a value of the wrong type or an unknown key
//! becomes a problem naming its key (and its variable) while every other key is still read.
//!
//! The keys and the TOML type of each come from the serialized defaults ([`FileConfig`]'s
//! `Default`), so a key added there is read, typed and known here without more code.
//! Environment values are strings, parsed by the type of the key they override (lists are
//! comma-separated); a string in the file is parsed the same way.

use std::collections::HashMap;

use toml::{Table, Value};

use super::ConfigProblem;
use super::file::FileConfig;

/// Prefix of the variables that override keys, compared without regard to case.
pub(crate) const ENV_PREFIX: &str = "ITWIN_PROXY__";
/// Separator between section and key in a variable's name.
const ENV_SEPARATOR: &str = "__";

/// One key set by an environment variable.
#[derive(Debug)]
pub(crate) struct Override {
    /// The variable's name, as set.
    pub(crate) variable: String,
    /// `section.key`, lower case.
    pub(crate) key: String,
    value: String,
}

/// The variables of `env` that override keys, by name.
pub(crate) fn overrides(env: &HashMap<String, String>) -> Vec<Override> {
    let mut found: Vec<Override> = env
        .iter()
        .filter_map(|(variable, value)| {
            let lower = variable.to_lowercase();
            let path = lower.strip_prefix(&ENV_PREFIX.to_lowercase())?;
            Some(Override {
                variable: variable.clone(),
                key: path.replace(ENV_SEPARATOR, "."),
                value: value.clone(),
            })
        })
        .collect();
    found.sort_by(|a, b| a.variable.cmp(&b.variable));
    found
}

/// The file model of `file` with `overrides` applied and the default for every key that is
/// missing or of the wrong type (an empty table reads as the defaults), and the problems
/// found: type errors, then unknown keys.
pub(crate) fn read(file: &Table, overrides: &[Override]) -> (FileConfig, Vec<ConfigProblem>) {
    let schema = Table::try_from(FileConfig::default()).unwrap_or_default();
    let mut problems = Vec::new();
    let mut unknown = Vec::new();
    let mut merged = Table::new();
    for (section, defaults) in &schema {
        let Value::Table(defaults) = defaults else {
            continue;
        };
        let written = match file.get(section) {
            Some(Value::Table(written)) => Some(written),
            Some(other) => {
                unknown.push(ConfigProblem::new(section, expected("a table", other)));
                None
            }
            None => None,
        };
        let mut values = Table::new();
        for (key, default) in defaults {
            let name = format!("{section}.{key}");
            let read = match overrides.iter().find(|o| o.key == name) {
                Some(o) => parse(&o.value, default)
                    .map_err(|message| ConfigProblem::new(&name, message).from(&o.variable)),
                None => match written.and_then(|written| written.get(key)) {
                    Some(value) => {
                        typed(value, default).map_err(|message| ConfigProblem::new(&name, message))
                    }
                    None => Ok(default.clone()),
                },
            };
            let value = read.unwrap_or_else(|problem| {
                problems.push(problem);
                default.clone()
            });
            values.insert(key.clone(), value);
        }
        let expected_keys = || {
            let names: Vec<&str> = defaults.keys().map(String::as_str).collect();
            format!("unknown key; expected one of {}", names.join(", "))
        };
        for key in written.iter().flat_map(|written| written.keys()) {
            if !defaults.contains_key(key) {
                unknown.push(ConfigProblem::new(
                    format!("{section}.{key}"),
                    expected_keys(),
                ));
            }
        }
        for o in overrides {
            let in_section = o.key.strip_prefix(section.as_str());
            if let Some(key) = in_section.and_then(|rest| rest.strip_prefix('.'))
                && !defaults.contains_key(key)
            {
                unknown.push(ConfigProblem::new(&o.key, expected_keys()).from(&o.variable));
            }
        }
        merged.insert(section.clone(), Value::Table(values));
    }
    let expected_sections = || {
        let names: Vec<&str> = schema.keys().map(String::as_str).collect();
        format!("unknown key; expected a section: {}", names.join(", "))
    };
    for section in file.keys().filter(|section| !schema.contains_key(*section)) {
        unknown.push(ConfigProblem::new(section, expected_sections()));
    }
    for o in overrides {
        let section = o.key.split('.').next().unwrap_or_default();
        if !schema.contains_key(section) || !o.key.contains('.') {
            unknown.push(ConfigProblem::new(&o.key, expected_sections()).from(&o.variable));
        }
    }
    unknown.sort_by(|a, b| a.key.cmp(&b.key));
    problems.append(&mut unknown);
    // Every value now has its default's type, so this only fails if the model and its
    // serialized defaults disagree, which the tests rule out.
    let file = Value::Table(merged).try_into().unwrap_or_default();
    (file, problems)
}

/// `value` as the TOML type of `default`: an integer for a number key is a number, and a
/// string is parsed as an environment value would be.
fn typed(value: &Value, default: &Value) -> Result<Value, String> {
    match (value, default) {
        (Value::String(text), _) => parse(text, default),
        (Value::Integer(_), Value::Integer(_))
        | (Value::Float(_), Value::Float(_))
        | (Value::Boolean(_), Value::Boolean(_)) => Ok(value.clone()),
        (Value::Integer(number), Value::Float(_)) => Ok(Value::Float(*number as f64)),
        (Value::Array(items), Value::Array(_)) => {
            for item in items {
                if !item.is_str() {
                    return Err(expected(what(default), item));
                }
            }
            Ok(value.clone())
        }
        _ => Err(expected(what(default), value)),
    }
}

/// `text` parsed as the TOML type of `default`; lists are comma-separated.
fn parse(text: &str, default: &Value) -> Result<Value, String> {
    let wrong = || expected(what(default), &Value::String(text.to_owned()));
    match default {
        Value::Integer(_) => text.trim().parse().map(Value::Integer).map_err(|_| wrong()),
        Value::Float(_) => text.trim().parse().map(Value::Float).map_err(|_| wrong()),
        Value::Boolean(_) => (text.trim().to_ascii_lowercase().parse())
            .map(Value::Boolean)
            .map_err(|_| wrong()),
        Value::Array(_) => Ok(Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        )),
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// What a key of `default`'s type takes, for messages.
fn what(default: &Value) -> &'static str {
    match default {
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Array(_) => "a list of strings",
        _ => "a string",
    }
}

/// "expected {what}, found {value}", e.g. `expected an integer, found string "ten"`.
fn expected(what: &str, found: &Value) -> String {
    let found = match found {
        Value::String(text) => format!("string {text:?}"),
        Value::Integer(number) => format!("integer {number}"),
        Value::Float(number) => format!("number {number}"),
        Value::Boolean(value) => format!("boolean {value}"),
        Value::Datetime(value) => format!("date-time {value}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    };
    format!("expected {what}, found {found}")
}
