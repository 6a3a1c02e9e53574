//! The command line of docs/api.md §10. Every `serve` setting flag also reads a
//! `STAMPEDE_*` environment variable and a key of the same name in the
//! `--config` file; flags win over the environment, which wins over the file
//! (crate::config).

use std::path::PathBuf;

use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::config::{self, names};

#[derive(Debug, Parser)]
#[command(
    name = "stampede",
    version,
    about = "A flash-sale order platform in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (embedded mode: SQLite and in-process components).
    Serve(Box<ServeArgs>),
    /// Print a signed JWT for a user.
    Token(TokenArgs),
    /// Load-test a running Stampede (`bench flash-sale`), then audit the sale.
    Bench(stampede_bench::cli::BenchArgs),
    /// Check a sale on a running Stampede against the contract (no oversell,
    /// ledger = database, per-user limits); exits 1 on a violation.
    Audit(Box<stampede_bench::cli::AuditArgs>),
    /// Check a history recorded by `bench flash-sale --history` against the
    /// sale's final state (no lost 202, one order per key, limits, stock
    /// conserved, pay and cancel exclusive); exits 1 on a violation.
    CheckHistory(Box<stampede_bench::cli::CheckHistoryArgs>),
    /// Crash drills: rounds of crowd, `kill -9` of a node at a seeded random
    /// moment, restart, audit and history check; exits 1 if a round failed.
    Drill(Box<stampede_bench::cli::DrillArgs>),
}

/// `stampede serve`'s arguments: `--config`, and the settings as
/// `--name value` or `--name=value`. The setting flags are generated from
/// the settings table (crate::config::names), with their variable, default
/// and meaning in `--help`; clap refuses an unknown one and suggests the
/// closest. Values are typed and checked by the configuration schema.
#[derive(Debug, Clone, Default)]
pub struct ServeArgs {
    /// The TOML settings file.
    pub config: Option<PathBuf>,
    /// The settings given as flags: (name, value).
    pub settings: Vec<(String, String)>,
}

impl ServeArgs {
    /// Resolves and validates the settings of `stampede serve` from these
    /// flags, the process's environment and the `--config` file.
    pub fn load(&self) -> anyhow::Result<config::Settings> {
        config::Settings::layered(&config::sources::Sources::with_process_env(
            self.config.clone(),
            self.settings.clone(),
        ))
    }
}

const CONFIG: &str = "config";

impl Args for ServeArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        let defaults = config::Config::defaults();
        let command = command
            .arg(
                Arg::new(CONFIG)
                    .long(CONFIG)
                    .env("STAMPEDE_CONFIG")
                    .value_name("FILE")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("TOML file of settings, keyed by the names below with `_`"),
            )
            .next_help_heading("Settings (flag, or environment variable, or key in the file)");
        names::settings().iter().fold(command, |command, setting| {
            let mut help = format!("{} [env: {}]", setting.about, setting.var());
            if let Some(default) = config::default_text(&defaults, setting) {
                help.push_str(&format!(" [default: {default}]"));
            }
            if let Some((min, max)) = setting.bounds {
                help.push_str(&format!(" [{min} to {max}]"));
            }
            command.arg(
                Arg::new(setting.name())
                    .long(setting.name().replace('_', "-"))
                    .value_name(value_name(setting.path))
                    .help(help),
            )
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

/// What a setting's value looks like, from its name.
fn value_name(path: &str) -> &'static str {
    if path.ends_with("_ms") {
        "MS"
    } else if path.ends_with("_secs") {
        "SECS"
    } else if path.ends_with("_url") {
        "URL"
    } else if path.ends_with("secret") {
        "SECRET"
    } else {
        "VALUE"
    }
}

impl FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let settings = names::settings()
            .iter()
            .filter_map(|setting| {
                let name = setting.name();
                let value = matches.get_one::<String>(&name)?.clone();
                Some((name, value))
            })
            .collect();
        Ok(Self {
            config: matches.get_one::<PathBuf>(CONFIG).cloned(),
            settings,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    Customer,
    Admin,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (`sub` claim): any non-empty string up to 128 bytes.
    #[arg(long)]
    pub sub: String,
    #[arg(long, value_enum, default_value = "customer")]
    pub role: TokenRole,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u32,
    /// The server's longest token lifetime: a longer `--ttl` is refused.
    #[arg(
        long,
        env = "STAMPEDE_JWT_MAX_TTL_SECS",
        default_value_t = stampede_app::auth::JwtKey::DEFAULT_MAX_TTL_SECS,
        value_name = "SECS"
    )]
    pub jwt_max_ttl_secs: u32,
    /// Where `stampede serve` keeps its generated secret (used without STAMPEDE_JWT_SECRET).
    #[arg(
        long,
        env = "STAMPEDE_DATA_DIR",
        default_value_os_t = config::Config::default().data_dir,
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    #[arg(
        long,
        env = "STAMPEDE_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub jwt_secret: Option<String>,
}
