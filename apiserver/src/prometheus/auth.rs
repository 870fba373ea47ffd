//! How requests to Prometheus authenticate, decided once from the configuration.

use super::config::PrometheusConfig;
use super::error::PrometheusConfigError;
use super::secret::{Credential, SecretFile};

pub(super) enum Auth {
    None,
    Bearer(Credential),
    Basic { user: String, password: Credential },
    OAuth2(Box<super::oauth2::Tokens>),
    SigV4(Box<super::sigv4::Signer>),
}

pub(super) fn auth_from_config(config: &PrometheusConfig) -> Result<Auth, PrometheusConfigError> {
    let password = match (
        &config.basic_auth_password_file,
        &config.basic_auth_password,
    ) {
        (Some(file), None) => Some(Credential::File(SecretFile::new(file.clone()))),
        (None, Some(secret)) => Some(Credential::inline(secret)?),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(PrometheusConfigError::Conflict(
                "a basic auth password file and an in-memory password cannot both be used",
            ));
        }
    };
    let basic = match (&config.basic_auth_user, password) {
        (Some(user), Some(password)) => Some(Auth::Basic {
            user: user.clone(),
            password,
        }),
        (None, None) => None,
        _ => {
            return Err(PrometheusConfigError::Incomplete(
                "basic_auth_user and basic_auth_password_file must be set together",
            ));
        }
    };
    let bearer = match (&config.bearer_token_file, &config.bearer_token) {
        (Some(file), None) => Some(Auth::Bearer(Credential::File(SecretFile::new(
            file.clone(),
        )))),
        (None, Some(secret)) => Some(Auth::Bearer(Credential::inline(secret)?)),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err(PrometheusConfigError::Conflict(
                "a bearer token file and an in-memory token cannot both be used",
            ));
        }
    };
    let oauth2 = match &config.oauth2 {
        Some(oauth2) => Some(Auth::OAuth2(Box::new(super::oauth2::Tokens::new(
            oauth2.clone(),
            Credential::inline(&oauth2.client_secret)?,
        )?))),
        None => None,
    };
    let sigv4 = config
        .sigv4
        .clone()
        .map(|sigv4| Auth::SigV4(Box::new(super::sigv4::Signer::new(sigv4))));
    let mut chosen = [basic, bearer, oauth2, sigv4].into_iter().flatten();
    match (chosen.next(), chosen.next()) {
        (Some(_), Some(_)) => Err(PrometheusConfigError::Conflict(
            "only one of a bearer token, basic auth, OAuth2 and SigV4 can be used",
        )),
        (Some(auth), None) => Ok(auth),
        (None, _) => Ok(Auth::None),
    }
}
