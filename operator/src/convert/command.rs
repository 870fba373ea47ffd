//! Wiring of `metrics-registry convert FILE`: read, optionally list series, convert, write.

use super::discovery::Discovery;
use super::series::SeriesLister;
use super::{Options, Scope, config, convert, output, series_queries};
use crate::args::{parse_duration, parse_header};
use crate::definitions::DefinitionKind;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// prometheus-adapter configuration: its config file, the ConfigMap that holds it, or
    /// the prometheus-adapter Helm chart's values (rules.custom/external/resource).
    pub file: PathBuf,
    /// List each seriesQuery's series from this Prometheus and name them as the adapter does
    /// at discovery; without it, each rule becomes one metric, with the assumption printed.
    #[arg(long, value_name = "URL")]
    pub prometheus_url: Option<String>,
    /// Extra header NAME=VALUE for Prometheus (X-Scope-OrgID=tenant, Authorization=Bearer …); repeatable.
    #[arg(long = "prometheus-header", value_name = "NAME=VALUE", value_parser = parse_header, requires = "prometheus_url")]
    pub prometheus_headers: Vec<(String, String)>,
    /// CA bundle that signs Prometheus' certificate.
    #[arg(long, value_name = "FILE", requires = "prometheus_url")]
    pub prometheus_ca_file: Option<PathBuf>,
    /// Series seen within this long are listed (the adapter's --metrics-max-age).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub metrics_max_age: Duration,
    /// cluster: Cluster* kinds, served in every namespace; namespaced: the namespaced kinds,
    /// written into each --namespace.
    #[arg(long, value_enum, default_value_t = ScopeArg::Cluster)]
    pub scope: ScopeArg,
    /// Namespace of namespaced definitions (repeatable). With --scope cluster, the namespaces
    /// that get NamespaceMetrics, which have no cluster-wide kind.
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Write one file per object into this folder instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    Cluster,
    Namespaced,
}

const PROMETHEUS_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit 0 when anything was converted, 1 when nothing was (or the input could not be read);
/// every part that did not convert as it was gets one line on stderr either way.
pub fn execute(args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let options = options(&args)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let (adapter_config, source) =
        config::parse(&text).with_context(|| args.file.display().to_string())?;
    let listed = match &args.prometheus_url {
        Some(url) => {
            let lister = SeriesLister::new(
                url,
                &args.prometheus_headers,
                args.prometheus_ca_file.as_deref(),
                PROMETHEUS_TIMEOUT,
            )?;
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            Some(runtime.block_on(
                lister.list_all(&series_queries(&adapter_config), args.metrics_max_age),
            )?)
        }
        None => None,
    };
    let discovery = match &listed {
        Some(listed) => Discovery::Listed(listed),
        None => Discovery::Assumed,
    };
    let conversion = convert(&adapter_config, &source, discovery, &options);
    for note in &conversion.notes {
        eprintln!("{note}");
    }
    let documents = &conversion.documents;
    if documents.is_empty() {
        eprintln!(
            "nothing in {} converts to metrics-registry definitions",
            args.file.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let recordings = documents
        .iter()
        .filter(|d| d.kind == DefinitionKind::CustomPrometheusRules)
        .count();
    let summary = format!(
        "{} definition(s) and {recordings} external metric recording(s) from {}",
        documents.len() - recordings,
        args.file.display()
    );
    match &args.output_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for document in documents {
                let path = dir.join(document.file_name());
                std::fs::write(&path, document.to_yaml())
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            eprintln!("wrote {summary} into {}", dir.display());
        }
        None => {
            let header = format!(
                "Converted by `metrics-registry convert` from {}.\nValidate with `metrics-registry check`; the notes on stderr say what differs.",
                args.file.display()
            );
            print!("{}", output::to_yaml(&header, documents));
            eprintln!("converted {summary}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn options(args: &ConvertArgs) -> anyhow::Result<Options> {
    for namespace in &args.namespaces {
        let valid = !namespace.is_empty()
            && namespace.len() <= 63
            && namespace
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !namespace.starts_with('-')
            && !namespace.ends_with('-');
        if !valid {
            bail!(
                "--namespace {namespace:?} is not a namespace name (lower-case letters, digits and '-')"
            );
        }
    }
    let scope = match args.scope {
        ScopeArg::Cluster => Scope::Cluster,
        ScopeArg::Namespaced => Scope::Namespaced,
    };
    if scope == Scope::Namespaced && args.namespaces.is_empty() {
        bail!("--scope namespaced needs at least one --namespace NS");
    }
    Ok(Options {
        scope,
        namespaces: args.namespaces.clone(),
    })
}
