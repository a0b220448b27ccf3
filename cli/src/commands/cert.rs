//! `cert ...`: certificates as the API shows them (never a private key).

use std::io::Read as _;
use std::path::Path;

use portcullis_proto::v1::{
    ByName, Certificate, CertificateInput, CertificateUpload, Empty, ExportCertificateRequest,
};
use serde_json::{Value, json};

use super::{Ctx, ReplyExt};
use crate::args::{CertCommand, CertCreateArgs};
use crate::error::CliError;
use crate::output::json::EmptyJson;
use crate::output::table::{Table, key_values, or_dash};
use crate::output::time::rfc3339;

/// Runs one `cert` subcommand.
pub(crate) async fn run(ctx: &mut Ctx, cmd: CertCommand) -> Result<(), CliError> {
    let cert = match cmd {
        CertCommand::Create(args) | CertCommand::CreateMulti(args) => ctx
            .client
            .create_certificate(input(args))
            .await
            .reply(&ctx.call)?,
        CertCommand::Show { name } => ctx
            .client
            .get_certificate(ByName { name, force: false })
            .await
            .reply(&ctx.call)?,
        CertCommand::Status { name } => {
            let c = ctx
                .client
                .get_certificate(ByName { name, force: false })
                .await
                .reply(&ctx.call)?;
            let v = json!({"name": c.name, "status": c.status, "error": c.error,
                "not_before": c.not_before, "not_after": c.not_after, "last_attempt_at": c.last_attempt_at});
            return ctx.out.emit(&v, || {
                key_values(&[
                    ("name", c.name.clone()),
                    ("status", c.status.clone()),
                    ("error", or_dash(&c.error)),
                    ("not after", rfc3339(c.not_after)),
                ])
            });
        }
        CertCommand::Renew { name } => ctx
            .client
            .renew_certificate(ByName { name, force: false })
            .await
            .reply(&ctx.call)?,
        CertCommand::List => {
            let list = ctx
                .client
                .list_certificates(Empty {})
                .await
                .reply(&ctx.call)?;
            let items: Vec<Value> = list.items.iter().map(to_json).collect();
            return ctx.out.emit(&json!({ "items": items }), || {
                let mut t = Table::new(&["NAME", "DOMAINS", "STATUS", "NOT AFTER", "SOURCE"]);
                for c in &list.items {
                    t.row(vec![
                        c.name.clone(),
                        c.domains.join(","),
                        c.status.clone(),
                        rfc3339(c.not_after),
                        c.source.clone(),
                    ]);
                }
                t.render()
            });
        }
        CertCommand::Upload { name, cert, key } => {
            let upload = CertificateUpload {
                name,
                cert_chain_pem: read_pem("--cert", &cert)?,
                private_key_pem: read_pem("--key", &key)?,
            };
            ctx.client
                .upload_certificate(upload)
                .await
                .reply(&ctx.call)?
        }
        CertCommand::Export {
            name,
            include_private_key,
        } => {
            // The server refuses without the flag (and for non-admin tokens), so nothing
            // secret is ever printed by accident.
            let e = ctx
                .client
                .export_certificate(ExportCertificateRequest {
                    name,
                    include_private_key,
                })
                .await
                .reply(&ctx.call)?;
            let v = json!({"name": e.name, "cert_chain_pem": e.cert_chain_pem,
                "private_key_pem": e.private_key_pem});
            return ctx.out.emit(&v, || {
                // Chain then key: redirect to a file and it is a usable PEM bundle.
                let mut text = e.cert_chain_pem.clone();
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&e.private_key_pem);
                text
            });
        }
        CertCommand::ConvertToProduction { name } => ctx
            .client
            .convert_certificate_to_production(ByName { name, force: false })
            .await
            .reply(&ctx.call)?,
        CertCommand::Delete { name, force } => {
            ctx.client
                .delete_certificate(ByName {
                    name: name.clone(),
                    force,
                })
                .await
                .reply(&ctx.call)?;
            return ctx
                .out
                .emit(&EmptyJson {}, || format!("deleted certificate {name}"));
        }
    };
    ctx.out.emit(&to_json(&cert), || view(&cert))
}

/// Largest PEM file accepted; real chains and keys are a few KiB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// Reads a PEM file given to `flag`, naming the flag and file when it cannot be used.
fn read_pem(flag: &str, path: &Path) -> Result<String, CliError> {
    let bad = |why: String| CliError::Usage(format!("{flag} {}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(bad(format!(
            "larger than {MAX_PEM_BYTES} bytes; not a PEM file"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| bad("not text; expected PEM".into()))?;
    if !text.contains("-----BEGIN ") {
        return Err(bad("no PEM block (-----BEGIN ...)".into()));
    }
    Ok(text)
}

fn input(args: CertCreateArgs) -> CertificateInput {
    CertificateInput {
        name: args.name,
        domains: args.domains,
        email: args.email,
        challenge: args.challenge.unwrap_or_default(),
        staging: args.staging,
        self_signed: args.self_signed,
    }
}

fn to_json(c: &Certificate) -> Value {
    json!({
        "name": c.name, "domains": c.domains, "owner_token_id": c.owner_token_id, "source": c.source,
        "acme_directory": c.acme_directory, "email": c.email, "challenge": c.challenge, "status": c.status,
        "error": c.error, "issuer": c.issuer, "not_before": c.not_before, "not_after": c.not_after,
        "last_attempt_at": c.last_attempt_at, "created_at": c.created_at, "serial": c.serial,
        "cert_chain_pem": c.cert_chain_pem,
    })
}

fn view(c: &Certificate) -> String {
    key_values(&[
        ("name", c.name.clone()),
        ("domains", c.domains.join(", ")),
        ("status", c.status.clone()),
        ("error", or_dash(&c.error)),
        ("source", c.source.clone()),
        ("challenge", c.challenge.clone()),
        ("directory", or_dash(&c.acme_directory)),
        ("issuer", or_dash(&c.issuer)),
        ("serial", or_dash(&c.serial)),
        ("not before", rfc3339(c.not_before)),
        ("not after", rfc3339(c.not_after)),
        ("owner token", or_dash(&c.owner_token_id)),
    ])
}
