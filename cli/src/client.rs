//! Connecting to the control plane: URL checks, TLS, and the bearer-token interceptor.

use std::time::Duration;

use portcullis_proto::v1::admin_service_client::AdminServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};
use tonic::{Request, Status};

use crate::config::Settings;
use crate::error::{CliError, error_chain};

/// How long to wait for TCP + TLS + HTTP/2 setup before declaring the control plane unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for one RPC; every admin call is a small unary request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The AdminService client every command uses.
pub(crate) type AdminClient = AdminServiceClient<InterceptedService<Channel, BearerAuth>>;
/// The OAuthAdminService client, on the same connection.
pub(crate) type OAuthClient =
    portcullis_proto::v1::o_auth_admin_service_client::OAuthAdminServiceClient<
        InterceptedService<Channel, BearerAuth>,
    >;

/// Adds `authorization: Bearer <token>` to every call when a token is configured.
#[derive(Clone)]
pub(crate) struct BearerAuth(Option<MetadataValue<Ascii>>);

impl BearerAuth {
    /// Builds the header once; a token that cannot be a header value is a usage error
    /// (reported without echoing the token).
    pub(crate) fn new(token: Option<&str>) -> Result<Self, CliError> {
        let Some(token) = token else {
            return Ok(Self(None));
        };
        let mut value: MetadataValue<Ascii> =
            format!("Bearer {}", token.trim()).parse().map_err(|_| {
                CliError::Usage(
                    "the token contains characters that are not allowed in a header".into(),
                )
            })?;
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects eagerly, so an unreachable control plane is reported as such (exit 3)
/// rather than as a failed call.
pub(crate) async fn connect(settings: &Settings) -> Result<(AdminClient, OAuthClient), CliError> {
    let auth = BearerAuth::new(settings.token.as_ref().map(|t| t.expose()))?;
    let endpoint = endpoint(settings)?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| CliError::Unreachable {
            url: settings.url.clone(),
            detail: error_chain(&e),
        })?;
    Ok((
        AdminServiceClient::with_interceptor(channel.clone(), auth.clone()),
        portcullis_proto::v1::o_auth_admin_service_client::OAuthAdminServiceClient::with_interceptor(
            channel, auth,
        ),
    ))
}

/// Validates the URL and configures TLS for `https`: the `--ca-cert` bundle when
/// given, the system trust store otherwise. `--ca-cert` is ignored for `http` URLs so a
/// config-file CA does not break a one-off `--url http://...`.
pub(crate) fn endpoint(settings: &Settings) -> Result<Endpoint, CliError> {
    let uri = parse_url(&settings.url)?;
    let https = uri.scheme_str() == Some("https");
    let mut endpoint = Endpoint::from(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    if https {
        let tls = match &settings.ca_cert {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    CliError::Usage(format!(
                        "cannot read CA certificate {}: {e}",
                        path.display()
                    ))
                })?;
                if !pem.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(CliError::Usage(format!(
                        "no PEM certificate found in {}",
                        path.display()
                    )));
                }
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem))
            }
            None => ClientTlsConfig::new().with_native_roots(),
        };
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| CliError::Usage(format!("invalid TLS settings: {}", error_chain(&e))))?;
    }
    Ok(endpoint)
}

/// Accepts only absolute `http://` / `https://` URLs with a host.
fn parse_url(url: &str) -> Result<Uri, CliError> {
    let invalid = |why: &str| CliError::Usage(format!("invalid control plane URL {url:?}: {why}"));
    let uri: Uri = url.trim().parse().map_err(|_| invalid("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return Err(invalid("scheme must be http or https")),
        None => return Err(invalid("expected http://HOST:PORT or https://HOST:PORT")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("missing host"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, ca: Option<&str>) -> Settings {
        Settings {
            url: url.into(),
            token: None,
            ca_cert: ca.map(Into::into),
        }
    }

    #[test]
    fn url_validation() {
        assert!(parse_url("http://127.0.0.1:9090").is_ok());
        assert!(parse_url("https://cp.example").is_ok());
        for bad in ["127.0.0.1:9090", "ftp://x", "not a url", ""] {
            assert!(matches!(parse_url(bad), Err(CliError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn ca_cert_problems_are_usage_errors() -> Result<(), Box<dyn std::error::Error>> {
        let missing = endpoint(&settings("https://cp:1", Some("/nonexistent/ca.pem")));
        assert!(matches!(missing, Err(CliError::Usage(m)) if m.contains("cannot read CA")));
        let dir = tempfile::tempdir()?;
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello")?;
        let junk = endpoint(&settings("https://cp:1", junk.to_str()));
        assert!(matches!(junk, Err(CliError::Usage(m)) if m.contains("no PEM certificate")));
        // Ignored for plain http.
        assert!(endpoint(&settings("http://cp:1", Some("/nonexistent/ca.pem"))).is_ok());
        Ok(())
    }

    #[test]
    fn bearer_header_is_added_and_sensitive() -> Result<(), Box<dyn std::error::Error>> {
        let mut auth = BearerAuth::new(Some("abc"))?;
        let req = auth.call(Request::new(()))?;
        let value = req.metadata().get("authorization").ok_or("no header")?;
        assert_eq!(value.to_str()?, "Bearer abc");
        assert!(value.is_sensitive());
        let mut none = BearerAuth::new(None)?;
        assert!(
            none.call(Request::new(()))?
                .metadata()
                .get("authorization")
                .is_none()
        );
        assert!(matches!(
            BearerAuth::new(Some("a\nb")),
            Err(CliError::Usage(_))
        ));
        Ok(())
    }
}
