//! HTTPS only, no anonymous access, client certificates name the user, the
//! join token buys node credentials, other users are refused.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use paddock_apiserver::pki::{Pki, Subject};
use paddock_testkit::server::Server;
use serde_json::{Value, json};

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");

fn body(out: &std::process::Output) -> Result<Value> {
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&out.stdout)))
}

fn code(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn anonymous_requests_get_401_and_plain_http_is_refused() -> Result<()> {
    let server = Server::start(Path::new(PADDOCK), &[])?;
    for path in [
        "/api",
        "/api/v1/namespaces/default/pods",
        "/healthz",
        "/version",
    ] {
        let out = server.curl_anonymous(&[path])?;
        let status = body(&out)?;
        ensure!(
            status["kind"] == "Status"
                && status["code"] == 401
                && status["reason"] == "Unauthorized",
            "{path}: {status}"
        );
    }
    let plain = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{}/api", server.port()),
        ])
        .output()?;
    ensure!(!String::from_utf8_lossy(&plain.stdout).contains("APIVersions"));
    let admin = body(&server.curl(&["/api"])?)?;
    ensure!(admin["kind"] == "APIVersions", "{admin}");
    Ok(())
}

#[test]
fn join_token_buys_node_credentials_and_pins_the_ca() -> Result<()> {
    let server = Server::start(Path::new(PADDOCK), &["--token", "s3cret"])?;
    let cacerts = server.curl_anonymous(&["/cacerts"])?;
    let ca = std::fs::read(server.tls_file("ca.crt"))?;
    ensure!(cacerts.stdout == ca, "/cacerts is not the CA");
    let token = std::fs::read_to_string(server.data_dir().join("server/token"))?;
    let token = token.trim();
    let out = std::process::Command::new("sha256sum")
        .arg(server.tls_file("ca.crt"))
        .output()?;
    let hash = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    ensure!(token == format!("K10{hash}::server:s3cret"), "{token}");

    let request = json!({"nodeName": "w1-k8s", "addresses": ["192.168.56.11"]}).to_string();
    let ask = |auth: &str| {
        server.curl_anonymous(&[
            "-X",
            "POST",
            "-H",
            auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            &request,
            "-w",
            "\n%{http_code}",
            "/v1-paddock/node-credentials",
        ])
    };
    let refused = ask("Authorization: Bearer K10nope::server:s3cret")?;
    ensure!(code(&refused) == "401", "{refused:?}");
    let granted = ask(&format!("Authorization: Bearer {token}"))?;
    ensure!(code(&granted) == "200", "{granted:?}");
    let text = String::from_utf8_lossy(&granted.stdout);
    let creds: Value = serde_json::from_str(text.lines().next().unwrap_or_default())?;
    ensure!(creds["ca"].as_str() == Some(String::from_utf8_lossy(&ca).as_ref()));

    let dir = server.data_dir();
    std::fs::write(
        dir.join("node.crt"),
        creds["clientCert"].as_str().unwrap_or_default(),
    )?;
    std::fs::write(
        dir.join("node.key"),
        creds["clientKey"].as_str().unwrap_or_default(),
    )?;
    let as_node = server.curl_with(
        &dir.join("node.crt"),
        &dir.join("node.key"),
        &["-w", "\n%{http_code}", "/api/v1/nodes"],
    )?;
    ensure!(code(&as_node) == "200", "{as_node:?}");

    let subject = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-ext", "subjectAltName"])
        .stdin(std::fs::File::open(dir.join("node.crt"))?)
        .output()?;
    let subject = String::from_utf8_lossy(&subject.stdout);
    ensure!(
        subject.contains("system:nodes") && subject.contains("system:node:w1-k8s"),
        "{subject}"
    );
    std::fs::write(
        dir.join("serving.crt"),
        creds["servingCert"].as_str().unwrap_or_default(),
    )?;
    let serving = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(std::fs::File::open(dir.join("serving.crt"))?)
        .output()?;
    let serving = String::from_utf8_lossy(&serving.stdout);
    ensure!(
        serving.contains("192.168.56.11") && serving.contains("w1-k8s"),
        "{serving}"
    );
    Ok(())
}

#[test]
fn users_outside_the_admin_and_node_groups_are_forbidden() -> Result<()> {
    let server = Server::start(Path::new(PADDOCK), &[])?;
    let pki = Pki::load_or_create(&server.data_dir().join("server/tls"))?;
    let alice = pki.client_cert(&Subject {
        common_name: "alice".into(),
        organizations: vec!["developers".into()],
    })?;
    let dir = server.data_dir();
    std::fs::write(dir.join("alice.crt"), &alice.cert_pem)?;
    std::fs::write(dir.join("alice.key"), &alice.key_pem)?;
    let out = server.curl_with(
        &dir.join("alice.crt"),
        &dir.join("alice.key"),
        &["/api/v1/namespaces/default/pods"],
    )?;
    let status = body(&out)?;
    ensure!(
        status["code"] == 403 && status["reason"] == "Forbidden",
        "{status}"
    );
    ensure!(
        status["message"]
            == "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
        "{status}"
    );
    Ok(())
}
