use anyhow::Context;
use clap::Parser;
use metrics_registry::args::{CheckArgs, Cli, Command, LogFormat};
use metrics_registry::check::live::{self, Outcome, SampleOptions};
use metrics_registry::compiler::CompileOptions;
use metrics_registry::telemetry::QuietTlsNoise;
use metrics_registry::{check, convert, crdgen, install_crypto_provider, run};
use metrics_registry_apiserver::prometheus::PrometheusClient;
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

// With glibc's allocator, what 10,000 closed connections or a large reload freed stayed
// resident; jemalloc with its background thread returns it to the system.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn init_logging(level: &str, format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(QuietTlsNoise);
    match format {
        LogFormat::Plain => registry.with(layer).init(),
        LogFormat::Json => registry.with(layer.json()).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log.log_level, cli.log.log_format);
    install_crypto_provider();
    // Purges freed pages after jemalloc's decay time (10 s) even when the process is idle.
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::debug!(%error, "jemalloc background thread not started");
    }
    match execute(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => {
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(run::run(*args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Crds(args) => {
            match args.output_dir {
                Some(dir) => {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                    for (name, yaml) in crdgen::crd_files() {
                        let path = dir.join(name);
                        std::fs::write(&path, yaml)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                    }
                }
                None => print!("{}", crdgen::crds_yaml()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Uninstall(args) => {
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            runtime.block_on(run::uninstall(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => check_command(args),
        Command::Convert(args) => convert::command::execute(args),
    }
}

/// `check`: one line per problem; with `--prometheus-url`, then each valid definition's
/// sample query and what it would serve. Exit 1 on any problem or failed query.
fn check_command(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let options = CompileOptions {
        namespace_isolation: !args.disable_namespace_isolation,
        ..CompileOptions::default()
    };
    let report = check::check(&args.files, options);
    for problem in &report.problems {
        println!("{problem}");
    }
    let mut failed = !report.problems.is_empty();
    if report.problems.is_empty() {
        println!("{} definitions OK", report.definitions);
    }
    let Some(config) = args.live.config() else {
        return Ok(exit_code(failed));
    };
    let prometheus = PrometheusClient::new(config).context("invalid Prometheus settings")?;
    let sample = SampleOptions {
        namespace: args.live.namespace.clone(),
        ..SampleOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let evaluations = runtime.block_on(live::evaluate(&report.served, &prometheus, &sample));
    let (mut data, mut empty, mut errors) = (0, 0, 0);
    for evaluation in &evaluations {
        println!("{evaluation}");
        match evaluation.outcome {
            Outcome::Data { .. } => data += 1,
            Outcome::NoData(_) => empty += 1,
            Outcome::Failed(_) => errors += 1,
        }
    }
    println!(
        "{} evaluated against {}: {data} with data, {empty} without, {errors} failed",
        evaluations.len(),
        prometheus.url()
    );
    failed |= errors > 0 || (args.live.require_data && empty > 0);
    Ok(exit_code(failed))
}

fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
