//! Raw TOML → a typed, span-annotated [`Spec`]: the `[sweep]` header, the base settings of
//! `[data]`/`[train]`/`[model]`, and the `[[variants]]`.
//!
//! This layer owns everything that can be checked one key at a time: syntax, unknown keys (with
//! suggestions), value types and enum values, empty axes, list-versus-scalar, and the header's
//! own keys. It keeps byte spans so later stages can point at the line a problem came from.
//! Whole-run checks (n_heads divides d_model, the corpus exists) belong to `validate`.

use std::ops::Range;
use std::path::PathBuf;

use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::analysis_table::{AnalysisSettings, parse_analysis};
use super::error::toml_literal;
use super::error::{
    ErrorKind, Source, SweepError, describe, describe_toml, expect_string, nearest, syntax_error,
};
use super::keys::{HEADER_KEYS, KeyInfo, Section, schema};
use super::slurm_table::{SlurmSettings, parse_slurm};
use loopscale_config::{DataConfig, TrainConfig};
use loopscale_model::{LoopedConfig, ModelConfig};

pub(crate) type Span = Range<usize>;

const TOP_KEYS: &[&str] = &[
    "sweep", "data", "train", "model", "variants", "slurm", "analysis",
];
const VARIANT_KEYS: &[&str] = &["name", "seeds", "data", "train", "model"];

/// One key set in `[data]`, `[train]`, `[model]` or a variant: a single value or an axis.
#[derive(Clone, Debug)]
pub(crate) struct Setting {
    pub key: &'static KeyInfo,
    pub key_span: Span,
    /// One value (a scalar setting) or the axis' values in file order, each with its span.
    pub values: Vec<(Value, Span)>,
    /// Written as a list (a grid axis), even if of one element.
    pub axis: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct ZipGroup {
    pub keys: Vec<(String, Span)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub name: String,
    pub description: String,
    pub seeds: Vec<(u64, Span)>,
    pub seeds_span: Option<Span>,
    pub db: Option<PathBuf>,
    pub zip: Vec<ZipGroup>,
    pub retries: u32,
    pub max_passes: Option<f64>,
}

#[derive(Clone, Debug)]
pub(crate) struct VariantSpec {
    pub name: String,
    pub settings: Vec<Setting>,
    /// The variant's own seeds (`seeds = [k]`), in place of `sweep.seeds`: how `suggest`
    /// writes another seed of a configuration already trained.
    pub seeds: Option<Vec<(u64, Span)>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Spec {
    pub header: Header,
    pub base: Vec<Setting>,
    pub variants: Vec<VariantSpec>,
    pub slurm: SlurmSettings,
    pub analysis: AnalysisSettings,
}

/// Parse and type-check a sweep file's text.
pub(crate) fn parse(src: &Source) -> Result<Spec, SweepError> {
    let doc = DeTable::parse(src.text).map_err(|e| syntax_error(src, &e))?;
    let mut header = None;
    let mut base = Vec::new();
    let mut variants = Vec::new();
    let mut slurm = SlurmSettings::default();
    let mut analysis = AnalysisSettings::default();
    for (key, value) in sorted(doc.get_ref()) {
        let name = key.get_ref().as_ref();
        match name {
            "sweep" => header = Some(parse_header(src, key.span(), value)?),
            "data" | "train" | "model" => {
                let table = expect_table(src, name, value)?;
                base.extend(parse_settings(src, name, table, None)?);
            }
            "variants" => variants = parse_variants(src, value)?,
            "slurm" => slurm = parse_slurm(src, value)?,
            "analysis" => analysis = parse_analysis(src, value)?,
            _ => return Err(unknown_top_key(src, name, key.span())),
        }
    }
    let header = header.ok_or_else(|| {
        SweepError::new(
            ErrorKind::Header,
            src.path,
            "missing the [sweep] table (every sweep needs a name)",
        )
        .with_key("sweep.name")
        .with_help(
            "add at the top of the file:\n             [sweep]\n             name = \"my_study\"",
        )
    })?;
    Ok(Spec {
        header,
        base,
        variants,
        slurm,
        analysis,
    })
}

/// A table's entries in file order (the parser's map may be sorted by key).
fn sorted<'a, 'i>(
    table: &'a DeTable<'i>,
) -> Vec<(
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

fn expect_table<'a, 'i>(
    src: &Source,
    what: &str,
    value: &'a Spanned<DeValue<'i>>,
) -> Result<&'a DeTable<'i>, SweepError> {
    value.get_ref().as_table().ok_or_else(|| {
        src.error(
            ErrorKind::WrongType,
            value.span(),
            format!(
                "`{what}` must be a table, found {}",
                describe_toml(value.get_ref())
            ),
        )
        .with_key(what)
        .with_help(format!(
            "write it as a table header `[{what}]` followed by `key = value` lines"
        ))
    })
}

fn unknown_top_key(src: &Source, name: &str, span: Span) -> SweepError {
    let mut err = src
        .error(
            ErrorKind::UnknownKey,
            span,
            format!("unknown key `{name}` at the top level"),
        )
        .with_key(name);
    let is_field = schema().keys.iter().any(|k| k.field == name);
    if let Some(s) = nearest(name, TOP_KEYS.iter().copied()).filter(|_| !is_field) {
        err.message.push_str(&format!("; did you mean `{s}`?"));
    }
    // A key written before any table header lands at the top level.
    if let Some(k) = schema().keys.iter().find(|k| k.field == name) {
        err.help = Some(format!(
            "`{name}` belongs in the [{}] table: put it after a `[{}]` header",
            k.section.table(),
            k.section.table()
        ));
    } else {
        err.help = Some(format!(
            "the top level takes only the tables {}",
            list(TOP_KEYS)
        ));
    }
    err
}

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_header(
    src: &Source,
    key_span: Span,
    value: &Spanned<DeValue>,
) -> Result<Header, SweepError> {
    let table = expect_table(src, "sweep", value)?;
    let mut name = None;
    let mut header = Header {
        name: String::new(),
        description: String::new(),
        seeds: Vec::new(),
        seeds_span: None,
        db: None,
        zip: Vec::new(),
        retries: 0,
        max_passes: None,
    };
    for (k, v) in sorted(table) {
        let key = k.get_ref().as_ref();
        let dotted = format!("sweep.{key}");
        match key {
            "name" => {
                let s = expect_string(src, &dotted, v, "a name such as \"my_study\"")?;
                if s.is_empty()
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(src
                        .error(
                            ErrorKind::Header,
                            v.span(),
                            format!("invalid sweep name {s:?}: expected letters, digits, `_` or `-` only"),
                        )
                        .with_key(dotted)
                        .with_help(
                            "the name names the results database and appears in reports; e.g. name = \"my_study\"",
                        ));
                }
                name = Some(s);
            }
            "description" => header.description = expect_string(src, &dotted, v, "a string")?,
            "db" => {
                let s = expect_string(
                    src,
                    &dotted,
                    v,
                    "a path such as \"results/my_study.sqlite\"",
                )?;
                if s.is_empty() {
                    return Err(src
                        .error(
                            ErrorKind::Header,
                            v.span(),
                            "`sweep.db` is empty: expected a path",
                        )
                        .with_key(dotted)
                        .with_help("remove the key to use results/<name>.sqlite"));
                }
                header.db = Some(PathBuf::from(s));
            }
            "retries" => {
                header.retries = expect_uint(src, &dotted, v)?.try_into().map_err(|_| {
                    src.error(ErrorKind::Header, v.span(), "`sweep.retries` is too large")
                        .with_key(dotted.clone())
                })?
            }
            "max_passes" => {
                let limit = match to_json(src, &dotted, v)? {
                    Value::Number(n) => n.as_f64().filter(|x| x.is_finite() && *x > 0.0),
                    _ => None,
                };
                header.max_passes = Some(limit.ok_or_else(|| {
                    src.error(
                        ErrorKind::Header,
                        v.span(),
                        "`sweep.max_passes`: expected a positive number of passes over the training text, e.g. 1 or 4",
                    )
                    .with_key(dotted.clone())
                    .with_help("remove the key to allow any number of passes (`plan` still warns past one)")
                })?);
            }
            "seeds" => {
                header.seeds_span = Some(v.span());
                header.seeds = parse_seeds(src, &dotted, v)?;
            }
            "zip" => header.zip = parse_zip(src, v)?,
            _ => {
                let mut err = src
                    .error(
                        ErrorKind::UnknownKey,
                        k.span(),
                        format!("unknown key `{dotted}`"),
                    )
                    .with_key(dotted);
                let is_field = schema().keys.iter().any(|i| i.field == key);
                if let Some(s) =
                    nearest(key, HEADER_KEYS.iter().map(|(k, _)| *k)).filter(|_| !is_field)
                {
                    err.message
                        .push_str(&format!("; did you mean `sweep.{s}`?"));
                }
                err.help = Some(match schema().keys.iter().find(|i| i.field == key) {
                    Some(i) => format!(
                        "`{key}` belongs in the [{}] table, not [sweep]",
                        i.section.table()
                    ),
                    None => format!(
                        "[sweep] takes {}",
                        list(&HEADER_KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>())
                    ),
                });
                return Err(err);
            }
        }
    }
    header.name = name.ok_or_else(|| {
        src.error(ErrorKind::Header, key_span, "missing `sweep.name`")
            .with_key("sweep.name")
            .with_help("add `name = \"my_study\"` under [sweep]; it names the results database (results/<name>.sqlite)")
    })?;
    if header.seeds.is_empty() {
        header.seeds = vec![(0, 0..0)];
    }
    Ok(header)
}

fn parse_zip(src: &Source, v: &Spanned<DeValue>) -> Result<Vec<ZipGroup>, SweepError> {
    let shape_err = |span: Span| {
        src.error(
            ErrorKind::Zip,
            span,
            "`sweep.zip` must be a list of lists of dotted keys",
        )
        .with_key("sweep.zip")
        .with_help(
            "e.g. zip = [[\"model.d_model\", \"model.n_heads\"]] pairs those two axes element-wise",
        )
    };
    let DeValue::Array(groups) = v.get_ref() else {
        return Err(shape_err(v.span()));
    };
    let mut out: Vec<ZipGroup> = Vec::new();
    for g in groups.iter() {
        let DeValue::Array(items) = g.get_ref() else {
            return Err(shape_err(g.span()));
        };
        let mut keys = Vec::new();
        for it in items.iter() {
            let Some(key) = it.get_ref().as_str() else {
                return Err(shape_err(it.span()));
            };
            if schema().get(key).is_none() {
                let mut err = src
                    .error(
                        ErrorKind::UnknownKey,
                        it.span(),
                        format!("`sweep.zip` names unknown key `{key}`"),
                    )
                    .with_key("sweep.zip");
                if let Some(s) = nearest(key, schema().keys.iter().map(|k| k.dotted.as_str())) {
                    err.message.push_str(&format!("; did you mean `{s}`?"));
                }
                err.help =
                    Some("zip names axes by their dotted keys, e.g. \"model.d_model\"".into());
                return Err(err);
            }
            if out
                .iter()
                .flat_map(|g| &g.keys)
                .chain(&keys)
                .any(|(k, _): &(String, Span)| k == key)
            {
                return Err(src
                    .error(
                        ErrorKind::Zip,
                        it.span(),
                        format!("`{key}` appears more than once in `sweep.zip`"),
                    )
                    .with_key("sweep.zip")
                    .with_help("an axis can be zipped in one group only; merge the groups"));
            }
            keys.push((key.to_string(), it.span()));
        }
        out.push(ZipGroup { keys });
    }
    Ok(out)
}

/// A `seeds` list (or one seed) of `sweep.seeds` or a variant's `seeds`: never empty.
fn parse_seeds(
    src: &Source,
    dotted: &str,
    v: &Spanned<DeValue>,
) -> Result<Vec<(u64, Span)>, SweepError> {
    Ok(match v.get_ref() {
        DeValue::Array(items) => {
            if items.is_empty() {
                return Err(src
                    .error(
                        ErrorKind::EmptyAxis,
                        v.span(),
                        format!("`{dotted} = []` is empty: every run needs a seed"),
                    )
                    .with_key(dotted.to_string())
                    .with_help(
                        "give at least one seed, e.g. seeds = [0], or remove the key (default [0])",
                    ));
            }
            items
                .iter()
                .map(|it| Ok((expect_uint(src, dotted, it)?, it.span())))
                .collect::<Result<_, SweepError>>()?
        }
        _ => vec![(expect_uint(src, dotted, v)?, v.span())],
    })
}

fn expect_uint(src: &Source, key: &str, v: &Spanned<DeValue>) -> Result<u64, SweepError> {
    match to_json(src, key, v)? {
        Value::Number(n) if n.is_u64() => Ok(n.as_u64().unwrap()),
        other => Err(src
            .error(
                ErrorKind::WrongType,
                v.span(),
                format!(
                    "`{key}`: expected a non-negative integer, found {}",
                    describe(&other)
                ),
            )
            .with_key(key)),
    }
}

fn parse_variants(src: &Source, value: &Spanned<DeValue>) -> Result<Vec<VariantSpec>, SweepError> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err(src
            .error(
                ErrorKind::WrongType,
                value.span(),
                format!(
                    "`variants` must be an array of tables, found {}",
                    describe_toml(value.get_ref())
                ),
            )
            .with_key("variants")
            .with_help("write each variant as a `[[variants]]` section with a `name`"));
    };
    let mut out: Vec<VariantSpec> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let what = format!("variants[{i}]");
        let table = expect_table(src, &what, item)?;
        let mut name = None;
        let mut settings = Vec::new();
        let mut seeds = None;
        for (k, v) in sorted(table) {
            let key = k.get_ref().as_ref();
            match key {
                "name" => {
                    let s = expect_string(
                        src,
                        &format!("{what}.name"),
                        v,
                        "a name such as \"parcae\"",
                    )?;
                    if s.is_empty()
                        || !s
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
                    {
                        return Err(src
                            .error(
                                ErrorKind::Variant,
                                v.span(),
                                format!("invalid variant name {s:?}: expected letters, digits, `_`, `-` or `.`"),
                            )
                            .with_key(format!("{what}.name")));
                    }
                    if out.iter().any(|o| o.name == s) {
                        return Err(src
                            .error(
                                ErrorKind::Variant,
                                v.span(),
                                format!("two variants are named {s:?}"),
                            )
                            .with_key(format!("{what}.name"))
                            .with_help("variant names label their runs and must be unique"));
                    }
                    name = Some((s, v.span()));
                }
                "seeds" => seeds = Some(parse_seeds(src, &format!("{what}.seeds"), v)?),
                "data" | "train" | "model" => {
                    let t = expect_table(src, key, v)?;
                    settings.extend(parse_settings(
                        src,
                        key,
                        t,
                        name.as_ref()
                            .map(|(n, _): &(String, Span)| n.as_str())
                            .or(Some(&what)),
                    )?);
                }
                _ => {
                    let mut err = src
                        .error(
                            ErrorKind::UnknownKey,
                            k.span(),
                            format!("unknown key `{key}` in {what}"),
                        )
                        .with_key(format!("{what}.{key}"));
                    let is_field = schema().keys.iter().any(|i| i.field == key);
                    if let Some(s) =
                        nearest(key, VARIANT_KEYS.iter().copied()).filter(|_| !is_field)
                    {
                        err.message.push_str(&format!("; did you mean `{s}`?"));
                    }
                    err.help = Some(match schema().keys.iter().find(|i| i.field == key) {
                        Some(i) => {
                            format!(
                                "inside a variant, write the table too: `{}.{key} = ...`",
                                i.section.table()
                            )
                        }
                        None => format!("a variant takes {}", list(VARIANT_KEYS)),
                    });
                    return Err(err);
                }
            }
        }
        let Some((name, _)) = name else {
            return Err(src
                .error(
                    ErrorKind::Variant,
                    item.span(),
                    format!("{what} has no `name`"),
                )
                .with_key(format!("{what}.name"))
                .with_help(
                    "add `name = \"...\"` to the [[variants]] section; the name labels its runs",
                ));
        };
        out.push(VariantSpec {
            name,
            settings,
            seeds,
        });
    }
    Ok(out)
}

/// The settings of one `[data]`/`[train]`/`[model]` table (`variant` names the variant, for messages).
fn parse_settings(
    src: &Source,
    table: &str,
    entries: &DeTable,
    variant: Option<&str>,
) -> Result<Vec<Setting>, SweepError> {
    let mut out = Vec::new();
    for (k, v) in sorted(entries) {
        let field = k.get_ref().as_ref();
        let dotted = format!("{table}.{field}");
        let Some(info) = schema().get(&dotted) else {
            return Err(unknown_key(src, table, field, k.span(), variant));
        };
        out.push(parse_setting(src, info, k.span(), v)?);
    }
    Ok(out)
}

fn unknown_key(
    src: &Source,
    table: &str,
    field: &str,
    span: Span,
    variant: Option<&str>,
) -> SweepError {
    let dotted = format!("{table}.{field}");
    let whose = variant
        .map(|n| format!(" in variant `{n}`"))
        .unwrap_or_default();
    let mut err = src
        .error(
            ErrorKind::UnknownKey,
            span,
            format!("unknown key `{dotted}`{whose}"),
        )
        .with_key(dotted.clone());
    let here: Vec<&str> = schema().in_table(table).map(|k| k.field).collect();
    let elsewhere = schema().keys.iter().any(|k| k.field == field);
    if let Some(s) = nearest(field, here.iter().copied()).filter(|_| !elsewhere) {
        err.message
            .push_str(&format!("; did you mean `{table}.{s}`?"));
    }
    err.help = Some(if table == "model" && field == "looped" {
        "looped options are written flat in [model] (e.g. `mean_recurrence = 4`), not in a `looped` sub-table".into()
    } else if let Some(other) = schema()
        .keys
        .iter()
        .find(|k| k.field == field && k.section.table() != table)
    {
        format!(
            "`{field}` is a [{}] key: write it as `{}`",
            other.section.table(),
            other.dotted
        )
    } else {
        format!("[{table}] takes {}", list(&here))
    });
    err
}

fn parse_setting(
    src: &Source,
    info: &'static KeyInfo,
    key_span: Span,
    v: &Spanned<DeValue>,
) -> Result<Setting, SweepError> {
    let whole = to_json(src, &info.dotted, v)?;
    let (values, axis) = match (v.get_ref(), info.list_valued) {
        (DeValue::Array(items), false) => {
            if items.is_empty() {
                return Err(empty_axis(src, info, v.span()));
            }
            let vals = items
                .iter()
                .map(|it| Ok((to_json(src, &info.dotted, it)?, it.span())))
                .collect::<Result<Vec<_>, SweepError>>()?;
            (vals, true)
        }
        (DeValue::Array(items), true) => {
            let lists = items.iter().filter(|it| it.get_ref().is_array()).count();
            if lists == 0 || items.is_empty() {
                (vec![(whole, v.span())], false)
            } else if lists == items.len() {
                let vals = items
                    .iter()
                    .map(|it| Ok((to_json(src, &info.dotted, it)?, it.span())))
                    .collect::<Result<Vec<_>, SweepError>>()?;
                (vals, true)
            } else {
                return Err(src
                    .error(ErrorKind::WrongType, v.span(), format!("`{}` mixes numbers and lists", info.dotted))
                    .with_key(info.dotted.clone())
                    .with_help(format!("`{0}` takes a list: write one list (e.g. {0} = [1, 2, 4]) for one value, or a list of lists (e.g. {0} = [[1, 2], [1, 2, 4]]) for an axis", info.field)));
            }
        }
        _ => (vec![(whole, v.span())], false),
    };
    for (value, span) in &values {
        check_value(src, info, value, span.clone(), axis)?;
    }
    Ok(Setting {
        key: info,
        key_span,
        values,
        axis,
    })
}

fn empty_axis(src: &Source, info: &KeyInfo, span: Span) -> SweepError {
    let example = info
        .default
        .as_ref()
        .map(toml_literal)
        .unwrap_or_else(|| "...".into());
    src.error(
        ErrorKind::EmptyAxis,
        span,
        format!(
            "`{} = []` is an empty list: a list is a grid axis, and an empty axis gives no runs",
            info.dotted
        ),
    )
    .with_key(info.dotted.clone())
    .with_help(format!(
        "give at least one value (e.g. {} = {example}) or remove the key to use the default",
        info.field
    ))
}

/// Check one value against the field's type by deserialising the section's defaults with it.
fn check_value(
    src: &Source,
    info: &KeyInfo,
    value: &Value,
    span: Span,
    in_axis: bool,
) -> Result<(), SweepError> {
    let Err(e) = deserialize_with(info, value) else {
        return Ok(());
    };
    let found = describe(value);
    let allowed = allowed_values(info);
    let (kind, expected) = match &allowed {
        Some(names) => (
            if value.is_string() {
                ErrorKind::BadEnumValue
            } else {
                ErrorKind::WrongType
            },
            format!("one of {}", names.join(", ")),
        ),
        // A list-valued key (test_loops) fails on an element; say what the whole value should be.
        None if info.list_valued => (
            ErrorKind::WrongType,
            "a list of non-negative integers".to_string(),
        ),
        None => (ErrorKind::WrongType, expected_from(&e)),
    };
    let mut err = src
        .error(
            kind,
            span,
            format!("`{}`: expected {expected}, found {found}", info.dotted),
        )
        .with_key(info.dotted.clone());
    err.help = Some(if let Some(names) = &allowed {
        match value
            .as_str()
            .and_then(|s| nearest(s, names.iter().map(String::as_str)))
        {
            Some(s) => format!("did you mean \"{s}\"?"),
            None => {
                format!(
                    "write one of: {}",
                    names
                        .iter()
                        .map(|n| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
    } else if info.list_valued {
        let default = info.default.as_ref().map(toml_literal).unwrap_or_default();
        format!(
            "e.g. {0} = {default} for one value, or {0} = [[1, 2], {default}] for an axis",
            info.field
        )
    } else if value.is_array() && in_axis {
        "a list is a grid axis whose elements are single values; only list-valued keys (test_loops) take a list of lists".into()
    } else if value.is_array() || value.is_object() {
        "give a single value, or a list of single values for a grid axis".into()
    } else if let (Some(s), true) = (
        value.as_str(),
        expected.contains("number") || expected.contains("integer"),
    ) {
        format!("remove the quotes if you meant a number ({s:?} is a string)")
    } else if value.as_f64().is_some_and(|f| f.fract() == 0.0)
        && expected.contains("integer")
        && !value.is_i64()
    {
        "write integers without a decimal point or exponent, e.g. 100000 or 100_000".into()
    } else if value.as_i64().is_some_and(|i| i < 0) {
        "this value cannot be negative".into()
    } else {
        let default = info
            .default
            .as_ref()
            .map(toml_literal)
            .unwrap_or_else(|| "unset".into());
        format!("the default is {} = {default}", info.field)
    });
    Err(err)
}

fn deserialize_with(info: &KeyInfo, value: &Value) -> Result<(), serde_json::Error> {
    let mut obj = schema().defaults.section(info.section).clone();
    obj.insert(info.field.to_string(), value.clone());
    let obj = Value::Object(obj);
    match info.section {
        Section::Data => serde_json::from_value::<DataConfig>(obj).map(drop),
        Section::Train => serde_json::from_value::<TrainConfig>(obj).map(drop),
        Section::Model => serde_json::from_value::<ModelConfig>(obj).map(drop),
        Section::Looped => serde_json::from_value::<LoopedConfig>(obj).map(drop),
    }
}

/// The allowed strings of an enum-typed key, read off serde's "unknown variant" message.
pub(crate) fn allowed_values(info: &KeyInfo) -> Option<Vec<String>> {
    let msg = deserialize_with(info, &Value::String("\u{1}".into()))
        .err()?
        .to_string();
    let rest = msg.strip_prefix("unknown variant `\u{1}`, expected ")?;
    let rest = rest.strip_prefix("one of ").unwrap_or(rest);
    Some(
        rest.replace(" or ", ", ")
            .split(", ")
            .map(|s| s.trim().trim_matches('`').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// A readable "expected …" from a serde_json error such as "invalid type: string "x", expected usize".
fn expected_from(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let exp = msg
        .rsplit_once(", expected ")
        .map(|(_, x)| x)
        .unwrap_or(&msg);
    let exp = exp.split(" at line ").next().unwrap_or(exp);
    match exp {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a non-negative integer".into(),
        "isize" | "i64" | "i32" => "an integer".into(),
        "f64" | "f32" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a sequence" => "a list".into(),
        other => other.to_string(),
    }
}

/// A TOML value as JSON (the form the config structs deserialise from).
fn to_json(src: &Source, key: &str, v: &Spanned<DeValue>) -> Result<Value, SweepError> {
    let bad = |what: String| {
        src.error(ErrorKind::WrongType, v.span(), format!("`{key}`: {what}"))
            .with_key(key)
    };
    Ok(match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::from(n),
            Err(_) => return Err(bad(format!("integer {i} is out of range"))),
        },
        DeValue::Float(f) => {
            let x: f64 = f
                .as_str()
                .parse()
                .map_err(|_| bad(format!("cannot read the number {f}")))?;
            serde_json::Number::from_f64(x)
                .map(Value::Number)
                .ok_or_else(|| bad(format!("expected a finite number, found {f}")))?
        }
        DeValue::Datetime(d) => {
            return Err(bad(format!("dates are not accepted here (found {d})")));
        }
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|it| to_json(src, key, it))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => {
            let mut map = serde_json::Map::new();
            for (k, v) in sorted(t) {
                map.insert(
                    k.get_ref().to_string(),
                    to_json(src, &format!("{key}.{}", k.get_ref()), v)?,
                );
            }
            Value::Object(map)
        }
    })
}
