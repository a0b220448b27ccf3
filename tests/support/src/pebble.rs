//! A real ACME CA for tests: Debian's Pebble with `pebble-challtestsrv` as its DNS, which
//! answers 127.0.0.1 for every name so validation reaches the data plane under test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::Proc;
use crate::{eventually, free_port};

/// A running Pebble that validates HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`.
pub struct Pebble {
    pebble: Proc,
    _dns: Proc,
    _dir: tempfile::TempDir,
    /// ACME directory URL.
    pub directory: String,
    /// PEM of Pebble's own TLS certificate (trust it for the directory).
    pub tls_cert: PathBuf,
    tls_key: PathBuf,
    log: PathBuf,
    config: PathBuf,
    dns: u16,
    management: u16,
    dns_management: u16,
}

/// Pebble settings beyond its validation ports.
#[derive(Debug, Default)]
pub struct PebbleOptions {
    /// `(kid, base64url HMAC key)` pairs; when non-empty, new accounts need External
    /// Account Binding with one of them.
    pub eab_keys: Vec<(String, String)>,
    /// Serve the directory with another Pebble's TLS certificate and key, so one
    /// `--acme-ca-cert` file trusts both (e.g. a staging and a production Pebble).
    pub tls_from: Option<(PathBuf, PathBuf)>,
}

impl Pebble {
    /// Starts the DNS and the CA and waits until the directory answers.
    pub async fn start(http_port: u16, tls_port: u16) -> Self {
        Self::start_with(http_port, tls_port, PebbleOptions::default()).await
    }

    /// Like [`Pebble::start`], with EAB or a shared TLS certificate.
    pub async fn start_with(http_port: u16, tls_port: u16, options: PebbleOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls_cert = dir.path().join("pebble.pem");
        let tls_key = dir.path().join("pebble.key");
        match &options.tls_from {
            Some((cert, key)) => {
                std::fs::copy(cert, &tls_cert).expect("copy tls cert");
                std::fs::copy(key, &tls_key).expect("copy tls key");
            }
            None => {
                let key = rcgen::KeyPair::generate().expect("key");
                let cert = rcgen::CertificateParams::new(vec![
                    "localhost".to_owned(),
                    "127.0.0.1".to_owned(),
                ])
                .expect("params")
                .self_signed(&key)
                .expect("cert");
                std::fs::write(&tls_cert, cert.pem()).expect("write");
                std::fs::write(&tls_key, key.serialize_pem()).expect("write");
            }
        }

        let (dns, dns_management) = (free_port(), free_port());
        let dns_proc = Proc::spawn(
            Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-management", &format!("127.0.0.1:{dns_management}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let (listen, management) = (free_port(), free_port());
        let mac_keys: serde_json::Map<String, serde_json::Value> = options
            .eab_keys
            .iter()
            .map(|(kid, key)| (kid.clone(), key.clone().into()))
            .collect();
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": tls_cert, "privateKey": tls_key,
            "httpPort": http_port, "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": !mac_keys.is_empty(),
            "externalAccountMACKeys": mac_keys,
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("write");
        // Pebble's log is kept: it names every order and issued serial.
        let log = dir.path().join("pebble.log");
        let pebble = spawn_pebble(&config_path, dns, &log);
        let me = Self {
            pebble,
            _dns: dns_proc,
            _dir: dir,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            tls_cert,
            tls_key,
            log,
            config: config_path,
            dns,
            management,
            dns_management,
        };
        me.wait_ready().await;
        me
    }

    /// Kills Pebble and starts it again on the same ports and TLS certificate. Pebble keeps
    /// everything in memory, so the new one has forgotten every account and order (like a
    /// reset CA) and signs with a new root.
    pub async fn restart(&mut self) {
        self.pebble.kill();
        self.pebble = spawn_pebble(&self.config, self.dns, &self.log);
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let client = self.client();
        eventually(Duration::from_secs(20), "pebble directory", || {
            let (client, url) = (client.clone(), self.directory.clone());
            async move {
                client
                    .get(&url)
                    .send()
                    .await
                    .ok()?
                    .status()
                    .is_success()
                    .then_some(())
            }
        })
        .await;
    }

    /// Pebble's TLS certificate and key, for [`PebbleOptions::tls_from`].
    pub fn tls_files(&self) -> (PathBuf, PathBuf) {
        (self.tls_cert.clone(), self.tls_key.clone())
    }

    /// Serial numbers of the certificates this CA issued so far, in order, as lowercase
    /// hex without leading zeros (read from Pebble's own log).
    pub fn issued_serials(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split("Issued certificate serial ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|hex| hex.to_ascii_lowercase().trim_start_matches('0').to_owned())
            .collect()
    }

    /// How many ACME accounts were registered, over every run of this Pebble (each new
    /// account logs the count of accounts it now holds).
    pub fn new_accounts(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("There are now") && l.contains("accounts in memory"))
            .count()
    }

    /// Pebble's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.tls_cert).expect("read");
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
            .no_proxy()
            .build()
            .expect("client")
    }

    /// The root that signs issued certificates (from the management API).
    pub async fn root_pem(&self) -> String {
        self.client()
            .get(format!("https://127.0.0.1:{}/roots/0", self.management))
            .send()
            .await
            .expect("roots")
            .text()
            .await
            .expect("root pem")
    }

    /// Makes the DNS answer `ip` for `host`, e.g. an address nothing listens on.
    pub async fn dns_a(&self, host: &str, ip: &str) {
        let r = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/add-a", self.dns_management))
            .json(&serde_json::json!({"host": host, "addresses": [ip]}))
            .send()
            .await
            .expect("challtestsrv add-a");
        assert!(r.status().is_success());
    }
}

/// Starts Pebble with `config`, resolving through the DNS on `dns`, appending to `log` (a
/// restarted Pebble adds to the same log, so the serials it issued before stay listed).
fn spawn_pebble(config: &Path, dns: u16, log: &Path) -> Proc {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("pebble log");
    Proc::spawn(
        Command::new("pebble")
            .arg("-config")
            .arg(config)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file),
    )
}
