//! `portcullis-control-plane tls bootstrap`: a private CA, a gRPC server certificate and a
//! data-plane client certificate, so a multi-host install (control plane on one host, data
//! planes and the CLI elsewhere) is not blocked on hand-made certificates.
//!
//! Writes six files into `--out` (created 0700, or narrowed to it): `ca.pem`, `grpc.pem`
//! and `dataplane.pem` (0644, certificates), `ca-key.pem`, `grpc-key.pem` and
//! `dataplane-key.pem` (0600). The client certificate is for mutual TLS
//! (`--grpc-client-ca` on the control plane, `--client-cert/--client-key` on data planes);
//! every data plane shares it, since its identity is its enrolment token. Invariants:
//! - every input is checked before anything touches the disk; an error names the flag;
//! - an existing file is never overwritten, and a run either leaves all six files or none:
//!   each is written in full (and synced) under a temporary name, then hard-linked to its
//!   final name (which fails if the name exists, with no window for a racing writer), and a
//!   failure removes what this run linked and every temporary;
//! - keys are never printed; the output names the files and the exact flags to use.
//!
//! The CA is a path-length-0 CA valid for [`CA_DAYS`] that signs the two certificates
//! here; anyone holding `ca-key.pem` can mint a server certificate the CLI and data planes
//! trust (or a client certificate the control plane accepts), so it belongs offline once
//! they exist. Keys are ECDSA P-256 (rcgen's default): small, fast handshakes, accepted by
//! rustls and every gRPC client. Cost: three key generations and three signatures, a few
//! milliseconds.

use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Longest certificate lifetime `--days` accepts, and the CA's own lifetime: the server
/// certificate never outlives its CA.
pub const MAX_DAYS: u32 = 3650;
/// Lifetime of the CA certificate, in days.
pub const CA_DAYS: u32 = MAX_DAYS;

/// The files a bootstrap writes, in the order they are published.
pub const FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "grpc.pem",
    "grpc-key.pem",
    "dataplane.pem",
    "dataplane-key.pem",
];

/// Why a bootstrap did not happen. Nothing was left on disk in any case.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
    #[error("{} already exists: refusing to overwrite it (nothing was written)", .0.display())]
    Exists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("generating the certificates: {0}")]
    Certificate(#[from] rcgen::Error),
}

fn flag(flag: &'static str, reason: impl Into<String>) -> BootstrapError {
    BootstrapError::Flag {
        flag,
        reason: reason.into(),
    }
}

/// Validated input: at least one name or address, each a valid DNS name or IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub out: PathBuf,
    pub names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub days: u32,
}

impl Request {
    /// Checks the flags' values: `--name` DNS names (lowercased; `*.` wildcard allowed as
    /// the first label), `--ip` addresses, `--days` in 1..=[`MAX_DAYS`].
    pub fn new(
        out: PathBuf,
        names: &[String],
        ips: &[String],
        days: u32,
    ) -> Result<Self, BootstrapError> {
        if out.as_os_str().is_empty() {
            return Err(flag("--out", "must not be empty"));
        }
        if names.is_empty() {
            return Err(flag("--name", "give at least one DNS name"));
        }
        let mut checked = Vec::with_capacity(names.len());
        for name in names {
            let name = dns_name(name)?;
            if !checked.contains(&name) {
                checked.push(name);
            }
        }
        let mut addrs = Vec::with_capacity(ips.len());
        for ip in ips {
            let addr: IpAddr = ip
                .trim()
                .parse()
                .map_err(|_| flag("--ip", format!("{ip:?} is not an IP address")))?;
            if addr.is_unspecified() || addr.is_multicast() {
                return Err(flag(
                    "--ip",
                    format!("{ip:?} is not an address a client connects to"),
                ));
            }
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        if days == 0 || days > MAX_DAYS {
            return Err(flag(
                "--days",
                format!("{days} is out of range 1..={MAX_DAYS}"),
            ));
        }
        Ok(Self {
            out,
            names: checked,
            ips: addrs,
            days,
        })
    }
}

/// A DNS name as a certificate carries it (RFC 1123 labels, lowercased), or why not.
fn dns_name(raw: &str) -> Result<String, BootstrapError> {
    let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = |why: &str| flag("--name", format!("{raw:?} is not a valid DNS name: {why}"));
    if name.is_empty() {
        return Err(flag("--name", "empty name"));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(flag(
            "--name",
            format!("{raw:?} is an IP address: give it with --ip"),
        ));
    }
    if name.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    for label in rest.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each label must have 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label cannot start or end with '-'"));
        }
    }
    if name.starts_with("*.") && !rest.contains('.') {
        return Err(bad("a wildcard needs at least two labels after it"));
    }
    Ok(name)
}

/// The PEM texts of one bootstrap, before anything is written.
struct Material {
    ca: String,
    ca_key: String,
    grpc: String,
    grpc_key: String,
    dataplane: String,
    dataplane_key: String,
}

fn generate(req: &Request) -> Result<Material, rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    // A few minutes back, for clients whose clock is slightly behind.
    let now = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "Portcullis gRPC CA");
    ca.distinguished_name
        .push(DnType::OrganizationName, "Portcullis");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now;
    ca.not_after = now + time::Duration::days(i64::from(CA_DAYS));
    let ca_cert = ca.self_signed(&ca_key)?;

    let grpc_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = req
        .names
        .iter()
        .map(|n| n.clone().try_into().map(SanType::DnsName))
        .chain(req.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, _>>()?;
    leaf.distinguished_name = DistinguishedName::new();
    let cn: String = req.names[0].chars().take(64).collect();
    leaf.distinguished_name.push(DnType::CommonName, cn);
    leaf.distinguished_name
        .push(DnType::OrganizationName, "Portcullis control plane");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now;
    leaf.not_after = now + time::Duration::days(i64::from(req.days));
    let issuer = Issuer::from_params(&ca, &ca_key);
    let grpc_cert = leaf.signed_by(&grpc_key, &issuer)?;

    let dataplane_key = KeyPair::generate()?;
    let mut client = CertificateParams::default();
    client.distinguished_name = DistinguishedName::new();
    client
        .distinguished_name
        .push(DnType::CommonName, "portcullis-data-plane");
    client
        .distinguished_name
        .push(DnType::OrganizationName, "Portcullis data plane");
    client.is_ca = IsCa::ExplicitNoCa;
    client.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.use_authority_key_identifier_extension = true;
    client.not_before = now;
    client.not_after = now + time::Duration::days(i64::from(req.days));
    let dataplane_cert = client.signed_by(&dataplane_key, &issuer)?;

    Ok(Material {
        ca: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        grpc: grpc_cert.pem(),
        grpc_key: grpc_key.serialize_pem(),
        dataplane: dataplane_cert.pem(),
        dataplane_key: dataplane_key.serialize_pem(),
    })
}

/// What a successful bootstrap wrote: the absolute paths of the six files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub grpc: PathBuf,
    pub grpc_key: PathBuf,
    pub dataplane: PathBuf,
    pub dataplane_key: PathBuf,
}

/// Generates the CA and server certificate and writes them (all or nothing, never over an
/// existing file).
pub fn bootstrap(req: &Request) -> Result<Written, BootstrapError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BootstrapError::Io { path, source }
    };
    // Refuse before generating or creating anything when a file is already there.
    for name in FILES {
        let path = req.out.join(name);
        if fs::symlink_metadata(&path).is_ok() {
            return Err(BootstrapError::Exists(path));
        }
    }
    let material = generate(req)?;
    crate::files::private_dir(&req.out).map_err(io_err(&req.out))?;
    let dir = fs::canonicalize(&req.out).map_err(io_err(&req.out))?;
    let contents: [(&str, &str, u32); 6] = [
        (FILES[0], &material.ca, 0o644),
        (FILES[1], &material.ca_key, 0o600),
        (FILES[2], &material.grpc, 0o644),
        (FILES[3], &material.grpc_key, 0o600),
        (FILES[4], &material.dataplane, 0o644),
        (FILES[5], &material.dataplane_key, 0o600),
    ];
    let suffix = format!(".tmp-{}-{:016x}", std::process::id(), rand::random::<u64>());
    let mut temps: Vec<PathBuf> = Vec::with_capacity(FILES.len());
    let mut published: Vec<PathBuf> = Vec::with_capacity(FILES.len());
    let result = (|| {
        for (name, text, mode) in contents {
            let temp = dir.join(format!(".{name}{suffix}"));
            temps.push(temp.clone());
            write_new(&temp, text.as_bytes(), mode).map_err(io_err(&temp))?;
        }
        for (temp, name) in temps.iter().zip(FILES) {
            let path = dir.join(name);
            match fs::hard_link(temp, &path) {
                Ok(()) => published.push(path),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(BootstrapError::Exists(path));
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(())
    })();
    for temp in &temps {
        let _ = fs::remove_file(temp);
    }
    if let Err(e) = result {
        for path in &published {
            let _ = fs::remove_file(path);
        }
        return Err(e);
    }
    // The links are durable once the directory is.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(Written {
        ca: dir.join(FILES[0]),
        ca_key: dir.join(FILES[1]),
        grpc: dir.join(FILES[2]),
        grpc_key: dir.join(FILES[3]),
        dataplane: dir.join(FILES[4]),
        dataplane_key: dir.join(FILES[5]),
        dir,
    })
}

/// Writes a new file with exactly `mode` (the umask does not narrow or widen it), synced.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.sync_all()
}

/// What to tell the operator: the files and the exact flags on each side. Never a key.
pub fn instructions(req: &Request, written: &Written) -> String {
    let host = req
        .names
        .iter()
        .find(|n| !n.starts_with("*."))
        .cloned()
        .or_else(|| {
            req.ips.first().map(|ip| match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            })
        })
        .unwrap_or_else(|| "HOST".to_owned());
    let mut sans: Vec<String> = req.names.clone();
    sans.extend(req.ips.iter().map(IpAddr::to_string));
    let (ca, ca_key, grpc, grpc_key, dp, dp_key) = (
        written.ca.display(),
        written.ca_key.display(),
        written.grpc.display(),
        written.grpc_key.display(),
        written.dataplane.display(),
        written.dataplane_key.display(),
    );
    format!(
        "Wrote into {dir}:\n\
         \x20 {ca}  CA certificate (valid {CA_DAYS} days): give it to data planes and CLI users\n\
         \x20 {ca_key}  CA private key (0600): only for issuing new certificates; keep it offline\n\
         \x20 {grpc}  gRPC server certificate for {sans} (valid {days} days)\n\
         \x20 {grpc_key}  gRPC server private key (0600): stays on the control plane host\n\
         \x20 {dp}, {dp_key}  data-plane client certificate and key (0600), for mutual TLS\n\
         \n\
         Control plane:\n\
         \x20 portcullis-control-plane serve --grpc-listen 0.0.0.0:9090 --grpc-tls-cert {grpc} --grpc-tls-key {grpc_key}\n\
         Data planes (copy ca.pem to each host):\n\
         \x20 portcullis-data-plane --control-plane https://{host}:9090 --ca-cert {ca} --enrolment-token-file FILE\n\
         CLI:\n\
         \x20 portcullis --url https://{host}:9090 --ca-cert {ca} status\n\
         Optional mutual TLS (data planes must present dataplane.pem; the CLI needs no certificate):\n\
         \x20 control plane: --grpc-client-ca {ca}\n\
         \x20 data planes (copy both files): --client-cert {dp} --client-key {dp_key}\n",
        dir = written.dir.display(),
        sans = sans.join(", "),
        days = req.days,
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn req(out: &Path, names: &[&str], ips: &[&str], days: u32) -> Result<Request, BootstrapError> {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let ips: Vec<String> = ips.iter().map(|s| (*s).to_owned()).collect();
        Request::new(out.to_path_buf(), &names, &ips, days)
    }

    fn flag_of(r: Result<Request, BootstrapError>) -> &'static str {
        match r {
            Err(BootstrapError::Flag { flag, .. }) => flag,
            other => panic!("expected a flag error, got {other:?}"),
        }
    }

    #[test]
    fn bad_input_names_the_flag() {
        let out = Path::new("/tmp/x");
        assert_eq!(flag_of(req(out, &[], &[], 30)), "--name");
        for name in [
            "",
            " ",
            "-a.example",
            "a_b.example",
            "a..b",
            "127.0.0.1",
            "*.com",
            "é.fr",
        ] {
            assert_eq!(flag_of(req(out, &[name], &[], 30)), "--name", "{name:?}");
        }
        assert_eq!(flag_of(req(out, &[&"a".repeat(64)], &[], 30)), "--name");
        for ip in ["", "localhost", "1.2.3", "0.0.0.0", "::", "224.0.0.1"] {
            assert_eq!(flag_of(req(out, &["a"], &[ip], 30)), "--ip", "{ip:?}");
        }
        assert_eq!(flag_of(req(out, &["a"], &[], 0)), "--days");
        assert_eq!(flag_of(req(out, &["a"], &[], MAX_DAYS + 1)), "--days");
        assert_eq!(flag_of(req(Path::new(""), &["a"], &[], 30)), "--out");
    }

    #[test]
    fn names_are_normalised_and_deduplicated() -> Result<(), BootstrapError> {
        let r = req(
            Path::new("/tmp/x"),
            &[
                "CP.Example.com.",
                "cp.example.com",
                "*.svc.local",
                "localhost",
            ],
            &["127.0.0.1", "::1", "127.0.0.1"],
            MAX_DAYS,
        )?;
        assert_eq!(r.names, ["cp.example.com", "*.svc.local", "localhost"]);
        assert_eq!(r.ips.len(), 2);
        Ok(())
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
    }

    #[test]
    fn writes_all_six_with_modes_and_never_overwrites() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let out = root.path().join("tls");
        let r = req(&out, &["localhost"], &["127.0.0.1"], 30)?;
        let w = bootstrap(&r)?;
        assert_eq!(mode(&out), 0o700);
        assert_eq!(
            [
                &w.ca,
                &w.ca_key,
                &w.grpc,
                &w.grpc_key,
                &w.dataplane,
                &w.dataplane_key
            ]
            .map(|p| mode(p)),
            [0o644, 0o600, 0o644, 0o600, 0o644, 0o600]
        );
        let mut names: Vec<_> = fs::read_dir(&out)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        names.sort();
        assert_eq!(
            names,
            [
                "ca-key.pem",
                "ca.pem",
                "dataplane-key.pem",
                "dataplane.pem",
                "grpc-key.pem",
                "grpc.pem"
            ],
            "no temporaries left"
        );

        // The server certificate is issued by the CA (the integration test has rustls
        // verify the signature) and names what was asked for.
        let ca_pem = fs::read(&w.ca)?;
        let grpc_pem = fs::read(&w.grpc)?;
        let (_, ca) = x509_parser::pem::parse_x509_pem(&ca_pem)?;
        let (_, leaf) = x509_parser::pem::parse_x509_pem(&grpc_pem)?;
        let ca = ca.parse_x509()?;
        let leaf = leaf.parse_x509()?;
        assert!(ca.is_ca());
        assert!(!leaf.is_ca());
        assert_eq!(leaf.issuer(), ca.subject());
        let sans = leaf
            .subject_alternative_name()?
            .map(|s| format!("{:?}", s.value.general_names))
            .unwrap_or_default();
        assert!(sans.contains("DNSName(\"localhost\")"), "{sans}");
        assert!(sans.contains("IPAddress([127, 0, 0, 1])"), "{sans}");
        let days = (leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp())
            / 86_400;
        assert_eq!(days, 30);
        assert!(
            leaf.extended_key_usage()?
                .is_some_and(|e| e.value.server_auth && !e.value.client_auth)
        );
        let dp_pem = fs::read(&w.dataplane)?;
        let (_, dp) = x509_parser::pem::parse_x509_pem(&dp_pem)?;
        let dp = dp.parse_x509()?;
        assert_eq!(dp.issuer(), ca.subject());
        assert!(
            dp.extended_key_usage()?
                .is_some_and(|e| e.value.client_auth && !e.value.server_auth)
        );

        // A second run refuses, naming the file, and changes nothing.
        let before: Vec<Vec<u8>> = FILES
            .iter()
            .map(|f| fs::read(out.join(f)))
            .collect::<Result<_, _>>()?;
        let again = bootstrap(&r);
        assert!(
            matches!(&again, Err(BootstrapError::Exists(p)) if p.ends_with("ca.pem")),
            "{again:?}"
        );
        let after: Vec<Vec<u8>> = FILES
            .iter()
            .map(|f| fs::read(out.join(f)))
            .collect::<Result<_, _>>()?;
        assert_eq!(before, after);

        // One existing file (here the last one) blocks the whole run: nothing else appears.
        let other = root.path().join("other");
        fs::create_dir(&other)?;
        fs::write(other.join("grpc-key.pem"), b"mine")?;
        let r = req(&other, &["localhost"], &[], 30)?;
        let err = bootstrap(&r)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("grpc-key.pem") && err.contains("already exists"),
            "{err}"
        );
        assert_eq!(fs::read_dir(&other)?.count(), 1);
        assert_eq!(fs::read(other.join("grpc-key.pem"))?, b"mine");

        // The instructions name the flags and files, never a key's contents.
        let text = instructions(&req(&out, &["localhost"], &["127.0.0.1"], 30)?, &w);
        for needle in [
            format!("--grpc-tls-cert {}", w.grpc.display()),
            format!("--grpc-tls-key {}", w.grpc_key.display()),
            format!("--ca-cert {}", w.ca.display()),
            "https://localhost:9090".to_owned(),
        ] {
            assert!(text.contains(&needle), "{needle} in {text}");
        }
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        Ok(())
    }
}
