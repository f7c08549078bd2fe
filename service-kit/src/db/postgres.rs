//! How a PostgreSQL connection is opened: TLS as the URL's `sslmode` and
//! `sslrootcert` ask, the way libpq reads them, over rustls (no OpenSSL).
//!
//! Every PostgreSQL connection of the services goes through [`PgConnector`]:
//! the pool (direct and behind a transaction-mode pooler), migrations, the
//! CLI and the test harness. A connection that fails says what failed in
//! one line (the server does not speak TLS, the certificate does not verify,
//! the host name does not match), because that line is all an operator sees
//! when a service refuses to start.
//!
//! | `sslmode` | TLS | certificate checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` (default) | if the server offers it | no |
//! | `require` | always | no; as `verify-ca` when `sslrootcert` is given (libpq does the same) |
//! | `verify-ca` | always | chain to a trusted root |
//! | `verify-full` | always | chain, and the host name |
//!
//! Trusted roots: the PEM file `sslrootcert` names, or the system's trust
//! store when it is absent or `system` (as libpq 16+ spells it).

use std::sync::Arc;

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// A connection as tokio-postgres opens it, before diesel wraps it.
pub type PgClientConnection = (
    tokio_postgres::Client,
    tokio_postgres::Connection<
        tokio_postgres::Socket,
        <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
    >,
);

/// `sslmode`, as libpq names its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> anyhow::Result<Self> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => anyhow::bail!(
                "database URL: sslmode={other} is not one of disable, allow, prefer, require, \
                 verify-ca, verify-full"
            ),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether a plain connection is refused.
    pub fn requires_tls(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }
}

/// Opens PostgreSQL connections for one URL. Built once per pool, so the
/// root certificates are read (and a bad file reported) at start.
#[derive(Clone)]
pub struct PgConnector {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    mode: SslMode,
    /// Where trusted roots come from, for error messages.
    roots: Arc<str>,
}

impl std::fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password: only the TLS settings are shown.
        f.debug_struct("PgConnector")
            .field("sslmode", &self.mode)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

/// `postgres://host/old?params` with `name` for `old`; the parameters
/// (`sslrootcert=/a/path` among them) stay.
pub fn url_with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (url, String::new()),
    };
    match path
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('/'))
    {
        Some(_) => {
            let base = path.rsplit_once('/').map_or(path, |(b, _)| b);
            Ok(format!("{base}/{name}{query}"))
        }
        None => anyhow::bail!("a PostgreSQL URL must end in /DBNAME"),
    }
}

impl PgConnector {
    /// Reads `sslmode` and `sslrootcert` off `url` (tokio-postgres knows
    /// neither `verify-*` nor `sslrootcert`) and loads the roots they need.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = SslMode::Prefer;
        let mut rootcert: Option<String> = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| anyhow::anyhow!("database URL: {key} is not valid UTF-8"))?;
            match key {
                "sslmode" => mode = SslMode::parse(&decoded)?,
                "sslrootcert" => rootcert = Some(decoded.into_owned()),
                _ => rest.push(pair),
            }
        }
        let plain_url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config: tokio_postgres::Config = plain_url
            .parse()
            .map_err(|e| anyhow::anyhow!("database URL: {e}"))?;
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (check, roots) = match (mode, rootcert.as_deref()) {
            (SslMode::Disable, _) => (Check::Nothing, "none".into()),
            (SslMode::Allow | SslMode::Prefer, _) | (SslMode::Require, None) => {
                (Check::Nothing, "not checked".into())
            }
            (SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull, root) => {
                let (store, described) = load_roots(root)?;
                let check = if mode == SslMode::VerifyFull {
                    Check::Full(
                        WebPkiServerVerifier::builder_with_provider(
                            Arc::new(store),
                            provider.clone(),
                        )
                        .build()
                        .map_err(|e| anyhow::anyhow!("database TLS: {described}: {e}"))?,
                    )
                } else {
                    Check::Chain(Arc::new(store))
                };
                (check, described)
            }
        };
        let verifier = Arc::new(Verifier {
            check,
            algorithms: provider.signature_verification_algorithms,
        });
        let tls_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow::anyhow!("database TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self {
            config,
            tls: MakeRustlsConnect::new(tls_config),
            mode,
            roots: roots.into(),
        })
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// A tokio-postgres client and the connection to drive, or a one-line
    /// reason.
    pub async fn connect_raw(&self) -> Result<PgClientConnection, ConnectionError> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|e| ConnectionError::BadConnection(self.explain(&e)))
    }

    /// A diesel connection (the connection is driven by diesel-async).
    pub async fn establish(&self) -> diesel::ConnectionResult<AsyncPgConnection> {
        let (client, connection) = self.connect_raw().await?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

/// One connection to the database `url` names, TLS as its `sslmode` says:
/// for tools and tests that need a connection outside any pool.
pub async fn establish(url: &str) -> anyhow::Result<AsyncPgConnection> {
    Ok(PgConnector::from_url(url)?.establish().await?)
}

impl PgConnector {
    /// What failed, in one line an operator can act on.
    fn explain(&self, e: &tokio_postgres::Error) -> String {
        let mode = self.mode.as_str();
        let host = self.host();
        if let Some(tls) = rustls_error(e) {
            return match tls {
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => format!(
                    "database TLS: the server's certificate is not valid for host {host} \
                     (sslmode={mode}; connect by a name the certificate lists, or use verify-ca)"
                ),
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. },
                ) => format!("database TLS: the server's certificate has expired (sslmode={mode})"),
                rustls::Error::InvalidCertificate(reason) => format!(
                    "database TLS: the server's certificate does not verify against {} \
                     ({reason:?}; sslmode={mode})",
                    self.roots
                ),
                other => {
                    format!("database TLS: handshake with {host} failed: {other} (sslmode={mode})")
                }
            };
        }
        // tokio-postgres puts the cause (the server's message, or what
        // went wrong in the TLS request) in the error's source.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        if text.contains("server does not support TLS") {
            return format!(
                "database TLS: the server at {host} does not accept TLS connections, but \
                 sslmode={mode} requires TLS"
            );
        }
        if text.contains("no encryption") {
            return format!(
                "database: {text} (the server accepts only TLS connections: set sslmode=require \
                 or stricter)"
            );
        }
        format!("database: {}", text.replace('\n', " "))
    }

    fn host(&self) -> String {
        match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_owned(),
        }
    }
}

/// The rustls error behind a failed handshake, if that is what failed.
fn rustls_error(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(tls);
            }
        }
        source = s.source();
    }
    None
}

/// The trusted roots: the PEM file `sslrootcert` names, or the system's.
fn load_roots(path: Option<&str>) -> anyhow::Result<(RootCertStore, String)> {
    let mut store = RootCertStore::empty();
    match path {
        Some(path) if path != "system" => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("database TLS: sslrootcert={path}: {e}"))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                anyhow::bail!("database TLS: sslrootcert={path} holds no usable certificate");
            }
            Ok((store, format!("sslrootcert={path}")))
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                anyhow::bail!(
                    "database TLS: no sslrootcert and the system trust store is empty \
                     (install ca-certificates or set sslrootcert=PATH)"
                );
            }
            Ok((store, "the system trust store".to_owned()))
        }
    }
}

/// What is checked of the server's certificate.
#[derive(Debug)]
enum Check {
    /// `prefer`/`require`: encrypted, not authenticated (libpq's meaning).
    Nothing,
    /// `verify-ca`: signed by a trusted root, whatever name it carries.
    Chain(Arc<RootCertStore>),
    /// `verify-full`: as a browser would check it.
    Full(Arc<WebPkiServerVerifier>),
}

/// The handshake signatures are always checked: skipping the certificate
/// check must not also skip proof that the server holds its key.
#[derive(Debug)]
struct Verifier {
    check: Check,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.check {
            Check::Nothing => {}
            Check::Chain(roots) => {
                let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_cert_signed_by_trust_anchor(
                    &cert,
                    roots,
                    intermediates,
                    now,
                    self.algorithms.all,
                )?;
            }
            Check::Full(verifier) => {
                verifier.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                )?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_and_the_parameters_kept() {
        let url = "postgres://u@h:5/old?sslmode=verify-full&sslrootcert=/tmp/x/ca.pem";
        assert_eq!(
            url_with_database(url, "new").expect("url"),
            "postgres://u@h:5/new?sslmode=verify-full&sslrootcert=/tmp/x/ca.pem"
        );
        assert!(url_with_database("postgres://u@h:5", "new").is_err());
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_off_the_url() {
        let c = PgConnector::from_url(
            "postgres://u:p@db.example.com:5432/app?sslmode=disable&application_name=x",
        )
        .expect("parses");
        assert_eq!(c.mode(), SslMode::Disable);
        assert_eq!(c.host(), "db.example.com");
        assert_eq!(c.config.get_application_name(), Some("x"));
        let c = PgConnector::from_url("postgres://u@h/app").expect("parses");
        assert_eq!(c.mode(), SslMode::Prefer, "libpq's default");
    }

    #[test]
    fn a_bad_sslmode_or_root_file_is_one_clear_line() {
        let e = PgConnector::from_url("postgres://u@h/app?sslmode=verify_full")
            .expect_err("unknown mode")
            .to_string();
        assert!(e.contains("sslmode=verify_full is not one of"), "{e}");
        let e = PgConnector::from_url(
            "postgres://u@h/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .expect_err("missing file")
        .to_string();
        assert!(e.contains("sslrootcert=/nonexistent/ca.pem"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let dir = std::env::temp_dir().join(format!("kit-ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = PgConnector::from_url(&format!(
            "postgres://u@h/app?sslmode=verify-ca&sslrootcert={}",
            empty.display()
        ))
        .expect_err("no certificate")
        .to_string();
        assert!(e.contains("holds no usable certificate"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
