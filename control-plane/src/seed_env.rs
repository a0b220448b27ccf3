//! The seed's environment names (its `.env`), honoured where they mean the same as one of
//! our flags. Each becomes that flag's default value, so the flag itself and its
//! `PORTCULLIS_*` variable still win; the value then goes through the flag's own parser, so
//! a bad one is refused with the flag's error, never repaired. Secret ones are hidden from
//! `--help`.

use clap::Command;

/// One seed variable standing in for a flag of a subcommand.
pub struct Alias {
    /// The seed's variable, e.g. `ADMIN_EMAIL`.
    pub seed: &'static str,
    /// Subcommand path the flag belongs to, e.g. `["serve"]`.
    pub command: &'static [&'static str],
    /// The flag's clap id (its field name).
    pub arg: &'static str,
    /// Keep the value out of `--help`.
    pub secret: bool,
    /// The seed's value in the flag's terms.
    pub map: fn(&str) -> String,
}

fn same(v: &str) -> String {
    v.to_owned()
}

/// `BASE_DOMAIN=example.com`: the seed served its OAuth endpoints at `auth.<BASE_DOMAIN>`.
fn issuer_of_base_domain(v: &str) -> String {
    format!("https://auth.{v}")
}

const SERVE: &[&str] = &["serve"];
const CREATE_ADMIN: &[&str] = &["token", "create-admin"];

/// The control plane's aliases (`README.md` has the migration table).
pub const CONTROL_PLANE: &[Alias] = &[
    Alias {
        seed: "ADMIN_EMAIL",
        command: SERVE,
        arg: "acme_email",
        secret: false,
        map: same,
    },
    Alias {
        seed: "ACME_DIRECTORY_URL",
        command: SERVE,
        arg: "acme_directory",
        secret: false,
        map: same,
    },
    Alias {
        seed: "BASE_DOMAIN",
        command: SERVE,
        arg: "oauth_issuer",
        secret: false,
        map: issuer_of_base_domain,
    },
    Alias {
        seed: "ADMIN_TOKEN",
        command: SERVE,
        arg: "admin_token",
        secret: true,
        map: same,
    },
    Alias {
        seed: "GITHUB_CLIENT_ID",
        command: SERVE,
        arg: "github_client_id",
        secret: false,
        map: same,
    },
    Alias {
        seed: "GITHUB_CLIENT_SECRET",
        command: SERVE,
        arg: "github_client_secret",
        secret: true,
        map: same,
    },
    Alias {
        seed: "OAUTH_ALLOWED_GITHUB_USERS",
        command: SERVE,
        arg: "allowed_github_users",
        secret: false,
        map: same,
    },
    Alias {
        seed: "REDIS_PASSWORD",
        command: SERVE,
        arg: "redis_password",
        secret: true,
        map: same,
    },
    Alias {
        seed: "REDIS_PASSWORD",
        command: CREATE_ADMIN,
        arg: "redis_password",
        secret: true,
        map: same,
    },
];

/// Makes each alias whose variable is set (and not empty) the default of its flag.
/// `env` reads a variable (the process environment in production).
pub fn apply(mut cmd: Command, aliases: &[Alias], env: impl Fn(&str) -> Option<String>) -> Command {
    for alias in aliases {
        let Some(value) = env(alias.seed).filter(|v| !v.is_empty()) else {
            continue;
        };
        // Parsed once per process; clap's defaults are `'static` without its `string`
        // feature, so the few bytes are leaked on purpose.
        let value: &'static str = Box::leak((alias.map)(&value).into_boxed_str());
        cmd = mut_path(cmd, alias.command, &|c: Command| {
            c.mut_arg(alias.arg, |a| {
                a.default_value(value).hide_default_value(alias.secret)
            })
        });
    }
    cmd
}

fn mut_path(cmd: Command, path: &[&str], f: &dyn Fn(Command) -> Command) -> Command {
    match path.split_first() {
        None => f(cmd),
        Some((first, rest)) => cmd.mut_subcommand(*first, |c| mut_path(c, rest, f)),
    }
}

/// The tracing filter: `PORTCULLIS_LOG` (an `EnvFilter` directive), else the seed's
/// `LOG_LEVEL` (`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`, any case), else `info`.
/// An unknown `LOG_LEVEL` is an error, not a silent default.
pub fn log_filter(env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    if let Some(directive) = env("PORTCULLIS_LOG").filter(|v| !v.is_empty()) {
        return Ok(directive);
    }
    let Some(level) = env("LOG_LEVEL").filter(|v| !v.is_empty()) else {
        return Ok("info".into());
    };
    let mapped = match level.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARN" | "WARNING" => "warn",
        "ERROR" | "CRITICAL" => "error",
        _ => {
            return Err(format!(
                "LOG_LEVEL={level:?} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
            ));
        }
    };
    Ok(mapped.into())
}

#[cfg(test)]
mod tests {
    use clap::{Arg, ArgMatches};

    use super::*;

    fn cmd() -> Command {
        Command::new("cp").subcommand(
            Command::new("serve")
                .arg(
                    Arg::new("acme_email")
                        .long("acme-email")
                        .env("PORTCULLIS_ACME_EMAIL_TEST_UNSET")
                        .default_value(""),
                )
                .arg(
                    Arg::new("oauth_issuer")
                        .long("oauth-issuer")
                        .default_value(""),
                )
                .arg(Arg::new("admin_token").long("admin-token")),
        )
    }

    fn serve(m: &ArgMatches, id: &str) -> Option<String> {
        m.subcommand_matches("serve")?
            .get_one::<String>(id)
            .cloned()
    }

    #[test]
    fn seed_values_are_defaults_that_flags_override() {
        let env = |k: &str| match k {
            "ADMIN_EMAIL" => Some("ops@example.com".to_owned()),
            "BASE_DOMAIN" => Some("example.com".to_owned()),
            "ADMIN_TOKEN" => Some("x".repeat(40)),
            _ => None,
        };
        let m = apply(cmd(), CONTROL_PLANE, env)
            .try_get_matches_from(["cp", "serve", "--oauth-issuer", "https://id.example.org"])
            .unwrap();
        assert_eq!(serve(&m, "acme_email").as_deref(), Some("ops@example.com"));
        assert_eq!(
            serve(&m, "oauth_issuer").as_deref(),
            Some("https://id.example.org")
        );
        assert_eq!(serve(&m, "admin_token"), Some("x".repeat(40)));
        // Hidden from help.
        let mut c = apply(cmd(), CONTROL_PLANE, env);
        let help = c
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!help.contains(&"x".repeat(40)), "{help}");
        assert!(help.contains("ops@example.com"), "{help}");
    }

    #[test]
    fn unset_or_empty_seed_values_change_nothing() {
        let m = apply(cmd(), CONTROL_PLANE, |k| {
            (k == "ADMIN_EMAIL").then(String::new)
        })
        .try_get_matches_from(["cp", "serve"])
        .unwrap();
        assert_eq!(serve(&m, "acme_email").as_deref(), Some(""));
        assert_eq!(serve(&m, "admin_token"), None);
    }

    #[test]
    fn log_level_maps_the_seed_names_and_refuses_others() {
        let only = |k: &'static str, v: &'static str| move |q: &str| (q == k).then(|| v.to_owned());
        assert_eq!(log_filter(only("LOG_LEVEL", "WARNING")).unwrap(), "warn");
        assert_eq!(log_filter(only("LOG_LEVEL", "critical")).unwrap(), "error");
        assert_eq!(log_filter(only("LOG_LEVEL", "INFO")).unwrap(), "info");
        assert_eq!(
            log_filter(only("PORTCULLIS_LOG", "debug,h2=warn")).unwrap(),
            "debug,h2=warn"
        );
        assert_eq!(log_filter(|_| None).unwrap(), "info");
        let err = log_filter(only("LOG_LEVEL", "LOUD")).unwrap_err();
        assert!(err.contains("LOG_LEVEL"), "{err}");
    }
}
