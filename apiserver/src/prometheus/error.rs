//! What goes wrong talking to Prometheus, and the gateway status each maps to.

use std::path::PathBuf;
use std::time::Duration;

/// How much of a non-JSON error body ends up in an error message: enough to
/// recognise a proxy's error page, not enough to flood the log.
pub(crate) const BODY_SNIPPET_LEN: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum PrometheusConfigError {
    #[error("invalid Prometheus URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot read {what} {}: {cause}", path.display())]
    UnreadableFile {
        what: &'static str,
        path: PathBuf,
        cause: String,
    },
    #[error("invalid {what} {}: {cause}", path.display())]
    InvalidFile {
        what: &'static str,
        path: PathBuf,
        cause: String,
    },
    #[error("incomplete Prometheus configuration: {0}")]
    Incomplete(&'static str),
    #[error("conflicting Prometheus configuration: {0}")]
    Conflict(&'static str),
    /// Never carries the secret's content.
    #[error("invalid {what} from {origin}: {cause}")]
    InvalidSecret {
        what: &'static str,
        origin: String,
        cause: String,
    },
    #[error("invalid extra header {name:?}: {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error(
        "no rustls crypto provider is installed; install one (e.g. ring) before creating the Prometheus client"
    )]
    NoCryptoProvider,
    #[error("cannot set up the HTTP client for Prometheus: {0}")]
    Client(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PrometheusError {
    /// Connection refused, DNS failure, TLS failure, connection reset.
    #[error("Prometheus at {url} is unreachable: {cause}")]
    Unreachable {
        url: String,
        cause: String,
        /// The TLS handshake failed (rustls said so): a CA or certificate problem.
        tls: bool,
    },
    #[error("Prometheus at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// Prometheus answered with an error status and/or an error document.
    /// For a body that is not JSON (a proxy's error page), `error_type` is
    /// the HTTP reason phrase and `message` the start of the body.
    #[error("Prometheus at {url} rejected the query: {error_type}: {message} (HTTP {status})")]
    Rejected {
        url: String,
        status: u16,
        error_type: String,
        message: String,
    },
    #[error(
        "Prometheus at {url} sent an answer larger than {limit} bytes, the limit (--prometheus-max-response-bytes); ask for fewer series or raise the limit"
    )]
    TooLarge { url: String, limit: usize },
    #[error("Prometheus at {url} sent an unreadable answer: {cause}")]
    Decode { url: String, cause: String },
    #[error(
        "Prometheus at {url} returned a {result_type} result where an instant vector or scalar was expected"
    )]
    UnexpectedResult { url: String, result_type: String },
    /// Never carries the file's content.
    #[error("cannot read Prometheus credentials from {}: {cause}", path.display())]
    Credentials { path: PathBuf, cause: String },
    /// No AWS credentials for SigV4, or STS refused the web identity; nothing was sent.
    #[error("cannot sign the request to Prometheus at {url} with AWS SigV4: {cause}")]
    AwsCredentials { url: String, cause: String },
    /// The OAuth2 token endpoint failed or refused; nothing was sent to Prometheus.
    #[error("cannot get an OAuth2 token from {token_url} for Prometheus at {url}: {cause}")]
    Token {
        url: String,
        token_url: String,
        cause: String,
    },
}

impl PrometheusError {
    /// The status a gateway in front of Prometheus answers with, so callers
    /// can tell "down" and "slow" apart from "broken".
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Unreachable { .. } | Self::Token { .. } | Self::AwsCredentials { .. } => 503,
            Self::Timeout { .. } => 504,
            _ => 502,
        }
    }

    /// How the query ended, as the `outcome` label of the self-metrics says it:
    /// `unreachable` (also when credentials could not be read: nothing was sent),
    /// `timeout`, `refused` (an error answer) or `bad_answer` (unreadable, too large,
    /// or of a shape that cannot be served).
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unreachable { .. }
            | Self::Credentials { .. }
            | Self::Token { .. }
            | Self::AwsCredentials { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Rejected { .. } => "refused",
            Self::TooLarge { .. } | Self::Decode { .. } | Self::UnexpectedResult { .. } => {
                "bad_answer"
            }
        }
    }
}

/// The error and all its sources, skipping sources that merely repeat what
/// was already said (hyper and reqwest often wrap without adding anything).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !chain.contains(&text) {
            chain.push_str(": ");
            chain.push_str(&text);
        }
        source = cause.source();
    }
    chain
}

pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.is_empty() {
        return "(empty body)".to_owned();
    }
    match collapsed.char_indices().nth(BODY_SNIPPET_LEN) {
        Some((cut, _)) => format!("{}...", &collapsed[..cut]),
        None => collapsed,
    }
}
