//! Wiring of `metrics-registry convert FILE`: read, optionally list series, convert, write.

use super::discovery::Discovery;
use super::series::SeriesLister;
use super::{ExternalRulesAs, Options, Scope, config, convert, output, series_queries};
use crate::args::convert::{ConvertArgs, ExternalRulesAsArg, ScopeArg};
use crate::definitions::DefinitionKind;
use anyhow::{Context, bail};
use std::process::ExitCode;
use std::time::Duration;

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
        external_rules_as: match args.external_rules_as {
            ExternalRulesAsArg::LiveQueries => ExternalRulesAs::LiveQueries,
            ExternalRulesAsArg::RecordingRules => ExternalRulesAs::RecordingRules,
        },
    })
}
