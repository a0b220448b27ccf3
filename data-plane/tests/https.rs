//! The HTTPS listener over real loopback sockets: certificates made by rcgen at test time,
//! a hyper backend, tokio-rustls clients trusting the test CA, snapshots applied straight
//! to the store (no control plane).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, STRICT_TRANSPORT_SECURITY};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_data_plane::apply::Applier;
use portcullis_data_plane::cache::SnapshotCache;
use portcullis_data_plane::request::PublicPorts;
use portcullis_data_plane::store::ConfigStore;
use portcullis_data_plane::upstream::ClientCache;
use portcullis_data_plane::{server, tls};
use portcullis_proto::v1 as pb;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, aws_lc_rs};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, ProtocolVersion, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

// === certificates ===

/// A test CA that signs leaf certificates.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf as the snapshot carries it, and its DER to compare with what a client sees.
struct Leaf {
    wire: pb::TlsCertificate,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Portcullis test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { ca })
    }

    fn leaf(&self, name: &str, domains: &[&str]) -> Result<Leaf> {
        let key = KeyPair::generate()?;
        let domains: Vec<String> = domains.iter().map(|d| (*d).to_owned()).collect();
        let cert = CertificateParams::new(domains.clone())?.signed_by(&key, &*self.ca)?;
        Ok(Leaf {
            der: cert.der().clone(),
            wire: pb::TlsCertificate {
                name: name.into(),
                domains,
                cert_chain_pem: format!("{}{}", cert.pem(), self.ca.pem()),
                private_key_pem: key.serialize_pem(),
            },
        })
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone())?;
        Ok(roots)
    }
}

/// An RFC 8737 challenge certificate (self-signed, critical `acmeIdentifier`).
fn challenge(domain: &str) -> Result<(pb::AcmeTlsAlpnChallenge, CertificateDer<'static>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![domain.to_owned()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(&[1; 32])];
    let cert = params.self_signed(&key)?;
    let wire = pb::AcmeTlsAlpnChallenge {
        domain: domain.into(),
        cert_pem: cert.pem(),
        private_key_pem: key.serialize_pem(),
    };
    Ok((wire, cert.der().clone()))
}

// === data plane under test ===

async fn backend(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut lines = vec![format!("uri={}", req.uri())];
    for (k, v) in req.headers() {
        lines.push(format!("{k}={}", v.to_str().unwrap_or("?")));
    }
    Ok(Response::new(Full::new(Bytes::from(lines.join("\n")))))
}

async fn start_backend() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(backend)),
            );
        }
    });
    Ok(addr)
}

fn proxy(host: &str, backend: SocketAddr) -> pb::ProxyTarget {
    pb::ProxyTarget {
        hostname: host.into(),
        target_url: format!("http://{backend}"),
        enabled: true,
        enable_http: true,
        enable_https: true,
        ..Default::default()
    }
}

/// `app.test` names certificate "app" and sends HSTS; `*.wild.test` relies on a covering
/// certificate; `redirect.test` is HTTPS-only with a redirect; `plain.test` is HTTP-only.
fn snapshot(
    version: u64,
    backend: SocketAddr,
    certs: Vec<pb::TlsCertificate>,
) -> pb::ConfigSnapshot {
    let mut app = proxy("app.test", backend);
    app.certificate_name = "app".into();
    app.hsts = Some(pb::HstsPolicy {
        max_age_secs: 600,
        include_subdomains: true,
        preload: false,
    });
    let mut redirect = proxy("redirect.test", backend);
    redirect.enable_http = false;
    redirect.redirect_http_to_https = true;
    let mut plain = proxy("plain.test", backend);
    plain.enable_https = false;
    pb::ConfigSnapshot {
        version,
        proxies: vec![app, proxy("*.wild.test", backend), redirect, plain],
        certificates: certs,
        acme_http01: vec![pb::AcmeHttp01Challenge {
            token: "tok_1".into(),
            key_authorization: "tok_1.thumbprint".into(),
        }],
        ..Default::default()
    }
}

struct DataPlane {
    applier: Applier,
    http: SocketAddr,
    https: SocketAddr,
    _cache: tempfile::TempDir,
}

async fn start(snapshot: pb::ConfigSnapshot) -> Result<DataPlane> {
    let cache = tempfile::tempdir()?;
    let store = Arc::new(ConfigStore::default());
    let clients = Arc::new(ClientCache::with_roots(RootCertStore::empty()));
    let applier = Applier::new(
        store.clone(),
        clients,
        SnapshotCache::new(cache.path(), "token"),
    );
    applier.apply(snapshot).await?;
    let https_listener = TcpListener::bind("127.0.0.1:0").await?;
    let https = https_listener.local_addr()?;
    let http_listener = TcpListener::bind("127.0.0.1:0").await?;
    let http = http_listener.local_addr()?;
    let config = server::tls_config(store.clone())?;
    tokio::spawn(server::serve_https(
        https_listener,
        store.clone(),
        config,
        https.port(),
    ));
    tokio::spawn(server::serve_http(
        http_listener,
        store,
        PublicPorts {
            https: https.port(),
            ..PublicPorts::default()
        },
    ));
    Ok(DataPlane {
        applier,
        http,
        https,
        _cache: cache,
    })
}

// === clients ===

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// A client trusting `roots`. Session resumption is off so that every connection is a
/// full handshake and shows the certificate the server picks now.
fn connector(roots: RootCertStore, alpn: &[&[u8]]) -> Result<TlsConnector> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::disabled();
    Ok(TlsConnector::from(Arc::new(config)))
}

async fn connect(tls: &TlsConnector, addr: SocketAddr, sni: &str) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned())?;
    Ok(tls.connect(name, tcp).await?)
}

fn peer_leaf(tls: &TlsStream<TcpStream>) -> Option<CertificateDer<'static>> {
    Some(tls.get_ref().1.peer_certificates()?.first()?.clone())
}

type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn h1<T>(io: T) -> Result<H1>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn get(sender: &mut H1, host: &str, path: &str) -> Result<(StatusCode, HeaderMap, String)> {
    let req = Request::get(path)
        .header("host", host)
        .body(Full::default())?;
    read(sender.send_request(req).await?).await
}

async fn read(resp: Response<Incoming>) -> Result<(StatusCode, HeaderMap, String)> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

fn header(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn has_line(body: &str, line: &str) -> bool {
    body.lines().any(|l| l == line)
}

// === tests ===

#[tokio::test]
async fn serves_http1_and_h2_with_the_certificate_for_each_sni() -> Result<()> {
    let pki = Pki::new()?;
    let app = pki.leaf("app", &["app.test"])?;
    let wild = pki.leaf("wild", &["*.wild.test"])?;
    let backend = start_backend().await?;
    let dp = start(snapshot(
        1,
        backend,
        vec![app.wire.clone(), wild.wire.clone()],
    ))
    .await?;

    // HTTP/1.1, SNI → the proxy's named certificate; HSTS and X-Forwarded-Proto: https.
    let client = connector(pki.roots()?, &[b"http/1.1"])?;
    let stream = connect(&client, dp.https, "app.test").await?;
    assert_eq!(peer_leaf(&stream), Some(app.der.clone()));
    let mut sender = h1(stream).await?;
    let (status, headers, body) = get(&mut sender, "app.test", "/x?y=1").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("uri=/x?y=1") && has_line(&body, "x-forwarded-proto=https"),
        "{body}"
    );
    assert_eq!(
        header(&headers, STRICT_TRANSPORT_SECURITY),
        Some("max-age=600; includeSubDomains")
    );
    // A host that is HTTP-only is unknown here, whatever certificate the client got.
    let (status, _, _) = get(&mut sender, "plain.test", "/").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // h2 by ALPN, SNI under a wildcard → the covering wildcard certificate, no HSTS.
    let client = connector(pki.roots()?, &[b"h2", b"http/1.1"])?;
    let stream = connect(&client, dp.https, "a.wild.test").await?;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(peer_leaf(&stream), Some(wild.der.clone()));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get("https://a.wild.test/h2").body(Full::<Bytes>::default())?;
    let (status, headers, body) = read(sender.send_request(req).await?).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(has_line(&body, "x-forwarded-proto=https"), "{body}");
    assert!(headers.get(STRICT_TRANSPORT_SECURITY).is_none());

    // TLS 1.2 is offered too.
    let mut tls12 = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .with_root_certificates(pki.roots()?)
        .with_no_client_auth();
    tls12.alpn_protocols = vec![b"http/1.1".to_vec()];
    let stream = connect(&TlsConnector::from(Arc::new(tls12)), dp.https, "app.test").await?;
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );

    // Unknown SNI, and no SNI at all: no default certificate, so the handshake fails.
    let client = connector(pki.roots()?, &[b"http/1.1"])?;
    assert!(connect(&client, dp.https, "unknown.test").await.is_err());
    assert!(connect(&client, dp.https, "127.0.0.1").await.is_err());
    Ok(())
}

#[tokio::test]
async fn new_snapshots_change_new_handshakes_only() -> Result<()> {
    let pki = Pki::new()?;
    let app = pki.leaf("app", &["app.test"])?;
    let renewed = pki.leaf("app", &["app.test"])?;
    let backend = start_backend().await?;
    let dp = start(snapshot(1, backend, vec![app.wire.clone()])).await?;
    let client = connector(pki.roots()?, &[b"http/1.1"])?;

    let old = connect(&client, dp.https, "app.test").await?;
    assert_eq!(peer_leaf(&old), Some(app.der.clone()));
    let mut old = h1(old).await?;
    assert_eq!(get(&mut old, "app.test", "/").await?.0, StatusCode::OK);

    // A renewal whose key does not match is refused; the old certificate keeps serving.
    let mut broken = renewed.wire.clone();
    broken.private_key_pem = app.wire.private_key_pem.clone();
    let error = dp
        .applier
        .apply(snapshot(2, backend, vec![broken]))
        .await
        .err()
        .context("a mismatched key must be rejected")?;
    assert!(error.to_string().contains("certificate \"app\""), "{error}");
    let stream = connect(&client, dp.https, "app.test").await?;
    assert_eq!(peer_leaf(&stream), Some(app.der.clone()));

    // A good renewal: new handshakes see it at once...
    assert_eq!(
        dp.applier
            .apply(snapshot(3, backend, vec![renewed.wire.clone()]))
            .await?,
        3
    );
    let stream = connect(&client, dp.https, "app.test").await?;
    assert_eq!(peer_leaf(&stream), Some(renewed.der.clone()));
    // ...and the connection opened before the swap is still served.
    let (status, _, body) = get(&mut old, "app.test", "/after").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("uri=/after"), "{body}");
    Ok(())
}

#[tokio::test]
async fn acme_tls_alpn_handshakes_get_the_challenge_and_are_closed() -> Result<()> {
    let backend = start_backend().await?;
    let pki = Pki::new()?;
    let app = pki.leaf("app", &["app.test"])?;
    let (wire, challenge_der) = challenge("acme.test")?;
    let mut snap = snapshot(1, backend, vec![app.wire]);
    snap.acme_tls_alpn01 = vec![wire];
    let dp = start(snap).await?;

    // Like an ACME server: offer only acme-tls/1 and inspect the certificate yourself.
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
        .with_no_client_auth();
    config.alpn_protocols = vec![tls::ACME_TLS_ALPN.to_vec()];
    let validator = TlsConnector::from(Arc::new(config));

    let mut stream = connect(&validator, dp.https, "acme.test").await?;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(tls::ACME_TLS_ALPN));
    assert_eq!(peer_leaf(&stream), Some(challenge_der));
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await?;
    assert!(
        matches!(read, Ok(0)),
        "server must close without serving: {read:?}"
    );

    // acme-tls/1 for a name without a pending challenge: no certificate at all, even
    // though app.test has a regular one.
    assert!(connect(&validator, dp.https, "app.test").await.is_err());
    Ok(())
}

#[tokio::test]
async fn http_listener_answers_acme_and_redirects() -> Result<()> {
    let backend = start_backend().await?;
    let app = Pki::new()?.leaf("app", &["app.test"])?;
    let dp = start(snapshot(1, backend, vec![app.wire])).await?;
    let mut http = h1(TcpStream::connect(dp.http).await?).await?;

    // HTTP-01: any Host, even one that redirects or is unknown.
    for host in ["redirect.test", "nobody.test"] {
        let (status, headers, body) =
            get(&mut http, host, "/.well-known/acme-challenge/tok_1").await?;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "tok_1.thumbprint")
        );
        assert!(header(&headers, CONTENT_TYPE).is_some_and(|v| v.starts_with("text/plain")));
    }
    let (status, _, _) = get(&mut http, "app.test", "/.well-known/acme-challenge/nope").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Redirect: host without its port, the listener's non-443 port, path and query kept.
    let (status, headers, _) = get(&mut http, "Redirect.test:8080", "/p/q?x=1").await?;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    let expected = format!("https://redirect.test:{}/p/q?x=1", dp.https.port());
    assert_eq!(header(&headers, LOCATION), Some(expected.as_str()));

    // Served over plain HTTP: proxied, with X-Forwarded-Proto: http and no HSTS.
    let (status, headers, body) = get(&mut http, "app.test", "/").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(has_line(&body, "x-forwarded-proto=http"), "{body}");
    assert!(headers.get(STRICT_TRANSPORT_SECURITY).is_none());
    Ok(())
}

/// The binary itself: `--https-listen` and `--https-public-port` wired up, serving a
/// cached snapshot while the control plane is unreachable.
#[tokio::test]
async fn binary_serves_https_from_its_cached_snapshot() -> Result<()> {
    use tokio::io::AsyncBufReadExt;

    let pki = Pki::new()?;
    let app = pki.leaf("app", &["app.test"])?;
    let backend = start_backend().await?;
    let cache = tempfile::tempdir()?;
    // Sealed under the token the binary is started with below.
    let snapshot_cache = SnapshotCache::new(cache.path(), "t");
    snapshot_cache.ensure_dir()?;
    snapshot_cache.write(&prost::Message::encode_to_vec(&snapshot(
        1,
        backend,
        vec![app.wire],
    )))?;
    let unreachable = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis-data-plane"))
        .args(["--control-plane", &format!("http://{unreachable}")])
        .args(["--enrolment-token", "t", "--node-id", "dp-test"])
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--https-listen",
            "127.0.0.1:0",
            "--https-public-port",
            "8443",
        ])
        .arg("--cache-dir")
        .arg(cache.path())
        .env("PORTCULLIS_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::BufReader::new(stdout).read_line(&mut line),
    )
    .await??;
    let addr = |key: &str| -> Result<SocketAddr> {
        let prefix = format!("{key}=");
        let word = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(prefix.as_str()));
        Ok(word
            .with_context(|| format!("no {key} in {line:?}"))?
            .parse()?)
    };
    let (http, https) = (addr("http")?, addr("https")?);

    let client = connector(pki.roots()?, &[b"http/1.1"])?;
    let stream = connect(&client, https, "app.test").await?;
    assert_eq!(peer_leaf(&stream), Some(app.der));
    let (status, _, body) = get(&mut h1(stream).await?, "app.test", "/").await?;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut plain = h1(TcpStream::connect(http).await?).await?;
    let (status, headers, _) = get(&mut plain, "redirect.test", "/r").await?;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        header(&headers, LOCATION),
        Some("https://redirect.test:8443/r")
    );
    child.kill().await?;
    Ok(())
}

/// Accepts any certificate and handshake signature. An ACME validator inspects the
/// certificate itself; webpki (behind rustls' signature helpers) cannot even parse one
/// with the critical `acmeIdentifier` extension. Test-only.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
