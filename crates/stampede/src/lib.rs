//! The `stampede` binary as a library, so tests can start it in-process.
//!
//! - [`cli`]: the command line (every flag also reads a `STAMPEDE_*` variable).
//! - [`config`]: settings layered defaults → TOML file → environment → flags,
//!   validated at start with errors that name the setting.
//! - [`secret`]: the JWT secret, from the environment or the data directory.
//! - [`logging`]: JSON or human logs, and spans over OTLP.
//! - [`startup`]: builds every adapter, wires the app, serves, shuts down.
//! - [`token`]: `stampede token`, which prints a signed JWT.

pub mod cli;
pub mod config;
pub mod logging;
pub mod secret;
pub mod startup;
pub mod token;

/// `stampede serve`: runs until SIGTERM or SIGINT, then drains and exits;
/// on SIGHUP, reads the configuration again for its rate-limit rules.
pub fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    let settings = args.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stampede")
        .build()?;
    // Before any HTTP client exists, the OTLP exporter's included.
    stampede_outbound::install_tls_provider();
    let traces = {
        let _in_runtime = runtime.enter();
        logging::init(&settings.log)?
    };
    let served = runtime.block_on(async {
        let server = startup::Server::build(settings).await?;
        // Layered again as at start: the file, the environment, the flags.
        let reload = args.clone();
        server.reload_rules_on_hangup(Box::new(move || {
            Ok(reload.load()?.http.protect.rate_limits)
        }))?;
        server.run_until_stopped(startup::shutdown_signal()).await
    });
    traces.flush();
    served
}
