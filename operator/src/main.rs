use anyhow::Context;
use clap::Parser;
use metrics_registry::args::{Cli, Command, LogFormat};
use metrics_registry::compiler::CompileOptions;
use metrics_registry::{check, convert, crdgen, install_crypto_provider, run};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

// With glibc's allocator, what 10,000 closed connections or a large reload freed stayed
// resident; jemalloc with its background thread returns it to the system.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder.json().init(),
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
        Command::Check(args) => {
            let options = CompileOptions {
                namespace_isolation: !args.disable_namespace_isolation,
                ..CompileOptions::default()
            };
            let report = check::check(&args.files, options);
            for problem in &report.problems {
                println!("{problem}");
            }
            if report.problems.is_empty() {
                println!("{} definitions OK", report.definitions);
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Convert(args) => convert::command::execute(args),
    }
}
