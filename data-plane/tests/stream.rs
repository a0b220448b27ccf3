//! The config stream client against a fake control plane in this process: a real tonic
//! server implementing `ConfigService`, whose test controls each session (what it sends,
//! when it ends) and reads what the data plane answers (Hello, ACK, NACK). No control-plane
//! process, no proxy listener: NACK, superseded compiles, reconnects and cache start-up
//! in well under a second each.
//!
//! Uses only the data plane's public API: `stream::ControlPlane`, `apply::Applier`,
//! `store::ConfigStore`, `cache::SnapshotCache`, `upstream::ClientCache`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use pb::config_service_server::{ConfigService, ConfigServiceServer};
use pb::data_plane_message::Kind;
use portcullis_data_plane::apply::Applier;
use portcullis_data_plane::cache::SnapshotCache;
use portcullis_data_plane::store::ConfigStore;
use portcullis_data_plane::stream::ControlPlane;
use portcullis_data_plane::upstream::ClientCache;
use portcullis_proto::v1 as pb;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

const TOKEN: &str = "enrolment-token";
const WAIT: Duration = Duration::from_secs(20);

/// One `StreamConfig` call as the fake control plane sees it.
struct Session {
    /// The `authorization` metadata the data plane sent.
    authorization: Option<String>,
    inbound: Streaming<pb::DataPlaneMessage>,
    /// Snapshots (or a status that ends the stream) to send; dropping it ends the stream.
    outbound: mpsc::Sender<Result<pb::ConfigSnapshot, Status>>,
}

impl Session {
    /// The next message from the data plane.
    async fn next(&mut self) -> Result<Kind> {
        let message = tokio::time::timeout(WAIT, self.inbound.message())
            .await
            .context("no message from the data plane within 20 s")??
            .context("the data plane closed the stream")?;
        message.kind.context("a message without a kind")
    }

    async fn hello(&mut self) -> Result<pb::Hello> {
        match self.next().await? {
            Kind::Hello(hello) => Ok(hello),
            other => bail!("expected Hello first, got {other:?}"),
        }
    }

    async fn send(&self, snapshot: pb::ConfigSnapshot) -> Result<()> {
        self.outbound
            .send(Ok(snapshot))
            .await
            .context("the session is gone")
    }
}

/// The fake `ConfigService`: hands every new session to the test.
struct FakeControlPlane {
    sessions: mpsc::UnboundedSender<Session>,
}

#[tonic::async_trait]
impl ConfigService for FakeControlPlane {
    type StreamConfigStream = ReceiverStream<Result<pb::ConfigSnapshot, Status>>;

    async fn stream_config(
        &self,
        request: Request<Streaming<pb::DataPlaneMessage>>,
    ) -> Result<Response<Self::StreamConfigStream>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (outbound, rx) = mpsc::channel(8);
        let session = Session {
            authorization,
            inbound: request.into_inner(),
            outbound,
        };
        self.sessions
            .send(session)
            .map_err(|_| Status::unavailable("test over"))?;
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A running fake control plane and the sessions data planes open on it.
struct Fake {
    addr: SocketAddr,
    sessions: mpsc::UnboundedReceiver<Session>,
    server: tokio::task::JoinHandle<()>,
}

impl Fake {
    async fn start() -> Result<Self> {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await?)
    }

    fn start_on(listener: TcpListener) -> Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, sessions) = mpsc::unbounded_channel();
        let service = ConfigServiceServer::new(FakeControlPlane { sessions: tx });
        let server = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Ok(Self {
            addr,
            sessions,
            server,
        })
    }

    /// The next session a data plane opens.
    async fn session(&mut self) -> Result<Session> {
        tokio::time::timeout(WAIT, self.sessions.recv())
            .await
            .context("no session within 20 s")?
            .context("the fake server stopped")
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A data plane's config side: the store it serves from, fed by the stream client.
struct DataPlane {
    store: Arc<ConfigStore>,
    cache: SnapshotCache,
    dir: tempfile::TempDir,
    stream: Option<tokio::task::JoinHandle<()>>,
}

impl DataPlane {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let cache = SnapshotCache::new(dir.path(), TOKEN);
        cache.ensure_dir()?;
        Ok(Self {
            store: Arc::default(),
            cache,
            dir,
            stream: None,
        })
    }

    fn applier(&self) -> Arc<Applier> {
        Arc::new(Applier::new(
            self.store.clone(),
            Arc::new(ClientCache::with_roots(rustls::RootCertStore::empty())),
            self.cache.clone(),
        ))
    }

    /// Starts the stream client against `addr`, with a short reconnect backoff.
    fn connect(&mut self, addr: SocketAddr, applier: Arc<Applier>) -> Result<()> {
        self.connect_all(&[addr], applier)
    }

    /// Starts the stream client against several control planes, in this order.
    fn connect_all(&mut self, addrs: &[SocketAddr], applier: Arc<Applier>) -> Result<()> {
        let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
        let cp = ControlPlane::new(
            &urls,
            None,
            TOKEN,
            "dp-test".to_owned(),
            "127.0.0.1:8080".to_owned(),
        )?
        .with_public_ports(8080, 0)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(50));
        self.stream = Some(tokio::spawn(cp.run(applier)));
        Ok(())
    }

    /// The version the cache holds, if any.
    fn cached_version(&self) -> Result<Option<u64>> {
        Ok(match self.cache.read()? {
            Some(bytes) => Some(pb::ConfigSnapshot::decode(bytes.as_slice())?.version),
            None => None,
        })
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.abort();
        }
    }
}

fn proxy(hostname: &str) -> pb::ProxyTarget {
    pb::ProxyTarget {
        hostname: hostname.to_owned(),
        target_url: "http://127.0.0.1:9".to_owned(),
        enabled: true,
        enable_http: true,
        ..Default::default()
    }
}

fn snapshot(version: u64, proxies: Vec<pb::ProxyTarget>) -> pb::ConfigSnapshot {
    pb::ConfigSnapshot {
        version,
        proxies,
        ..Default::default()
    }
}

/// Polls until `f` holds, for at most 20 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) -> Result<()> {
    let start = std::time::Instant::now();
    while !f() {
        if start.elapsed() > WAIT {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tokio::test]
async fn hello_then_ack_then_nack_for_an_invalid_snapshot_keeping_the_previous_one() -> Result<()> {
    let mut fake = Fake::start().await?;
    let mut dp = DataPlane::new()?;
    dp.connect(fake.addr, dp.applier())?;
    let mut session = fake.session().await?;
    assert_eq!(
        session.authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let hello = session.hello().await?;
    assert_eq!(hello.node_id, "dp-test");
    assert_eq!(hello.serving_version, 0, "nothing served yet");
    assert_eq!(hello.http_public_port, 8080);

    session.send(snapshot(1, vec![proxy("app.test")])).await?;
    assert_eq!(session.next().await?, Kind::Ack(pb::Ack { version: 1 }));
    assert_eq!(dp.store.version(), Some(1));

    session.send(snapshot(2, vec![proxy("bad_host")])).await?;
    match session.next().await? {
        Kind::Nack(nack) => {
            assert_eq!(nack.version, 2);
            assert!(nack.error.contains("hostname"), "{}", nack.error);
        }
        other => bail!("expected a NACK for version 2, got {other:?}"),
    }
    assert_eq!(
        dp.store.version(),
        Some(1),
        "the invalid snapshot replaced the good one"
    );
    until("version 1 cached", || {
        matches!(dp.cached_version(), Ok(Some(1)))
    })
    .await?;

    // Still the same session: the next good snapshot is taken.
    session
        .send(snapshot(3, vec![proxy("app.test"), proxy("b.test")]))
        .await?;
    assert_eq!(session.next().await?, Kind::Ack(pb::Ack { version: 3 }));
    assert_eq!(dp.store.version(), Some(3));
    Ok(())
}

/// A snapshot superseded by a newer one before it is served is never answered: either it
/// is replaced while it waits, or its compile is given up (`GIVE_UP_WINDOW`) when the
/// newer one arrives; only the newer one is ACKed and cached. (Which of the two happens
/// depends on timing; the session's unit tests pin each down.)
#[tokio::test]
async fn a_superseded_snapshot_is_not_answered() -> Result<()> {
    let mut fake = Fake::start().await?;
    let mut dp = DataPlane::new()?;
    dp.connect(fake.addr, dp.applier())?;
    let mut session = fake.session().await?;
    session.hello().await?;
    // A compile may be given up within a second of the last apply: start that second now.
    session.send(snapshot(1, vec![proxy("app.test")])).await?;
    assert_eq!(session.next().await?, Kind::Ack(pb::Ack { version: 1 }));
    // 5,000 proxies compile for tens of milliseconds; version 3 is right behind on the wire.
    let large = (0..5_000).map(|i| proxy(&format!("p{i}.test"))).collect();
    session.send(snapshot(2, large)).await?;
    session.send(snapshot(3, vec![proxy("app.test")])).await?;
    assert_eq!(
        session.next().await?,
        Kind::Ack(pb::Ack { version: 3 }),
        "version 2 was answered although version 3 arrived before it was served"
    );
    assert_eq!(dp.store.version(), Some(3));
    until("version 3 cached", || {
        matches!(dp.cached_version(), Ok(Some(3)))
    })
    .await?;
    Ok(())
}

/// When the control plane ends the stream (an error status or a clean close), the data plane
/// keeps serving and reconnects, announcing the version it serves.
#[tokio::test]
async fn reconnects_after_the_stream_ends_and_announces_what_it_serves() -> Result<()> {
    let mut fake = Fake::start().await?;
    let mut dp = DataPlane::new()?;
    dp.connect(fake.addr, dp.applier())?;
    let mut session = fake.session().await?;
    session.hello().await?;
    session.send(snapshot(1, vec![proxy("app.test")])).await?;
    assert_eq!(session.next().await?, Kind::Ack(pb::Ack { version: 1 }));

    session
        .outbound
        .send(Err(Status::unavailable("control plane restarting")))
        .await?;
    drop(session);
    let mut second = fake.session().await?;
    assert_eq!(second.hello().await?.serving_version, 1);
    assert_eq!(
        dp.store.version(),
        Some(1),
        "kept serving while reconnecting"
    );
    second.send(snapshot(2, vec![proxy("app.test")])).await?;
    assert_eq!(second.next().await?, Kind::Ack(pb::Ack { version: 2 }));

    // A clean close: the same.
    drop(second);
    let mut third = fake.session().await?;
    assert_eq!(third.hello().await?.serving_version, 2);
    // The version it already serves is ACKed without a recompile.
    third.send(snapshot(2, vec![proxy("app.test")])).await?;
    assert_eq!(third.next().await?, Kind::Ack(pb::Ack { version: 2 }));
    Ok(())
}

/// Two control planes: the data plane streams from the first, moves to the second when the
/// first goes away (serving what it had meanwhile), refuses a snapshot older than the one it
/// serves from a control plane that lags, and takes the next newer one.
#[tokio::test]
async fn moves_to_the_next_control_plane_and_never_goes_back_in_version() -> Result<()> {
    let mut first = Fake::start().await?;
    let mut second = Fake::start().await?;
    let mut dp = DataPlane::new()?;
    dp.connect_all(&[first.addr, second.addr], dp.applier())?;
    let mut session = first.session().await?;
    session.hello().await?;
    session.send(snapshot(5, vec![proxy("five.test")])).await?;
    assert_eq!(session.next().await?, Kind::Ack(pb::Ack { version: 5 }));

    // The first control plane dies: its stream breaks and it no longer accepts connections.
    first.server.abort();
    drop(session);
    let mut moved = second.session().await?;
    assert_eq!(moved.hello().await?.serving_version, 5);
    assert_eq!(dp.store.version(), Some(5), "kept serving meanwhile");

    // A lagging control plane's older snapshot is refused and not applied.
    moved.send(snapshot(3, vec![proxy("three.test")])).await?;
    match moved.next().await? {
        Kind::Nack(nack) => {
            assert_eq!(nack.version, 3);
            assert!(
                nack.error.contains("older than version 5"),
                "{}",
                nack.error
            );
        }
        other => bail!("expected a NACK for the older version, got {other:?}"),
    }
    assert_eq!(dp.store.version(), Some(5));
    assert_eq!(dp.cached_version()?, Some(5));
    moved.send(snapshot(6, vec![proxy("six.test")])).await?;
    assert_eq!(moved.next().await?, Kind::Ack(pb::Ack { version: 6 }));
    assert_eq!(dp.store.version(), Some(6));

    // The second goes away too, the first is back (on the same port): round robin.
    let listener = TcpListener::bind(first.addr).await?;
    let mut back = Fake::start_on(listener)?;
    second.server.abort();
    drop(moved);
    let mut again = back.session().await?;
    assert_eq!(again.hello().await?.serving_version, 6);
    Ok(())
}

/// A control plane given by name: the name is resolved when connecting and each address
/// tried (where `localhost` also lists ::1, nothing listens there and 127.0.0.1 is next);
/// after the stream ends it is resolved again. Rotation over several addresses of one name
/// is shown with fixed answers in `stream::resolve`'s unit tests (no name resolves to two
/// loopback addresses on every machine).
#[tokio::test]
async fn a_control_plane_named_by_dns_is_resolved_on_every_connect() -> Result<()> {
    let mut cp = Fake::start().await?;
    let mut dp = DataPlane::new()?;
    let url = format!("http://localhost:{}", cp.addr.port());
    let stream = ControlPlane::new(&[url], None, TOKEN, "dp-test".into(), "x".into())?
        .with_backoff(Duration::from_millis(10), Duration::from_millis(50));
    dp.stream = Some(tokio::spawn(stream.run(dp.applier())));
    let mut session = cp.session().await?;
    session.hello().await?;
    session.send(snapshot(2, vec![proxy("two.test")])).await?;
    assert_eq!(session.next().await?, Kind::Ack(pb::Ack { version: 2 }));
    drop(session);
    let mut again = cp.session().await?;
    assert_eq!(again.hello().await?.serving_version, 2);
    Ok(())
}

/// With the control plane unreachable, the data plane starts from the snapshot sealed in
/// its cache (under its enrolment token), then connects once the control plane is up.
#[tokio::test]
async fn starts_from_the_sealed_cache_while_the_control_plane_is_unreachable() -> Result<()> {
    let mut dp = DataPlane::new()?;
    dp.cache
        .write(&snapshot(7, vec![proxy("cached.test")]).encode_to_vec())?;

    // Sealed under another token, the cache is not used.
    let other = SnapshotCache::new(dp.dir.path(), "other-token");
    let stranger = Applier::new(
        Arc::default(),
        Arc::new(ClientCache::with_roots(rustls::RootCertStore::empty())),
        other,
    );
    assert_eq!(
        stranger.restore().await,
        None,
        "a cache sealed under another token was read"
    );
    assert_eq!(stranger.store().version(), None);

    let applier = dp.applier();
    assert_eq!(applier.restore().await, Some(7));
    assert_eq!(dp.store.version(), Some(7));

    // Nothing listens on the port yet: the client retries while version 7 is served.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    dp.connect(addr, applier)?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(dp.store.version(), Some(7));

    let mut fake = Fake::start_on(TcpListener::bind(addr).await?)?;
    let mut session = fake.session().await?;
    assert_eq!(session.hello().await?.serving_version, 7);
    session.send(snapshot(8, vec![proxy("live.test")])).await?;
    assert_eq!(session.next().await?, Kind::Ack(pb::Ack { version: 8 }));
    assert_eq!(dp.store.version(), Some(8));
    Ok(())
}
