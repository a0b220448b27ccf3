//! A real browser for end-to-end tests: the system's headless Chromium (Debian's
//! `chromium`), driven by `playwright-core` from `tests/browser/visit.mjs`.
//!
//! Where [`crate::browser`] plays the browser by hand so every hop can be asserted, this is
//! the real thing: its cookie rules (`__Host-` prefixes, `Secure` on `*.localhost`,
//! `SameSite`), its redirect handling and its resolution of `*.localhost` to loopback are
//! the ones users have. Needs `/usr/bin/chromium` (or `$PORTCULLIS_CHROMIUM`) and
//! `npm ci --prefix tests/browser` (`tests/run.sh` does both); [`Options::ca`] needs
//! `certutil` (Debian's `libnss3-tools`, installed by `tests/run.sh` too).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;

/// One main-frame navigation response.
#[derive(Clone, Debug, Deserialize)]
pub struct Navigation {
    /// Its URL.
    pub url: String,
    /// Its HTTP status (3xx for redirects the browser followed).
    pub status: u16,
}

/// A cookie in the browser's jar after the visit (never its value).
#[derive(Clone, Debug, Deserialize)]
pub struct Cookie {
    /// Name.
    pub name: String,
    /// The host it belongs to.
    pub domain: String,
    /// `Secure`.
    pub secure: bool,
    /// `HttpOnly`.
    #[serde(rename = "httpOnly")]
    pub http_only: bool,
    /// Its path.
    #[serde(default)]
    pub path: String,
    /// `Strict`, `Lax` or `None`.
    #[serde(default, rename = "sameSite")]
    pub same_site: String,
}

/// One accessibility rule axe-core found broken on a page.
#[derive(Clone, Debug, Deserialize)]
pub struct AxeViolation {
    /// Rule id, e.g. `color-contrast`.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: Option<String>,
    /// What the rule asks for.
    pub help: String,
    /// CSS selectors of (up to five) offending elements.
    pub targets: Vec<String>,
}

/// How to visit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    /// Run axe-core on the final page.
    pub axe: bool,
    /// Emulate `prefers-color-scheme: dark`.
    pub dark: bool,
    /// A phone's screen (390×844 at device scale 2, touch) instead of a laptop's 1000×700.
    pub phone: bool,
    /// A CA certificate (PEM) the browser trusts as a root, through the NSS database of
    /// its own `$HOME` (as on a user's Linux desktop); without it a private CA is refused.
    pub ca: Option<&'a Path>,
    /// Once loaded, click the link or button with this accessible name and follow it.
    pub click: Option<&'a str>,
    /// Then wait for the level-1 heading with this name (a page that renders by script).
    pub wait_heading: Option<&'a str>,
}

/// Where a visit ended.
#[derive(Clone, Debug, Deserialize)]
pub struct Visit {
    /// The page finally shown.
    pub url: String,
    /// Its HTTP status.
    pub status: u16,
    /// Its `<title>`.
    pub title: String,
    /// Its visible text.
    pub text: String,
    /// Every main-frame response on the way, redirects included, in order.
    pub navigations: Vec<Navigation>,
    /// The cookie jar at the end.
    pub cookies: Vec<Cookie>,
    /// `lang` of the page's `<html>`.
    #[serde(default)]
    pub lang: String,
    /// The page's console errors and warnings (CSP refusals among them).
    #[serde(default)]
    pub console: Vec<String>,
    /// CSS pixels by which the page is wider than the window (0: nothing sticks out).
    #[serde(default)]
    pub overflow: i64,
    /// axe-core's violations, when asked for.
    #[serde(default)]
    pub axe: Option<Vec<AxeViolation>>,
}

impl Visit {
    /// The serious and critical accessibility violations (needs [`Options::axe`]).
    pub fn serious_violations(&self) -> Vec<&AxeViolation> {
        self.axe
            .as_ref()
            .expect("visited without axe")
            .iter()
            .filter(|v| matches!(v.impact.as_deref(), Some("serious" | "critical")))
            .collect()
    }
}

/// Directory with `visit.mjs` and `package.json`.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Where a test keeps the screenshot named `name` (`<target>/browser-screenshots/NAME.png`),
/// so it outlives the test's temporary directories and can be looked at afterwards.
pub fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir.join(format!("{name}.png"))
}

/// The Chromium binary the tests use.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("PORTCULLIS_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), Into::into)
}

/// Runs the browser script `tests/browser/SCRIPT` (a whole console journey) with the
/// admin token and Chromium in its environment, plus whatever `configure` adds (arguments,
/// more environment), within 240 s; returns the JSON report it prints as its last line.
/// Panics (a test failure) when it cannot run, prints no report, or reports an `error`.
pub async fn run_script(
    script: &str,
    admin_token: &str,
    out_dir: &Path,
    configure: impl FnOnce(&mut tokio::process::Command),
) -> serde_json::Value {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/axe-core").exists(),
        "axe-core is not installed: run `npm ci --prefix tests/browser` (tests/run.sh does)"
    );
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join(script));
    configure(&mut cmd);
    let run = cmd
        .arg("--out")
        .arg(out_dir)
        .env("PORTCULLIS_ADMIN_TOKEN", admin_token)
        .env("PORTCULLIS_CHROMIUM", chromium_path())
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 240 s"))
        .unwrap_or_else(|e| panic!("run node tests/browser/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{script} printed no report ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        report.get("error").is_none(),
        "the console run failed: {}\nsteps: {}\nscreenshots in {}",
        report["error"].as_str().unwrap_or_default(),
        report["steps"],
        out_dir.display()
    );
    report
}

/// Opens `url` in a fresh headless Chromium profile, lets it follow redirects until the
/// page has loaded, saves a full-page screenshot to `screenshot` and reports where it
/// ended. Panics (a test failure) when the browser cannot run or times out.
pub async fn visit(url: &str, screenshot: &Path) -> Visit {
    visit_with(url, screenshot, Options::default()).await
}

/// [`visit`], as `options` say.
pub async fn visit_with(url: &str, screenshot: &Path, options: Options<'_>) -> Visit {
    try_visit_with(url, screenshot, options)
        .await
        .unwrap_or_else(|e| panic!("Chromium failed visiting {url}: {e}"))
}

/// [`visit_with`], but the browser's own refusal (e.g. `net::ERR_CERT_AUTHORITY_INVALID`)
/// is an `Err` with its message instead of a panic. A browser that cannot run still panics.
pub async fn try_visit_with(
    url: &str,
    screenshot: &Path,
    options: Options<'_>,
) -> Result<Visit, String> {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (tests/run.sh does)"
    );
    let chromium = chromium_path();
    assert!(
        chromium.exists(),
        "{} is missing: `apt-get install chromium` (tests/run.sh does)",
        chromium.display()
    );
    if options.axe {
        assert!(
            dir.join("node_modules/axe-core").exists(),
            "axe-core is not installed: run `npm ci --prefix tests/browser` (tests/run.sh does)"
        );
    }
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("visit.mjs"))
        .args(["--url", url, "--timeout-ms", "30000"]);
    if options.axe {
        cmd.arg("--axe");
    }
    if options.dark {
        cmd.args(["--color-scheme", "dark"]);
    }
    if options.phone {
        cmd.arg("--phone");
    }
    if let Some(ca) = options.ca {
        cmd.arg("--ca").arg(ca);
    }
    if let Some(name) = options.click {
        cmd.args(["--click", name]);
    }
    if let Some(name) = options.wait_heading {
        cmd.args(["--wait-heading", name]);
    }
    let run = cmd
        .arg("--screenshot")
        .arg(screenshot)
        .env("PORTCULLIS_CHROMIUM", &chromium)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .unwrap_or_else(|_| panic!("Chromium did not finish visiting {url} within 90 s"))
        .expect("run node tests/browser/visit.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(line)
        && let Some(error) = map.get("error")
    {
        return Err(format!(
            "{}\n{}",
            error.as_str().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "visit.mjs printed no visit ({e}); exit {:?}\nstdout: {stdout}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    }))
}
