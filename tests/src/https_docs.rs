//! A small HTTPS server on loopback that serves fixed documents (Client ID Metadata
//! Documents in the OAuth tests), with a self-signed certificate for `localhost` and
//! `127.0.0.1` whose PEM the control plane is told to trust.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// One document: body and `Cache-Control`.
#[derive(Clone, Debug)]
pub struct Doc {
    /// Response body (JSON).
    pub body: String,
    /// `Cache-Control` value, if any.
    pub cache_control: Option<String>,
}

type Docs = Arc<Mutex<HashMap<String, Doc>>>;

/// A running server; stops when dropped.
pub struct HttpsDocs {
    /// `https://localhost:PORT`.
    pub origin: String,
    /// PEM file of the self-signed certificate (pass to `--oauth-upstream-ca`).
    pub ca_pem: PathBuf,
    docs: Docs,
    hits: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for HttpsDocs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsDocs {
    /// Binds a free loopback port and starts serving (nothing yet: every path is 404).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params")
                .self_signed(&key)
                .expect("cert");
        let ca_pem = dir.path().join("docs-ca.pem");
        std::fs::write(&ca_pem, cert.pem()).expect("write CA");
        let chain = vec![cert.der().clone()];
        let private =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("private key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let docs: Docs = Arc::default();
        let hits: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>> = Arc::default();
        let (d, h) = (docs.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, d, h) = (acceptor.clone(), d.clone(), h.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (d, h) = (d.clone(), h.clone());
                            async move { Ok::<_, Infallible>(serve(&d, &h, req.uri().path())) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Self {
            origin: format!("https://localhost:{port}"),
            ca_pem,
            docs,
            hits,
            task,
            _dir: dir,
        }
    }

    /// Serves `doc` at `path` (replacing what was there).
    pub fn put(&self, path: &str, doc: Doc) {
        self.docs.lock().expect("docs").insert(path.to_owned(), doc);
    }

    /// How many times `path` was fetched.
    pub fn hits(&self, path: &str) -> u64 {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

fn serve(
    docs: &Docs,
    hits: &Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
    path: &str,
) -> Response<Full<Bytes>> {
    if let Ok(mut h) = hits.lock() {
        h.entry(path.to_owned())
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }
    let doc = docs.lock().ok().and_then(|d| d.get(path).cloned());
    let mut resp = Response::new(Full::new(Bytes::from(
        doc.as_ref().map(|d| d.body.clone()).unwrap_or_default(),
    )));
    match doc {
        None => *resp.status_mut() = hyper::StatusCode::NOT_FOUND,
        Some(d) => {
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            if let Some(cc) = d.cache_control.and_then(|c| c.parse().ok()) {
                resp.headers_mut().insert(hyper::header::CACHE_CONTROL, cc);
            }
        }
    }
    resp
}
