//! Sign-in with other providers, the protocol side: which providers this
//! deployment trusts (`AUTH_OAUTH_*`), the authorize URL, and turning the
//! callback's code into the identity the provider asserts. The accounts
//! side (who that identity is here) is `services::oauth`.
//!
//! Two kinds of provider:
//! - OpenID Connect (`_ISSUER`): endpoints from discovery, the ID token's
//!   signature checked against the provider's JWKS and its `iss`, `aud`
//!   (and `azp` when there are several audiences), `exp` and `nonce`
//!   checked. Discovery and keys are cached for an hour; a token signed by
//!   a key not in the cache refetches them once (the provider rotated).
//! - Plain OAuth 2.0 (`_AUTHORIZATION_URL`, `_TOKEN_URL`, `_USERINFO_URL`,
//!   GitHub's shape): the identity is the userinfo answer; the email counts
//!   as verified only when the provider says so (`email_verified`, or
//!   GitHub's emails endpoint, `_EMAILS_URL`).
//!
//! The code flow and PKCE are the `oauth2` crate's; the ID token's
//! signature and registered claims are `jsonwebtoken`'s. Every request to a
//! provider has a deadline (`AUTH_OAUTH_TIMEOUT_SECONDS`) and follows no
//! redirect.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::JwkSet;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use service_kit::config::{err, ConfigError, Env};

use crate::domain::Email;

/// How long discovery and the provider's keys are trusted before refetching.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// One provider, as configured.
#[derive(Clone)]
pub struct ProviderSettings {
    /// In URLs (`/v1/oauth/{name}/...`) and in identities: `[a-z0-9-]`.
    pub name: String,
    pub display_name: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub protocol: Protocol,
    pub scopes: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum Protocol {
    OpenIdConnect {
        issuer: String,
    },
    OAuth2 {
        authorization_url: String,
        token_url: String,
        userinfo_url: String,
        /// GitHub's `/user/emails`: where a verified address is found.
        emails_url: Option<String>,
        /// The userinfo field that is the subject (`id`).
        subject_field: String,
    },
}

/// Reads `AUTH_OAUTH_PROVIDERS` and each provider's variables.
pub fn from_env(
    env: &Env<impl Fn(&str) -> Option<String>>,
) -> Result<Vec<ProviderSettings>, ConfigError> {
    let names = env.list("AUTH_OAUTH_PROVIDERS").unwrap_or_default();
    let mut providers: Vec<ProviderSettings> = Vec::new();
    for name in names {
        let name = name.to_lowercase();
        if name.is_empty()
            || name.len() > 32
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(err(
                "AUTH_OAUTH_PROVIDERS",
                format!(
                    "`{name}` is not a provider name (letters, digits and -, e.g. google,github)"
                ),
            ));
        }
        if providers.iter().any(|p| p.name == name) {
            return Err(err(
                "AUTH_OAUTH_PROVIDERS",
                format!("`{name}` is listed twice"),
            ));
        }
        let prefix = format!("AUTH_OAUTH_{}_", name.to_uppercase().replace('-', "_"));
        let var = |suffix: &str| format!("{prefix}{suffix}");
        let why = format!("provider `{name}` is listed in AUTH_OAUTH_PROVIDERS");
        let client_id = env.required(&var("CLIENT_ID"), &why)?;
        let client_secret = env.required(&var("CLIENT_SECRET"), &why)?;
        let protocol = match env.get(&var("ISSUER")) {
            Some(_) => Protocol::OpenIdConnect {
                issuer: env.http_url(&var("ISSUER"), "")?,
            },
            None => {
                let needed = format!("{why}, without {}", var("ISSUER"));
                for suffix in ["AUTHORIZATION_URL", "TOKEN_URL", "USERINFO_URL"] {
                    env.required(&var(suffix), &needed)?;
                }
                Protocol::OAuth2 {
                    authorization_url: env.http_url(&var("AUTHORIZATION_URL"), "")?,
                    token_url: env.http_url(&var("TOKEN_URL"), "")?,
                    userinfo_url: env.http_url(&var("USERINFO_URL"), "")?,
                    emails_url: match env.get(&var("EMAILS_URL")) {
                        Some(_) => Some(env.http_url(&var("EMAILS_URL"), "")?),
                        None => None,
                    },
                    subject_field: env.text(&var("SUBJECT_FIELD"), "id"),
                }
            }
        };
        let default_scopes = match protocol {
            Protocol::OpenIdConnect { .. } => "openid email profile",
            Protocol::OAuth2 { .. } => "",
        };
        let scopes: Vec<String> = env
            .text(&var("SCOPES"), default_scopes)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if matches!(protocol, Protocol::OpenIdConnect { .. })
            && !scopes.iter().any(|s| s == "openid")
        {
            return Err(err(
                var("SCOPES"),
                "must include `openid` for an OpenID Connect provider",
            ));
        }
        let display_name = env.get(&var("DISPLAY_NAME")).unwrap_or_else(|| {
            let mut chars = name.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        });
        providers.push(ProviderSettings {
            name,
            display_name,
            client_id,
            client_secret: client_secret.into(),
            protocol,
            scopes,
        });
    }
    Ok(providers)
}

/// Why a provider step failed. Each has the code the callback's fragment
/// carries (`#error=CODE`); the detail goes to the log only.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Down, slow past the deadline, or answering something unreadable.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// It answered with an OAuth error (a spent or forged code, say).
    #[error("the provider refused: {0}")]
    Refused(String),
    #[error("the provider's ID token was refused: {0}")]
    InvalidIdToken(String),
    #[error("the provider gave no usable email address")]
    NoEmail,
}

impl ProviderError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "provider_unavailable",
            Self::Refused(_) => "provider_error",
            Self::InvalidIdToken(_) => "invalid_id_token",
            Self::NoEmail => "email_missing",
        }
    }
}

/// The provider's tokens, stored sealed and never returned by any API.
#[derive(Serialize, Deserialize)]
pub struct ProviderTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Who the provider says signed in.
#[derive(Serialize, Deserialize)]
pub struct Asserted {
    pub subject: String,
    /// Validated and lower-cased.
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub tokens: ProviderTokens,
}

/// What the authorize redirect binds the callback to.
pub struct Challenge {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub pkce_challenge: PkceCodeChallenge,
}

impl Challenge {
    pub fn new() -> Self {
        let (pkce_challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        Self {
            state: crate::tokens::random_token(),
            nonce: crate::tokens::random_token(),
            pkce_verifier: verifier.secret().clone(),
            pkce_challenge,
        }
    }
}

impl Default for Challenge {
    fn default() -> Self {
        Self::new()
    }
}

/// The ID token beside the standard token response.
#[derive(Clone, Deserialize, Serialize)]
pub struct IdTokenField {
    #[serde(default)]
    id_token: Option<String>,
}

impl std::fmt::Debug for IdTokenField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdTokenField(..)")
    }
}

impl oauth2::ExtraTokenFields for IdTokenField {}

type TokenAnswer = StandardTokenResponse<IdTokenField, BasicTokenType>;
type CodeClient = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// What discovery says, and the keys, as last fetched.
#[derive(Clone)]
struct Discovered {
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
    issuer: String,
    keys: Arc<JwkSet>,
    fetched: Instant,
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
}

/// Discovery as last fetched, and when an unknown key last forced a
/// refetch.
#[derive(Default)]
struct Cache {
    discovered: Option<Discovered>,
    forced: Option<Instant>,
}

/// How often a token signed by a key not in the cache may refetch the
/// keys: a forged token's made-up `kid` must not make us hammer the
/// provider, and a real rotation is picked up at once.
const FORCED_REFETCH_EVERY: Duration = Duration::from_secs(60);

/// A configured provider and its cached discovery.
pub struct Provider {
    pub settings: ProviderSettings,
    cache: tokio::sync::Mutex<Cache>,
}

/// Every configured provider, and the HTTP client that talks to them.
pub struct Providers {
    list: Vec<Provider>,
    http: reqwest::Client,
}

impl Providers {
    pub fn new(settings: &[ProviderSettings], timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A provider's token endpoint that redirects is not followed:
            // the code and verifier go to the configured URL only.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("auth-service/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            list: settings
                .iter()
                .map(|s| Provider {
                    settings: s.clone(),
                    cache: tokio::sync::Mutex::new(Cache::default()),
                })
                .collect(),
            http,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.list.iter().find(|p| p.settings.name == name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Provider> {
        self.list.iter()
    }

    /// Where the browser goes to sign in at `provider`.
    pub async fn authorize_url(
        &self,
        provider: &Provider,
        redirect_uri: &str,
        challenge: &Challenge,
        login_hint: Option<&str>,
    ) -> Result<String, ProviderError> {
        let client = self.code_client(provider, redirect_uri).await?;
        let state = challenge.state.clone();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(provider.settings.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge.pkce_challenge.clone());
        if matches!(provider.settings.protocol, Protocol::OpenIdConnect { .. }) {
            request = request.add_extra_param("nonce", challenge.nonce.clone());
        }
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        Ok(request.url().0.to_string())
    }

    /// Trades the callback's `code` for the provider's tokens and the
    /// identity they carry, checked.
    pub async fn identify(
        &self,
        provider: &Provider,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Asserted, ProviderError> {
        let client = self.code_client(provider, redirect_uri).await?;
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    ProviderError::Refused(format!("token endpoint: {}", r.error()))
                }
                RequestTokenError::Request(e) => {
                    ProviderError::Unavailable(format!("token endpoint: {e}"))
                }
                RequestTokenError::Parse(e, _) => {
                    ProviderError::Unavailable(format!("token endpoint answer: {e}"))
                }
                RequestTokenError::Other(e) => {
                    ProviderError::Unavailable(format!("token endpoint: {e}"))
                }
            })?;
        let tokens = ProviderTokens {
            access_token: answer.access_token().secret().clone(),
            refresh_token: answer.refresh_token().map(|t| t.secret().clone()),
            id_token: answer.extra_fields().id_token.clone(),
            expires_at: answer
                .expires_in()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| Utc::now() + d),
        };
        match &provider.settings.protocol {
            Protocol::OpenIdConnect { .. } => {
                self.identity_in_id_token(provider, tokens, nonce).await
            }
            Protocol::OAuth2 {
                userinfo_url,
                emails_url,
                subject_field,
                ..
            } => {
                let info = self
                    .get_json(userinfo_url, Some(&tokens.access_token))
                    .await?;
                let subject = match info.get(subject_field.as_str()) {
                    Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    _ => {
                        return Err(ProviderError::Refused(format!(
                            "userinfo has no `{subject_field}`"
                        )))
                    }
                };
                let mut email = info
                    .get("email")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned);
                let mut verified = info
                    .get("email_verified")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                if let Some(url) = emails_url {
                    (email, verified) = self
                        .verified_email(url, &tokens.access_token, email.as_deref())
                        .await?;
                }
                let name = ["name", "login"]
                    .iter()
                    .find_map(|k| info.get(*k).and_then(|v| v.as_str()))
                    .map(str::to_owned);
                asserted(subject, email, verified, name, tokens)
            }
        }
    }

    /// GitHub's emails endpoint: the userinfo address if listed verified,
    /// else the primary verified one, else the first verified one.
    async fn verified_email(
        &self,
        url: &str,
        access_token: &str,
        public: Option<&str>,
    ) -> Result<(Option<String>, bool), ProviderError> {
        #[derive(Deserialize)]
        struct Listed {
            email: String,
            #[serde(default)]
            primary: bool,
            #[serde(default)]
            verified: bool,
        }
        let listed: Vec<Listed> =
            serde_json::from_value(self.get_json(url, Some(access_token)).await?)
                .map_err(|e| ProviderError::Unavailable(format!("emails endpoint answer: {e}")))?;
        let verified: Vec<&Listed> = listed.iter().filter(|l| l.verified).collect();
        let pick = public
            .and_then(|p| verified.iter().find(|l| l.email.eq_ignore_ascii_case(p)))
            .or_else(|| verified.iter().find(|l| l.primary))
            .or_else(|| verified.first());
        Ok(match pick {
            Some(l) => (Some(l.email.clone()), true),
            None => (public.map(str::to_owned), false),
        })
    }

    async fn identity_in_id_token(
        &self,
        provider: &Provider,
        tokens: ProviderTokens,
        nonce: &str,
    ) -> Result<Asserted, ProviderError> {
        let Some(id_token) = tokens.id_token.as_deref() else {
            return Err(ProviderError::InvalidIdToken(
                "no id_token in the token answer".into(),
            ));
        };
        let (claims, discovered) = self.checked_claims(provider, id_token, nonce).await?;
        let mut email = claims.email.clone();
        let mut verified = claims.email_verified.unwrap_or(false);
        let mut name = claims.name.clone();
        // Providers that keep the email out of the ID token answer it at
        // userinfo, for the same subject.
        if email.is_none() {
            if let Some(url) = &discovered.userinfo_endpoint {
                let info = self.get_json(url, Some(&tokens.access_token)).await?;
                if info.get("sub").and_then(|v| v.as_str()) != Some(claims.sub.as_str()) {
                    return Err(ProviderError::InvalidIdToken(
                        "userinfo is about another subject".into(),
                    ));
                }
                email = info
                    .get("email")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned);
                verified = match info.get("email_verified") {
                    Some(serde_json::Value::Bool(b)) => *b,
                    Some(serde_json::Value::String(s)) => s == "true",
                    _ => false,
                };
                name =
                    name.or_else(|| info.get("name").and_then(|v| v.as_str()).map(str::to_owned));
            }
        }
        asserted(claims.sub, email, verified, name, tokens)
    }

    /// The ID token's claims, checked against the provider's keys (fetched
    /// again when the token names a key the cache lacks).
    async fn checked_claims(
        &self,
        provider: &Provider,
        id_token: &str,
        nonce: &str,
    ) -> Result<(IdClaims, Discovered), ProviderError> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|e| ProviderError::InvalidIdToken(format!("header: {e}")))?;
        let discovered = self.discovered(provider, false).await?;
        let discovered = match key_for(&discovered.keys, header.kid.as_deref()) {
            Some(_) => discovered,
            // A key we have not seen: the provider may have rotated.
            None => self.discovered(provider, true).await?,
        };
        let claims = verify_id_token(
            id_token,
            &discovered.keys,
            &discovered.issuer,
            &provider.settings.client_id,
            nonce,
        )?;
        Ok((claims, discovered))
    }

    /// GETs JSON from the provider, with its access token when given. A
    /// 4xx to a request carrying the token is the provider refusing it;
    /// anything else that fails means the provider is unavailable.
    async fn get_json(
        &self,
        url: &str,
        access_token: Option<&str>,
    ) -> Result<serde_json::Value, ProviderError> {
        let mut request = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = access_token {
            request = request.bearer_auth(token);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("{url}: {e}")))?;
        let status = answer.status();
        if status.is_client_error() && access_token.is_some() {
            return Err(ProviderError::Refused(format!("{url}: {status}")));
        }
        if !status.is_success() {
            return Err(ProviderError::Unavailable(format!("{url}: {status}")));
        }
        answer
            .json()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("{url}: {e}")))
    }

    /// The code flow's client for `provider`: its endpoints from
    /// configuration, or from discovery for OpenID Connect.
    async fn code_client(
        &self,
        provider: &Provider,
        redirect_uri: &str,
    ) -> Result<CodeClient, ProviderError> {
        let (auth_url, token_url) = match &provider.settings.protocol {
            Protocol::OpenIdConnect { .. } => {
                let d = self.discovered(provider, false).await?;
                (d.authorization_endpoint, d.token_endpoint)
            }
            Protocol::OAuth2 {
                authorization_url,
                token_url,
                ..
            } => (authorization_url.clone(), token_url.clone()),
        };
        code_client(provider, &auth_url, &token_url, redirect_uri)
    }

    /// Discovery and keys: cached, or fetched when absent, stale or
    /// `refresh` asks (an unknown key id). One fetch at a time per provider.
    async fn discovered(
        &self,
        provider: &Provider,
        refresh: bool,
    ) -> Result<Discovered, ProviderError> {
        let Protocol::OpenIdConnect { issuer } = &provider.settings.protocol else {
            return Err(ProviderError::Unavailable(
                "not an OpenID Connect provider".into(),
            ));
        };
        let mut cache = provider.cache.lock().await;
        if let Some(d) = cache.discovered.as_ref() {
            let fresh = d.fetched.elapsed() < DISCOVERY_TTL;
            let may_force = cache
                .forced
                .is_none_or(|at| at.elapsed() >= FORCED_REFETCH_EVERY);
            if (fresh && !refresh) || (refresh && !may_force) {
                return Ok(d.clone());
            }
        }
        if refresh {
            cache.forced = Some(Instant::now());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc: DiscoveryDocument = self.fetch(&url).await?;
        // OpenID Connect Discovery 1.0 §4.3: the issuer must be the one
        // configured, exactly, or a token from another issuer could pass.
        if doc.issuer != *issuer && doc.issuer != issuer.trim_end_matches('/') {
            return Err(ProviderError::Unavailable(format!(
                "discovery at {url} names issuer {}, not the configured {issuer}",
                doc.issuer
            )));
        }
        let keys: JwkSet = self.fetch(&doc.jwks_uri).await?;
        let d = Discovered {
            authorization_endpoint: doc.authorization_endpoint,
            token_endpoint: doc.token_endpoint,
            userinfo_endpoint: doc.userinfo_endpoint,
            jwks_uri: doc.jwks_uri,
            issuer: doc.issuer,
            keys: Arc::new(keys),
            fetched: Instant::now(),
        };
        tracing::debug!(provider = %provider.settings.name, jwks = %d.jwks_uri, "provider discovery fetched");
        cache.discovered = Some(d.clone());
        Ok(d)
    }

    /// A public document of the provider (discovery, keys).
    async fn fetch<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, ProviderError> {
        serde_json::from_value(self.get_json(url, None).await?)
            .map_err(|e| ProviderError::Unavailable(format!("{url}: {e}")))
    }
}

fn code_client(
    provider: &Provider,
    auth_url: &str,
    token_url: &str,
    redirect_uri: &str,
) -> Result<CodeClient, ProviderError> {
    let bad = |what: &str, e: oauth2::url::ParseError| {
        ProviderError::Unavailable(format!("{what} is not a URL: {e}"))
    };
    Ok(
        oauth2::Client::new(ClientId::new(provider.settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                provider.settings.client_secret.expose_secret().to_owned(),
            ))
            .set_auth_uri(
                AuthUrl::new(auth_url.to_owned()).map_err(|e| bad("authorization URL", e))?,
            )
            .set_token_uri(TokenUrl::new(token_url.to_owned()).map_err(|e| bad("token URL", e))?)
            .set_redirect_uri(
                RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| bad("redirect URI", e))?,
            ),
    )
}

fn key_for<'a>(keys: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => keys.find(kid),
        // Without a kid, only an unambiguous set will do.
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
}

/// The ID token claims we read.
#[derive(Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
    /// A string or a list (jsonwebtoken checks ours is in it).
    #[serde(default)]
    aud: serde_json::Value,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    email_verified: Option<bool>,
    #[serde(default)]
    name: Option<String>,
}

/// Some providers send `"email_verified": "true"`.
fn bool_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Bool(b)) => Some(b),
        Some(serde_json::Value::String(s)) => Some(s == "true"),
        _ => None,
    })
}

/// Signature (by a key of the provider's set, with an asymmetric
/// algorithm), `iss`, `aud`, `exp` (a minute of leeway), `azp` when there
/// are several audiences, and `nonce` (the one this sign-in sent).
fn verify_id_token(
    token: &str,
    keys: &JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<IdClaims, ProviderError> {
    use jsonwebtoken::Algorithm::*;
    let refuse = |why: String| ProviderError::InvalidIdToken(why);
    let header = jsonwebtoken::decode_header(token).map_err(|e| refuse(format!("header: {e}")))?;
    if !matches!(
        header.alg,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 | ES256 | ES384 | EdDSA
    ) {
        return Err(refuse(format!(
            "algorithm {:?} is not accepted",
            header.alg
        )));
    }
    let jwk = key_for(keys, header.kid.as_deref())
        .ok_or_else(|| refuse("signed by a key the provider does not list".into()))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| refuse(format!("key: {e}")))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 60;
    let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
        .map_err(|e| refuse(e.to_string()))?
        .claims;
    let audiences = claims.aud.as_array().map_or(1, Vec::len);
    if audiences > 1 && claims.azp.as_deref() != Some(client_id) {
        return Err(refuse(
            "several audiences and azp is not this client".into(),
        ));
    }
    let matches = claims
        .nonce
        .as_deref()
        .is_some_and(|got| service_kit::http::key_matches(got, nonce));
    if !matches {
        return Err(refuse("nonce does not match this sign-in".into()));
    }
    Ok(claims)
}

fn asserted(
    subject: String,
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
    tokens: ProviderTokens,
) -> Result<Asserted, ProviderError> {
    let email = email
        .as_deref()
        .and_then(|e| Email::parse(e).ok())
        .ok_or(ProviderError::NoEmail)?;
    Ok(Asserted {
        subject,
        email: email.as_str().to_owned(),
        email_verified,
        name: name
            .map(|n| n.trim().chars().take(200).collect::<String>())
            .filter(|n| !n.is_empty()),
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn providers(pairs: &[(&str, &str)]) -> Result<Vec<ProviderSettings>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env(&Env(|k: &str| map.get(k).cloned()))
    }

    #[test]
    fn providers_are_read_per_name() {
        let list = providers(&[
            ("AUTH_OAUTH_PROVIDERS", "google, github"),
            ("AUTH_OAUTH_GOOGLE_CLIENT_ID", "g-id"),
            ("AUTH_OAUTH_GOOGLE_CLIENT_SECRET", "g-secret"),
            ("AUTH_OAUTH_GOOGLE_ISSUER", "https://accounts.google.com"),
            ("AUTH_OAUTH_GITHUB_CLIENT_ID", "h-id"),
            ("AUTH_OAUTH_GITHUB_CLIENT_SECRET", "h-secret"),
            (
                "AUTH_OAUTH_GITHUB_AUTHORIZATION_URL",
                "https://github.com/login/oauth/authorize",
            ),
            (
                "AUTH_OAUTH_GITHUB_TOKEN_URL",
                "https://github.com/login/oauth/access_token",
            ),
            (
                "AUTH_OAUTH_GITHUB_USERINFO_URL",
                "https://api.github.com/user",
            ),
            ("AUTH_OAUTH_GITHUB_SCOPES", "read:user user:email"),
            ("AUTH_OAUTH_GITHUB_DISPLAY_NAME", "GitHub"),
        ])
        .expect("valid");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].display_name, "Google");
        assert_eq!(list[0].scopes, ["openid", "email", "profile"]);
        assert!(matches!(list[0].protocol, Protocol::OpenIdConnect { .. }));
        assert_eq!(list[1].display_name, "GitHub");
        assert_eq!(list[1].scopes, ["read:user", "user:email"]);
        match &list[1].protocol {
            Protocol::OAuth2 {
                subject_field,
                emails_url,
                ..
            } => {
                assert_eq!(subject_field, "id");
                assert!(emails_url.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_provider_missing_a_variable_names_it() {
        let e = providers(&[("AUTH_OAUTH_PROVIDERS", "acme")])
            .err()
            .expect("refused");
        assert_eq!(e.var, "AUTH_OAUTH_ACME_CLIENT_ID");
        let e = providers(&[
            ("AUTH_OAUTH_PROVIDERS", "acme"),
            ("AUTH_OAUTH_ACME_CLIENT_ID", "id"),
            ("AUTH_OAUTH_ACME_CLIENT_SECRET", "s"),
        ])
        .err()
        .expect("refused");
        assert_eq!(e.var, "AUTH_OAUTH_ACME_AUTHORIZATION_URL");
        let e = providers(&[
            ("AUTH_OAUTH_PROVIDERS", "acme"),
            ("AUTH_OAUTH_ACME_CLIENT_ID", "id"),
            ("AUTH_OAUTH_ACME_CLIENT_SECRET", "s"),
            ("AUTH_OAUTH_ACME_ISSUER", "https://id.acme.test"),
            ("AUTH_OAUTH_ACME_SCOPES", "email"),
        ])
        .err()
        .expect("refused");
        assert_eq!(e.var, "AUTH_OAUTH_ACME_SCOPES");
        for bad in ["a/b", "Google!", "x,x"] {
            assert!(
                providers(&[("AUTH_OAUTH_PROVIDERS", bad)]).is_err(),
                "{bad} accepted"
            );
        }
    }

    /// A signing key of a made-up provider, and its JWK.
    struct Key {
        kid: &'static str,
        signing: ed25519_dalek::SigningKey,
    }

    impl Key {
        fn new(kid: &'static str) -> Self {
            Self {
                kid,
                signing: ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
            }
        }

        fn jwk(&self) -> serde_json::Value {
            use base64::Engine;
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(self.signing.verifying_key().to_bytes());
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"})
        }

        fn sign(&self, claims: &serde_json::Value) -> String {
            use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey};
            let pem = self.signing.to_pkcs8_pem(LineEnding::LF).expect("pem");
            let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).expect("key");
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            header.kid = Some(self.kid.into());
            jsonwebtoken::encode(&header, claims, &key).expect("signed")
        }
    }

    /// ID tokens are checked (signature, iss, aud/azp, exp, nonce, the
    /// algorithm) and a key the cache lacks is fetched again, at most once a
    /// minute. The provider here is a discovery document and a JWKS served
    /// on a loopback port, so the test can rotate the keys.
    #[tokio::test]
    async fn id_tokens_are_checked_and_a_rotated_key_is_fetched_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;
        let (k1, k2, k3) = (Key::new("k1"), Key::new("k2"), Key::new("k3"));
        let served = Arc::new(Mutex::new(vec![k1.jwk()]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let (s, f, i) = (served.clone(), fetches.clone(), issuer.clone());
        let server = actix_web::HttpServer::new(move || {
            let (s, f, i) = (s.clone(), f.clone(), i.clone());
            actix_web::App::new()
                .route(
                    "/.well-known/openid-configuration",
                    actix_web::web::get().to(move || {
                        let i = i.clone();
                        async move {
                            actix_web::HttpResponse::Ok().json(serde_json::json!({
                                "issuer": i,
                                "authorization_endpoint": format!("{i}/auth"),
                                "token_endpoint": format!("{i}/token"),
                                "jwks_uri": format!("{i}/jwks"),
                            }))
                        }
                    }),
                )
                .route(
                    "/jwks",
                    actix_web::web::get().to(move || {
                        let keys = s.lock().expect("keys").clone();
                        f.fetch_add(1, Ordering::SeqCst);
                        async move {
                            actix_web::HttpResponse::Ok().json(serde_json::json!({"keys": keys}))
                        }
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);

        let settings = ProviderSettings {
            name: "t".into(),
            display_name: "T".into(),
            client_id: "client".into(),
            client_secret: SecretString::from("s"),
            protocol: Protocol::OpenIdConnect {
                issuer: issuer.clone(),
            },
            scopes: vec!["openid".into()],
        };
        let providers = Providers::new(&[settings], Duration::from_secs(5)).expect("providers");
        let p = providers.get("t").expect("provider");
        let now = Utc::now().timestamp();
        let claims = |over: serde_json::Value| {
            let mut c = serde_json::json!({
                "iss": issuer, "aud": "client", "sub": "s1", "iat": now, "exp": now + 300,
                "nonce": "the nonce", "email": "a@example.com", "email_verified": "true",
            });
            for (k, v) in over.as_object().expect("object") {
                if v.is_null() {
                    c.as_object_mut().expect("object").remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            c
        };
        let check = |token: String, nonce: &'static str| {
            let providers = &providers;
            async move {
                providers
                    .checked_claims(p, &token, nonce)
                    .await
                    .map(|(c, _)| c)
            }
        };
        let good = check(k1.sign(&claims(serde_json::json!({}))), "the nonce")
            .await
            .expect("valid");
        assert_eq!((good.sub.as_str(), good.email_verified), ("s1", Some(true)));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        let several_with_azp =
            claims(serde_json::json!({"aud": ["client", "other"], "azp": "client"}));
        assert!(check(k1.sign(&several_with_azp), "the nonce").await.is_ok());
        let forged_payload = {
            let honest = k1.sign(&claims(serde_json::json!({})));
            let other = k1.sign(&claims(serde_json::json!({"sub": "admin"})));
            let parts: Vec<&str> = honest.split('.').collect();
            let other_payload = other.split('.').nth(1).expect("payload");
            format!("{}.{}.{}", parts[0], other_payload, parts[2])
        };
        let hs256 = jsonwebtoken::encode(
            &jsonwebtoken::Header {
                kid: Some("k1".into()),
                ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
            },
            &claims(serde_json::json!({})),
            &jsonwebtoken::EncodingKey::from_secret(b"s"),
        )
        .expect("hs256");
        let refused = [
            (
                "another audience",
                k1.sign(&claims(serde_json::json!({"aud": "other"}))),
                "the nonce",
            ),
            (
                "another issuer",
                k1.sign(&claims(serde_json::json!({"iss": "http://evil.test"}))),
                "the nonce",
            ),
            (
                "another sign-in's nonce",
                k1.sign(&claims(serde_json::json!({}))),
                "other nonce",
            ),
            (
                "no nonce",
                k1.sign(&claims(serde_json::json!({"nonce": null}))),
                "the nonce",
            ),
            (
                "expired",
                k1.sign(&claims(serde_json::json!({"exp": now - 120}))),
                "the nonce",
            ),
            (
                "several audiences, no azp",
                k1.sign(&claims(serde_json::json!({"aud": ["client", "other"]}))),
                "the nonce",
            ),
            (
                "a payload under another token's signature",
                forged_payload,
                "the nonce",
            ),
            ("HS256 keyed by the client secret", hs256, "the nonce"),
            ("not a JWT", "not.a.jwt".to_owned(), "the nonce"),
        ];
        for (what, token, nonce) in refused {
            match check(token, nonce).await {
                Err(ProviderError::InvalidIdToken(_)) => {}
                other => panic!("{what}: {:?}", other.map(|c| c.sub)),
            }
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "known keys come from the cache"
        );

        // The provider rotates: a token by the new key fetches the keys
        // again, once.
        served.lock().expect("keys").push(k2.jwk());
        assert!(check(k2.sign(&claims(serde_json::json!({}))), "the nonce")
            .await
            .is_ok());
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // A made-up key right after: refused without another fetch.
        match check(k3.sign(&claims(serde_json::json!({}))), "the nonce").await {
            Err(ProviderError::InvalidIdToken(_)) => {}
            other => panic!("unknown key: {:?}", other.map(|c| c.sub)),
        }
        assert!(check(k1.sign(&claims(serde_json::json!({}))), "the nonce")
            .await
            .is_ok());
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        handle.stop(false).await;
    }
}
