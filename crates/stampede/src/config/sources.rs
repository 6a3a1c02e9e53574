//! Where settings come from, as figment providers over the flat names of
//! [`names`](super::names): the TOML file, the environment and the flags.
//! Each maps a name to its path in the schema; values from the environment
//! and the flags stay strings (figment's lossy extraction reads numbers out
//! of them), so a secret such as `0123` is never taken for a number.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::names::{PREFIX, Setting};

/// The layers above the defaults, lowest first.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The `--config` file.
    pub file: Option<PathBuf>,
    /// Environment variables; those not named `STAMPEDE_<setting>` are ignored.
    pub env: Vec<(String, String)>,
    /// Setting flags as (name, value), the name with `-` or `_`.
    pub flags: Vec<(String, String)>,
}

impl Sources {
    /// The process's environment, with `file` and `flags`.
    pub fn with_process_env(file: Option<PathBuf>, flags: Vec<(String, String)>) -> Self {
        Self {
            file,
            env: std::env::vars()
                .filter(|(name, _)| name.starts_with(PREFIX))
                .collect(),
            flags,
        }
    }

    /// Defaults → file → environment → flags.
    pub fn figment(&self, defaults: impl Provider) -> anyhow::Result<Figment> {
        let mut figment = Figment::from(defaults);
        if let Some(path) = &self.file {
            figment = figment.merge(read_file(path)?);
        }
        let env = self.env.iter().filter_map(|(var, value)| {
            let setting = Setting::named(&var.strip_prefix(PREFIX)?.to_ascii_lowercase())?;
            (setting.var() == *var).then(|| (setting, Value::from(value.clone())))
        });
        figment = figment.merge(Flat::new(Origin::Env, env.collect()));
        let mut flags = Vec::new();
        for (name, value) in &self.flags {
            let Some(setting) = Setting::named(name) else {
                bail!("unknown setting `{name}`{}", did_you_mean(name));
            };
            flags.push((setting, Value::from(value.clone())));
        }
        Ok(figment.merge(Flat::new(Origin::Flags, flags)))
    }
}

fn did_you_mean(name: &str) -> String {
    match Setting::closest(name) {
        Some(setting) => format!(" (did you mean `{}`?)", setting.name()),
        None => String::new(),
    }
}

/// The file, read with the workspace's toml: its keys are setting names.
fn read_file(path: &Path) -> anyhow::Result<Flat> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("in config file {}", path.display()))?;
    let mut values = Vec::new();
    for (key, value) in table {
        let Some(setting) = Setting::named(&key).filter(|setting| setting.name() == key) else {
            bail!(
                "in config file {}: unknown setting `{key}`{}",
                path.display(),
                did_you_mean(&key)
            );
        };
        let value = Value::serialize(&value)
            .with_context(|| format!("in config file {}: `{key}`", path.display()))?;
        values.push((setting, value));
    }
    Ok(Flat::new(Origin::File(path.to_owned()), values))
}

/// Where a layer's values came from.
#[derive(Debug, Clone)]
enum Origin {
    File(PathBuf),
    Env,
    Flags,
}

/// A layer of settings by flat name.
struct Flat {
    origin: Origin,
    values: Vec<(&'static Setting, Value)>,
}

impl Flat {
    fn new(origin: Origin, values: Vec<(&'static Setting, Value)>) -> Self {
        // `rate_limits = default` from the environment or a flag keeps what
        // the file says: it is the absence of `off`, not a rule list.
        let keeps_file = |setting: &Setting, value: &Value| {
            !matches!(origin, Origin::File(_))
                && setting.path == "http.rate_limits"
                && value.as_str() == Some("default")
        };
        let values = values
            .into_iter()
            .filter(|(setting, value)| !keeps_file(setting, value))
            .collect();
        Self { origin, values }
    }
}

impl Provider for Flat {
    fn metadata(&self) -> Metadata {
        let metadata = match &self.origin {
            Origin::File(path) => Metadata::named(format!("config file {}", path.display()))
                .source(figment::Source::File(path.clone())),
            Origin::Env => Metadata::named("the environment"),
            Origin::Flags => Metadata::named("the command line"),
        };
        metadata.interpolater(|_: &Profile, keys: &[&str]| {
            let path = keys.join(".");
            Setting::at(&path).map_or(path, |setting| setting.name())
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (setting, value) in &self.values {
            insert(&mut dict, setting.path, value.clone());
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Puts `value` at the `.`-separated `path` in `dict`.
fn insert(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            dict.insert(path.to_owned(), value);
        }
        Some((section, rest)) => {
            let entry = dict
                .entry(section.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// The setting a schema path belongs to (a rule's field belongs to
/// `rate_limits`), and the rest of the path.
pub fn setting_of(path: &[String]) -> Option<(&'static Setting, String)> {
    (1..=path.len()).rev().find_map(|len| {
        let setting = Setting::at(&path[..len].join("."))?;
        Some((setting, path[len..].join(".")))
    })
}
