//! AWS Signature Version 4 (Amazon Managed Service for Prometheus): every request is signed
//! with aws-sigv4. Credentials come from the standard chain, in its order: the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then web identity
//! (`AWS_ROLE_ARN` and `AWS_WEB_IDENTITY_TOKEN_FILE`, as EKS' IAM roles for service
//! accounts set them), exchanged at STS (`AWS_ENDPOINT_URL_STS`, else the region's
//! endpoint) for temporary credentials that are reused until five minutes before they
//! expire.

use super::config::SigV4Config;
use super::error::{PrometheusError, error_chain, snippet};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// Temporary credentials are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

pub(crate) struct Signer {
    config: SigV4Config,
    /// Web-identity credentials and when they expire.
    cached: Mutex<Option<(Credentials, SystemTime)>>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The text of `<tag>…</tag>` in an STS answer (its values are never nested or escaped).
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].trim())
}

impl Signer {
    pub(super) fn new(config: SigV4Config) -> Self {
        Signer {
            config,
            cached: Mutex::new(None),
        }
    }

    /// Signs `request` in place: `Authorization`, `X-Amz-Date` and, with temporary
    /// credentials, `X-Amz-Security-Token`. `sts` (a client without Prometheus' headers)
    /// exchanges a web identity.
    pub(super) async fn sign(
        &self,
        request: &mut reqwest::Request,
        prometheus_url: &str,
        sts: &reqwest::Client,
    ) -> Result<(), PrometheusError> {
        let failed = |cause: String| PrometheusError::AwsCredentials {
            url: prometheus_url.to_owned(),
            cause,
        };
        let credentials = self.credentials(sts).await.map_err(failed)?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.config.region)
            .name(&self.config.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(e.to_string()))?
            .into();
        let url = request.url().clone();
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => String::new(),
        };
        let body = request
            .body()
            .and_then(reqwest::Body::as_bytes)
            .unwrap_or_default()
            .to_vec();
        let mut headers: Vec<(String, String)> = vec![("host".to_owned(), host)];
        for (name, value) in request.headers() {
            if let Ok(value) = value.to_str()
                && name != reqwest::header::AUTHORIZATION
            {
                headers.push((name.as_str().to_owned(), value.to_owned()));
            }
        }
        let signable = SignableRequest::new(
            request.method().as_str(),
            url.as_str(),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| failed(format!("cannot sign the request: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| failed(format!("cannot sign the request: {e}")))?
            .into_parts();
        for (name, value) in instructions.headers() {
            let mut value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| failed("the signature is not a header value".to_owned()))?;
            value.set_sensitive(true);
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| failed("the signature is not a header".to_owned()))?;
            request.headers_mut().insert(name, value);
        }
        Ok(())
    }

    /// The first link of the chain that is configured.
    async fn credentials(&self, sts: &reqwest::Client) -> Result<Credentials, String> {
        if let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
        {
            return Ok(Credentials::new(
                key,
                secret,
                env("AWS_SESSION_TOKEN"),
                None,
                "environment",
            ));
        }
        let (Some(role), Some(token_file)) =
            (env("AWS_ROLE_ARN"), env("AWS_WEB_IDENTITY_TOKEN_FILE"))
        else {
            return Err(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (IAM roles for service accounts)"
                    .to_owned(),
            );
        };
        let mut cached = self.cached.lock().await;
        if let Some((credentials, expires)) = cached.as_ref()
            && SystemTime::now() + RENEW_BEFORE < *expires
        {
            return Ok(credentials.clone());
        }
        let (credentials, expires) = self.assume_role(sts, &role, &token_file).await?;
        *cached = Some((credentials.clone(), expires));
        Ok(credentials)
    }

    /// STS `AssumeRoleWithWebIdentity` with the token the kubelet keeps in `token_file`.
    async fn assume_role(
        &self,
        sts: &reqwest::Client,
        role: &str,
        token_file: &str,
    ) -> Result<(Credentials, SystemTime), String> {
        // Read every time: the kubelet rotates the projected token.
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| format!("cannot read AWS_WEB_IDENTITY_TOKEN_FILE {token_file}: {e}"))?;
        let endpoint = env("AWS_ENDPOINT_URL_STS")
            .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", self.config.region));
        let session = env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| "metrics-registry".to_owned());
        let answer = sts
            .post(&endpoint)
            .form(&[
                ("Action", "AssumeRoleWithWebIdentity"),
                ("Version", "2011-06-15"),
                ("RoleArn", role),
                ("RoleSessionName", &session),
                ("WebIdentityToken", token.trim()),
            ])
            .send()
            .await
            .map_err(|e| format!("STS at {endpoint}: {}", error_chain(&e.without_url())))?;
        let status = answer.status();
        let body = answer
            .text()
            .await
            .map_err(|e| format!("STS at {endpoint}: {}", error_chain(&e.without_url())))?;
        if !status.is_success() {
            return Err(format!(
                "STS at {endpoint} refused AssumeRoleWithWebIdentity for {role}: HTTP {status}: {}",
                snippet(body.as_bytes())
            ));
        }
        let field = |tag: &str| {
            element(&body, tag)
                .map(str::to_owned)
                .ok_or_else(|| format!("STS at {endpoint} answered without {tag}"))
        };
        let expiration = field("Expiration")?;
        let expires = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%#z", &expiration)
            .or_else(|_| expiration.parse::<jiff::Timestamp>())
            .map(SystemTime::from)
            .map_err(|e| format!("STS at {endpoint}: Expiration {expiration:?}: {e}"))?;
        let credentials = Credentials::new(
            field("AccessKeyId")?,
            field("SecretAccessKey")?,
            Some(field("SessionToken")?),
            Some(expires),
            "web identity",
        );
        Ok((credentials, expires))
    }
}

#[cfg(test)]
mod tests {
    use super::element;

    #[test]
    fn reads_the_fields_of_an_sts_answer() {
        let xml = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>s</SecretAccessKey>\
            <SessionToken> t </SessionToken><Expiration>2030-01-01T00:00:00Z</Expiration>\
            </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        assert_eq!(element(xml, "AccessKeyId"), Some("ASIA1"));
        assert_eq!(element(xml, "SessionToken"), Some("t"));
        assert_eq!(element(xml, "Nope"), None);
    }
}
