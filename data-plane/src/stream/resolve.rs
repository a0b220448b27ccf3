//! Connecting to a control plane given by a DNS name that resolves to several addresses
//! (one name for several control planes: round-robin DNS, a headless Kubernetes Service).
//!
//! Every session resolves the name again (a control plane replaced under the same name is
//! found without a restart) and tries the addresses in turn, each with its share of the
//! connect timeout, as hyper's connector does (IPv6 and IPv4 raced after 300 ms). What this
//! adds is the starting point: it moves one address further after every session that
//! ended, so a control plane that accepts connections but ends the stream (shutting down,
//! its Redis unreachable) is not the first one tried again and again while another under
//! the same name would serve. IP literals are not resolved and keep their one address.
//!
//! Cost: one `getaddrinfo` (on the blocking pool) per connection attempt, never on the
//! request path.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;

/// How a name becomes addresses: the system resolver, or a fixed answer (tests, which
/// cannot make any name resolve to several loopback addresses on every machine).
#[derive(Clone)]
pub(crate) enum Lookup {
    System,
    #[cfg_attr(not(test), allow(dead_code))]
    Fixed(Arc<[IpAddr]>),
}

/// A resolver for hyper's connector that rotates the answer by `offset`.
#[derive(Clone)]
pub(crate) struct Rotating {
    lookup: Lookup,
    offset: Arc<AtomicUsize>,
}

impl Rotating {
    pub(crate) fn new(lookup: Lookup, offset: Arc<AtomicUsize>) -> Self {
        Self { lookup, offset }
    }

    /// A connector with the settings tonic's own gives its endpoints, resolving through
    /// `self`. `timeout` is shared among the addresses of one attempt.
    pub(crate) fn connector(self, timeout: Duration) -> HttpConnector<Self> {
        let mut http = HttpConnector::new_with_resolver(self);
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        http
    }
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for Rotating {
    type Response = Addrs;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Addrs>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let offset = self.offset.load(Ordering::Relaxed);
        let lookup = self.lookup.clone();
        Box::pin(async move {
            // The connector sets the URL's port on each address.
            let mut addrs: Vec<SocketAddr> = match lookup {
                Lookup::System => tokio::net::lookup_host((name.as_str(), 0)).await?.collect(),
                Lookup::Fixed(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect(),
            };
            if addrs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{} resolves to no address", name.as_str()),
                ));
            }
            let len = addrs.len();
            addrs.rotate_left(offset % len);
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tower_service::Service as _;

    use super::*;

    fn loopback(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    /// Listeners on 127.0.0.1:P and 127.0.0.2:P (one port, as for one name).
    async fn pair() -> (tokio::net::TcpListener, tokio::net::TcpListener, u16) {
        loop {
            let one = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = one.local_addr().unwrap().port();
            if let Ok(two) = tokio::net::TcpListener::bind(("127.0.0.2", port)).await {
                return (one, two, port);
            }
        }
    }

    /// Which of the two listeners the connector reached.
    async fn reached(
        one: &tokio::net::TcpListener,
        two: &tokio::net::TcpListener,
        connector: &mut HttpConnector<Rotating>,
        port: u16,
    ) -> u8 {
        let uri: http::Uri = format!("http://cp.test:{port}").parse().unwrap();
        let _conn = connector.call(uri).await.expect("connects");
        tokio::select! {
            a = one.accept() => { a.unwrap(); 1 }
            b = two.accept() => { b.unwrap(); 2 }
        }
    }

    #[tokio::test]
    async fn every_address_of_a_name_is_tried_from_a_rotating_start() {
        let (one, two, port) = pair().await;
        let offset = Arc::new(AtomicUsize::new(0));
        let lookup = Lookup::Fixed(Arc::from([loopback(1), loopback(2)]));
        let mut connector = Rotating::new(lookup, offset.clone()).connector(Duration::from_secs(5));
        assert_eq!(reached(&one, &two, &mut connector, port).await, 1);
        offset.fetch_add(1, Ordering::Relaxed);
        assert_eq!(reached(&one, &two, &mut connector, port).await, 2);
        offset.fetch_add(1, Ordering::Relaxed);
        assert_eq!(reached(&one, &two, &mut connector, port).await, 1);

        // The first address refuses (nothing listens there any more): the next is tried
        // in the same attempt.
        drop(one);
        let uri: http::Uri = format!("http://cp.test:{port}").parse().unwrap();
        let _conn = connector
            .call(uri)
            .await
            .expect("falls through to 127.0.0.2");
        two.accept().await.unwrap();
    }

    #[tokio::test]
    async fn the_system_resolver_is_asked_again_on_every_attempt() {
        // `localhost` resolves on every machine; whatever it resolves to, a listener on
        // 127.0.0.1 is reached through the name (and ::1 is tried too where it is listed).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let v6 = tokio::net::TcpListener::bind(("::1", port)).await.ok();
        let mut connector =
            Rotating::new(Lookup::System, Arc::default()).connector(Duration::from_secs(5));
        for _ in 0..2 {
            let uri: http::Uri = format!("http://localhost:{port}").parse().unwrap();
            let _conn = connector
                .call(uri)
                .await
                .expect("connects through the name");
            match &v6 {
                Some(v6) => tokio::select! {
                    a = listener.accept() => { a.unwrap(); }
                    b = v6.accept() => { b.unwrap(); }
                },
                None => {
                    listener.accept().await.unwrap();
                }
            }
        }
    }

    #[tokio::test]
    async fn a_name_without_addresses_is_an_error() {
        let mut resolver = Rotating::new(Lookup::Fixed(Arc::from([])), Arc::default());
        let err = resolver
            .call("cp.test".parse().unwrap())
            .await
            .expect_err("no address");
        assert!(
            err.to_string().contains("cp.test resolves to no address"),
            "{err}"
        );
    }
}
