//! The operators' alert rules and dashboard (deploy/prometheus/alerts.yml,
//! deploy/grafana/dashboard.json) against what the real services export:
//! both services are started and used (a sign-up delivered by webhook, a
//! failed and a good sign-in, a token checked through the main backend, a
//! write to an auth-owned field refused, a reconciliation), their /metrics
//! read, and every metric and label the rules, their promtool tests and
//! the dashboard name must be among them, so renaming a metric breaks this
//! test. Then `promtool check rules` and `promtool test rules` run (Debian's
//! `prometheus` package; CI installs it and sets REQUIRE_PROMTOOL=1).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::faults::register;
use crate::stack::{client, Stack, SERIAL};

const PREFIXES: [&str; 4] = ["auth_", "main_", "http_", "db_"];

fn deploy(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Metric name → label names, from a Prometheus text exposition.
fn exported(text: &str) -> HashMap<String, BTreeSet<String>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_owned()).or_default();
        if let Some(rest) = line[end..].strip_prefix('{') {
            let inner = &rest[..rest.find('}').unwrap_or(rest.len())];
            for pair in inner.split(',').filter(|p| !p.is_empty()) {
                labels.insert(pair.split('=').next().unwrap_or("").to_owned());
            }
        }
    }
    out
}

/// Every metric named in `text` (identifiers with our prefixes), with the
/// label names its selectors use (`name{key="v", key2=~"..."}`).
fn referenced(text: &str) -> HashMap<String, BTreeSet<String>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
            && bytes[i].is_ascii_lowercase();
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < bytes.len()
            && (bytes[j].is_ascii_lowercase() || bytes[j].is_ascii_digit() || bytes[j] == b'_')
        {
            j += 1;
        }
        let word = &text[i..j];
        if PREFIXES.iter().any(|p| word.starts_with(p))
            && j < bytes.len()
            && bytes[j] != b'.'
            && bytes[j] != b'/'
        {
            let labels = out.entry(word.to_owned()).or_default();
            if bytes.get(j) == Some(&b'{') {
                let close = text[j..].find('}').map_or(text.len(), |k| j + k);
                for pair in text[j + 1..close].split(',') {
                    let key = pair.split(['=', '!', '~']).next().unwrap_or("").trim();
                    if !key.is_empty() {
                        labels.insert(key.to_owned());
                    }
                }
            }
        }
        i = j;
    }
    out
}

#[tokio::test]
async fn alert_rules_and_dashboard_name_only_what_the_services_export() {
    let _serial = SERIAL.lock().await;
    // A reconciliation every second: its metrics exist from the first run.
    let stack = Stack::start("alerts", &[], &[("SYNC_INTERVAL_SECONDS", "1")]).await;
    let client = client();
    let (auth, main) = (stack.auth.url(), stack.main.url());
    let email = format!("alerts-{}@example.com", uuid::Uuid::new_v4().simple());
    let (_, token) = register(&client, &auth, &email)
        .await
        .unwrap()
        .expect("registered");
    let wrong = client
        .post(format!("{auth}/v1/login"))
        .json(&json!({"email": email, "password": "not the password at all"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    for _ in 0..2 {
        let me = client
            .get(format!("{main}/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
    }
    let refused = client
        .patch(format!("{main}/v1/me"))
        .bearer_auth(&token)
        .json(&json!({"email": "someone.else@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);

    // Everything used above shows in /metrics once the webhook is
    // delivered and a reconciliation has run.
    let mut metrics = HashMap::new();
    for _ in 0..100 {
        metrics.clear();
        for url in [&auth, &main] {
            let text = client
                .get(format!("{url}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            for (name, labels) in exported(&text) {
                metrics
                    .entry(name)
                    .or_insert_with(BTreeSet::new)
                    .extend(labels);
            }
        }
        if metrics.contains_key("auth_webhook_deliveries_total")
            && metrics.contains_key("main_reconcile_drift_total")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let sources = [
        (
            "deploy/prometheus/alerts.yml",
            deploy("prometheus/alerts.yml"),
        ),
        (
            "deploy/prometheus/alerts.test.yml",
            deploy("prometheus/alerts.test.yml"),
        ),
        (
            "deploy/grafana/dashboard.json",
            deploy("grafana/dashboard.json"),
        ),
    ];
    let dashboard: Value = serde_json::from_str(&sources[2].1).expect("dashboard is JSON");
    assert!(dashboard["panels"]
        .as_array()
        .is_some_and(|p| p.len() >= 10));
    let mut checked = 0;
    for (file, text) in &sources {
        for (name, labels) in referenced(text) {
            let Some(has) = metrics.get(&name) else {
                panic!("{file} names {name}, which neither service exports");
            };
            for label in labels {
                // Prometheus adds these at scrape time.
                if label == "instance"
                    || label == "job"
                    || label == "le" && name.ends_with("_bucket")
                {
                    continue;
                }
                assert!(
                    has.contains(&label),
                    "{file}: {name} has no label {label} (it has {has:?})"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} metric references found");

    let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(promtool) = promtool else {
        assert!(
            std::env::var("REQUIRE_PROMTOOL").as_deref() != Ok("1"),
            "promtool not found (apt-get install prometheus)"
        );
        eprintln!("promtool not found: the rules' own tests NOT run");
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts.test.yml"][..],
    ] {
        let out = std::process::Command::new(promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
