//! The set of keys a sweep file accepts, derived from the config structs themselves.
//!
//! Field names come from the structs' `Deserialize` impls (serde hands every struct's field list
//! to `deserialize_struct`; a tiny deserializer records it), defaults from serialising their
//! `Default`s. So adding a field to `TrainConfig` makes it a valid sweep key, with its default, in
//! error suggestions and in `valid_keys()`, with no second list to maintain.

use std::sync::OnceLock;

use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use loopscale_config::{DataConfig, TrainConfig};
use loopscale_model::{LoopedConfig, ModelConfig};

/// Keys of the `[sweep]` table, with their defaults as documented.
pub(crate) const HEADER_KEYS: &[(&str, &str)] = &[
    ("name", "(required)"),
    ("description", "\"\""),
    ("seeds", "[0]"),
    ("db", "results/<name>.sqlite"),
    ("zip", "[]"),
    ("retries", "0"),
    ("max_passes", "(none)"),
];

/// Which struct a key's value lands in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Section {
    Data,
    Train,
    Model,
    /// `LoopedConfig`, written flat in `[model]`.
    Looped,
}

impl Section {
    /// The table the key is written under in a sweep file.
    pub fn table(self) -> &'static str {
        match self {
            Section::Data => "data",
            Section::Train => "train",
            Section::Model | Section::Looped => "model",
        }
    }
}

/// One key a sweep file accepts in `[data]`, `[train]` or `[model]`.
#[derive(Clone, Debug)]
pub(crate) struct KeyInfo {
    /// `model.mean_recurrence`.
    pub dotted: String,
    pub section: Section,
    pub field: &'static str,
    /// The default as JSON; `None` for options whose default is derived (e.g. `recurrent_dim`).
    pub default: Option<Value>,
    /// Whose value is itself a list (`test_loops`): a list of lists is its axis.
    pub list_valued: bool,
}

/// Default JSON objects of each section, the starting point of every run.
#[derive(Clone, Debug)]
pub(crate) struct Defaults {
    pub data: Map<String, Value>,
    pub train: Map<String, Value>,
    pub model: Map<String, Value>,
    pub looped: Map<String, Value>,
}

impl Defaults {
    pub fn section(&self, section: Section) -> &Map<String, Value> {
        match section {
            Section::Data => &self.data,
            Section::Train => &self.train,
            Section::Model => &self.model,
            Section::Looped => &self.looped,
        }
    }
}

pub(crate) struct Schema {
    pub keys: Vec<KeyInfo>,
    pub defaults: Defaults,
}

impl Schema {
    pub fn get(&self, dotted: &str) -> Option<&KeyInfo> {
        self.keys.iter().find(|k| k.dotted == dotted)
    }

    /// Keys written under `table` (`data`, `train`, `model`).
    pub fn in_table<'a>(&'a self, table: &'a str) -> impl Iterator<Item = &'a KeyInfo> + 'a {
        self.keys.iter().filter(move |k| k.section.table() == table)
    }
}

/// The schema, built once.
pub(crate) fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(build)
}

/// Keys whose value is a list although their default is absent (so the default cannot say so):
/// a list of lists makes them an axis, like `model.test_loops`.
const OPTIONAL_LISTS: &[(Section, &str)] = &[
    (Section::Train, "command"),
    (Section::Looped, "exit_thresholds"),
    (Section::Looped, "recast_split"),
];

fn build() -> Schema {
    let defaults = Defaults {
        data: object(&DataConfig::default()),
        train: object(&TrainConfig::default()),
        model: object(&ModelConfig::default()),
        looped: object(&LoopedConfig::default()),
    };
    let mut keys = Vec::new();
    let mut add = |section: Section, fields: &'static [&'static str]| {
        for &field in fields {
            // `looped` is not a key of its own: its fields are written flat in [model].
            if section == Section::Model && field == "looped" {
                continue;
            }
            let default = defaults.section(section).get(field).cloned();
            keys.push(KeyInfo {
                dotted: format!("{}.{field}", section.table()),
                section,
                field,
                list_valued: matches!(default, Some(Value::Array(_)))
                    || OPTIONAL_LISTS.contains(&(section, field)),
                default,
            });
        }
    };
    add(Section::Data, field_names::<DataConfig>());
    add(Section::Train, field_names::<TrainConfig>());
    add(Section::Model, field_names::<ModelConfig>());
    add(Section::Looped, field_names::<LoopedConfig>());
    Schema { keys, defaults }
}

fn object<T: serde::Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value).expect("config structs serialise") {
        Value::Object(map) => map,
        other => panic!("config struct serialised to {other}, not an object"),
    }
}

/// The field names serde's derive passes to `deserialize_struct` for `T`.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(FieldCapture(&mut fields));
    fields.expect("field_names is only called on structs")
}

struct FieldCapture<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> de::Deserializer<'de> for FieldCapture<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("fields captured"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// Every key a sweep file accepts (`[sweep]`, then `[data]`, `[train]`, `[model]`), dotted, with its
/// default as written in TOML (`"-"` where the default is derived from other keys; the looped
/// keys apply only to `arch = "looped"`). For `--help` and docs.
pub fn valid_keys() -> Vec<(String, String)> {
    let header = HEADER_KEYS
        .iter()
        .map(|(k, d)| (format!("sweep.{k}"), d.to_string()));
    let slurm = super::slurm_table::SLURM_KEYS
        .iter()
        .map(|(k, d)| (format!("slurm.{k}"), d.to_string()));
    header
        .chain(slurm)
        .chain(schema().keys.iter().map(|k| {
            let default = match &k.default {
                Some(v) => display_value(v),
                None => "-".to_string(),
            };
            (k.dotted.clone(), default)
        }))
        .collect()
}

/// A JSON value for display in tables: strings bare, lists bracketed.
pub(crate) fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(display_value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Null => "-".to_string(),
        // FLOP budgets and the like read better as 1e13 than as 10000000000000.0.
        Value::Number(n) if n.as_f64().is_some_and(|f| n.is_f64() && f.abs() >= 1e7) => {
            format!("{:e}", n.as_f64().unwrap_or_default())
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_covers_every_struct_field_including_options() {
        let s = schema();
        for key in [
            "data.corpus",
            "train.lr",
            "model.d_model",
            "model.mean_recurrence",
            "model.recurrent_dim",
            "model.backprop_depth",
        ] {
            assert!(s.get(key).is_some(), "missing {key}");
        }
        assert!(s.get("model.looped").is_none());
        assert!(s.get("model.test_loops").unwrap().list_valued);
        assert!(!s.get("model.d_model").unwrap().list_valued);
        assert_eq!(s.get("model.recurrent_dim").unwrap().default, None);
    }

    #[test]
    fn valid_keys_lists_defaults() {
        let keys = valid_keys();
        assert!(keys.contains(&("model.d_model".to_string(), "64".to_string())));
        assert!(keys.contains(&("model.arch".to_string(), "gpt".to_string())));
        assert!(keys.contains(&("model.backprop_depth".to_string(), "-".to_string())));
    }
}
