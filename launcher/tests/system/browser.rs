//! The web app in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`) against both services as
//! processes. Screenshots of the main screens are written to
//! `target/e2e-screenshots/` (see `screenshot_dir`).
//!
//! Without chromedriver the test says so and passes, unless
//! `REQUIRE_BROWSER=1` (CI sets it), so a green CI run always includes it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use launcher::system::free_port;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::stack::{client, get_json, scratch, Stack, SERIAL};

const WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "a long browser passphrase";

/// chromedriver and one Chromium session with a profile of its own.
struct Browser {
    web: Client,
    driver: Child,
    profile: PathBuf,
    shots: PathBuf,
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// `target/e2e-screenshots`, beside the binaries under test.
fn screenshot_dir() -> PathBuf {
    let bin = launcher::system::binary("auth-service").unwrap();
    // target/<profile>/auth-service → target/e2e-screenshots
    let target = bin.parent().and_then(|p| p.parent()).unwrap();
    target.join("e2e-screenshots")
}

impl Browser {
    async fn start() -> Option<Self> {
        let driver_bin = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let chromium = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let (Some(driver_bin), Some(chromium)) = (driver_bin, chromium) else {
            assert!(
                std::env::var("REQUIRE_BROWSER").as_deref() != Ok("1"),
                "REQUIRE_BROWSER=1 but chromium/chromedriver are not installed \
                 (apt-get install chromium chromium-driver)"
            );
            eprintln!("browser tests SKIPPED: chromium and chromium-driver are not installed");
            return None;
        };
        let port = free_port().unwrap();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = scratch("chromium-profile");
        // Headless, and nothing that reaches for the network: this machine's
        // network is closed, and a test must not depend on it anyway.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1100,900",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let web = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&url)
            .await
            .unwrap();
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).unwrap();
        Some(Self {
            web,
            driver,
            profile,
            shots,
        })
    }

    async fn goto(&self, url: &str) {
        self.web.goto(url).await.unwrap();
    }

    /// Waits for an element matching the XPath `path`.
    async fn wait_for(&self, path: &str) -> fantoccini::elements::Element {
        match self
            .web
            .wait()
            .at_most(WAIT)
            .for_element(Locator::XPath(path))
            .await
        {
            Ok(el) => el,
            Err(e) => {
                let source = self.web.source().await.unwrap_or_default();
                let url = self
                    .web
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                panic!("waited for {path}: {e}\nat {url}; page:\n{source}")
            }
        }
    }

    /// Waits for the page heading to read `title`.
    async fn heading(&self, title: &str) {
        self.wait_for(&format!("//main/h1[normalize-space()='{title}']"))
            .await;
    }

    async fn fill(&self, name: &str, value: &str) {
        let input = self.wait_for(&format!("//main//*[@name='{name}']")).await;
        input.clear().await.unwrap();
        input.send_keys(value).await.unwrap();
    }

    async fn click(&self, text: &str) {
        self.wait_for(&format!("//button[normalize-space()='{text}']"))
            .await
            .click()
            .await
            .unwrap();
    }

    async fn shot(&self, name: &str) {
        let png = self.web.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn nav_shown(&self) -> bool {
        let nav = self.web.find(Locator::Id("nav")).await.unwrap();
        nav.is_displayed().await.unwrap()
    }

    async fn eval(&self, script: &str) -> Value {
        self.web.execute(script, vec![]).await.unwrap()
    }

    async fn sign_up(&self, app: &str, email: &str) {
        self.goto(&format!("{app}/#signup")).await;
        self.heading("Create an account").await;
        self.fill("email", email).await;
        self.fill("password", PASSWORD).await;
        self.click("Create account").await;
        self.heading("Your tasks").await;
    }

    async fn add_task(&self, title: &str, description: &str) {
        self.fill("title", title).await;
        self.fill("description", description).await;
        self.click("Add task").await;
        self.wait_for(&task_xpath(title)).await;
    }

    async fn close(mut self) {
        let _ = self.web.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Waits until the mirror holds the one user, in step with the auth service.
async fn mirror_holds_one_user(stack: &Stack) {
    let deadline = Instant::now() + WAIT;
    loop {
        let health = stack.sync_health().await;
        if health["local_user_count"] == 1 && health["difference"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mirror never got the user: {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn task_xpath(title: &str) -> String {
    format!("//ul[@aria-label='Your tasks']/li[.//label[normalize-space()='{title}']]")
}

fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", Uuid::new_v4().simple())
}

/// `POST /v1/login` over the API (a second device); the pair.
async fn api_login(auth: &str, email: &str, code: Option<String>) -> Value {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let Some(code) = code {
        body["totp_code"] = json!(code);
    }
    let res = client()
        .post(format!("{auth}/v1/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "API login of {email}");
    res.json().await.unwrap()
}

async fn status_with(url: &str, token: &str) -> u16 {
    client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn web_app_sign_up_tasks_reload_verify_logout_everywhere_second_user_and_totp() {
    let _serial = SERIAL.lock().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let stack = Stack::start("browser", &[], &[]).await;
    let (app, auth) = (stack.main.url(), stack.auth.url());

    // The sign-in page first: what a newcomer sees.
    browser.goto(&app).await;
    browser.heading("Sign in").await;
    assert!(!browser.nav_shown().await, "signed out: no app navigation");
    browser.shot("01-sign-in").await;

    // Sign-up, and the user reaches the main backend's mirror.
    let alice = unique_email("alice");
    browser.goto(&format!("{app}/#signup")).await;
    browser.heading("Create an account").await;
    browser.fill("email", &alice).await;
    browser.fill("password", PASSWORD).await;
    browser.fill("full_name", "Alice Example").await;
    browser.shot("02-sign-up").await;
    browser.click("Create account").await;
    browser.heading("Your tasks").await;
    assert!(browser.nav_shown().await);
    mirror_holds_one_user(&stack).await;

    // Tasks: add two, complete one.
    browser.add_task("Buy milk", "Two litres").await;
    browser.add_task("Write report", "").await;
    browser
        .wait_for(&format!(
            "{}//input[@type='checkbox']",
            task_xpath("Buy milk")
        ))
        .await
        .click()
        .await
        .unwrap();
    browser
        .wait_for(&format!(
            "{}//label[contains(@class,'done')]",
            task_xpath("Buy milk")
        ))
        .await;
    browser.shot("03-tasks").await;
    // Phone-sized: nothing wider than the screen.
    browser.web.set_window_size(390, 844).await.unwrap();
    browser.shot("04-tasks-phone").await;
    let overflow = browser
        .eval("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .await;
    assert_eq!(overflow, json!(0), "horizontal scrolling on a phone");
    browser.web.set_window_size(1100, 900).await.unwrap();

    // Nothing in web storage, and no token in a script-readable cookie.
    let storage = browser
        .eval("return [localStorage.length, sessionStorage.length, document.cookie]")
        .await;
    assert_eq!(storage, json!([0, 0, ""]), "web storage and cookies");

    // A reload keeps the session through the refresh cookie (the access
    // token lived only in the old page's memory).
    browser.web.refresh().await.unwrap();
    browser.heading("Your tasks").await;
    let milk = browser
        .wait_for(&format!(
            "{}//input[@type='checkbox']",
            task_xpath("Buy milk")
        ))
        .await;
    assert_eq!(milk.prop("checked").await.unwrap().as_deref(), Some("true"));
    browser.wait_for(&task_xpath("Write report")).await;

    // The refresh cookie, seen from a page on its own path: the browser
    // holds it (WebDriver sees everything), scripts do not.
    browser.goto(&format!("{auth}/v1/token/refresh")).await;
    let cookies = browser.web.get_all_cookies().await.unwrap();
    let refresh = cookies
        .iter()
        .find(|c| c.name() == "refresh_token")
        .expect("the browser holds the refresh cookie");
    assert_eq!(refresh.http_only(), Some(true));
    assert_eq!(refresh.path(), Some("/v1/token"));
    assert_eq!(
        refresh.same_site().map(|s| s.to_string()).as_deref(),
        Some("Strict")
    );
    assert_eq!(browser.eval("return document.cookie").await, json!(""));

    // The mail's verification link opens the web app's page, which spends
    // the token and takes it out of the address bar.
    let mails = std::fs::read_to_string(stack.system.dir().join("mail.jsonl")).unwrap();
    let link = mails
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|m| m["to"] == alice.as_str() && m["kind"] == "email_verification")
        .expect("a verification mail")["link"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        link.starts_with(&format!("{app}/account/verify-email?token=")),
        "{link}"
    );
    browser.goto(&link).await;
    browser
        .wait_for("//main/p[normalize-space()='Your email address is verified.']")
        .await;
    browser.shot("05-email-verified").await;
    let url = browser.web.current_url().await.unwrap();
    assert_eq!(url.path(), "/account/verify-email");
    assert_eq!(url.query(), None, "the token left the address bar");

    // A second device of Alice's, over the API.
    let other = api_login(&auth, &alice, None).await;
    let other_token = other["access_token"].as_str().unwrap().to_owned();
    let alice_id = other["user_id"].as_str().unwrap().to_owned();
    assert_eq!(
        status_with(&format!("{app}/v1/me"), &other_token).await,
        200
    );

    // Security: both sessions listed; "log out everywhere" ends both.
    browser.goto(&format!("{app}/#security")).await;
    browser.heading("Security").await;
    let sessions = "//ul[@aria-label='Signed-in devices']/li";
    browser.wait_for(&format!("({sessions})[2]")).await;
    browser
        .wait_for(&format!(
            "{sessions}//span[normalize-space()='this device']"
        ))
        .await;
    browser.shot("06-security").await;
    browser.click("Log out everywhere").await;
    browser.heading("Sign in").await;
    let deadline = Instant::now() + WAIT;
    while status_with(&format!("{app}/v1/me"), &other_token).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the other device's token still works"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.web.refresh().await.unwrap();
    browser.heading("Sign in").await;
    assert!(!browser.nav_shown().await, "signed out: no app navigation");

    // A wrong password: the problem is shown as words, in an alert.
    browser.fill("email", &alice).await;
    browser.fill("password", "not the password").await;
    browser.click("Sign in").await;
    browser
        .wait_for("//p[@role='alert' and normalize-space()='The email or password is incorrect.']")
        .await;
    browser.shot("07-sign-in-error").await;

    // A second user sees none of Alice's tasks, in the page or the API.
    let bob = unique_email("bob");
    browser.sign_up(&app, &bob).await;
    browser
        .wait_for("//main//p[normalize-space()='No tasks yet.']")
        .await;
    let listed = browser
        .web
        .find_all(Locator::XPath("//ul[@aria-label='Your tasks']/li"))
        .await
        .unwrap();
    assert!(listed.is_empty(), "Bob sees {} tasks", listed.len());
    let bob_api = api_login(&auth, &bob, None).await;
    let bob_token = bob_api["access_token"].as_str().unwrap();
    assert_eq!(
        status_with(&format!("{app}/v1/users/{alice_id}/tasks"), bob_token).await,
        403
    );

    // Bob turns on TOTP, signs out, and signs in with a code.
    browser.goto(&format!("{app}/#security")).await;
    browser.heading("Security").await;
    browser.click("Set up two-factor sign-in").await;
    let secret = browser
        .wait_for("//code[@id='totp-secret']")
        .await
        .text()
        .await
        .unwrap();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let code = auth_service::mfa::code_at(&secret, now()).unwrap();
    browser.fill("code", &code).await;
    // Turning TOTP on asks for the password too (a stolen session alone
    // cannot enroll a factor); the email form above has a field of that name.
    let enable_form = "//form[@aria-label='Confirm two-factor sign-in']";
    let password = browser
        .wait_for(&format!("{enable_form}//input[@name='password']"))
        .await;
    password.send_keys(PASSWORD).await.unwrap();
    browser.click("Turn on").await;
    browser
        .wait_for("//ul[@aria-label='Recovery codes']/li[10]")
        .await;
    browser.shot("08-recovery-codes").await;
    browser.click("Log out").await;
    browser.heading("Sign in").await;
    browser.fill("email", &bob).await;
    browser.fill("password", PASSWORD).await;
    browser.click("Sign in").await;
    // The code field appears once the service asks for it.
    let code_field = browser.wait_for("//main//input[@name='totp_code']").await;
    browser
        .wait_for("//main//div[not(@hidden)]/input[@name='totp_code']")
        .await;
    browser.shot("09-sign-in-code").await;
    // The step after the one used to enable (each step is accepted once).
    let next = auth_service::mfa::code_at(&secret, now() + 30).unwrap();
    code_field.send_keys(&next).await.unwrap();
    browser.click("Sign in").await;
    browser.heading("Your tasks").await;

    browser.close().await;
}

/// The page renews its access token before it expires, through the cookie,
/// with no request failing first: with one-minute tokens the session's
/// `last_used_at` (moved by each refresh) advances before the minute is up.
/// About a minute long, so it runs on the SQLite pass only.
#[tokio::test]
async fn web_app_refreshes_the_access_token_silently_before_expiry() {
    if crate::stack::postgres().is_some() {
        eprintln!("SQLite pass only (a minute of waiting)");
        return;
    }
    let _serial = SERIAL.lock().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let stack = Stack::start(
        "browser-refresh",
        &[("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", "1")],
        &[],
    )
    .await;
    let (app, auth) = (stack.main.url(), stack.auth.url());
    let user = unique_email("carol");
    browser.sign_up(&app, &user).await;
    let signed_up = Instant::now();
    let other = api_login(&auth, &user, None).await;
    let other_token = other["access_token"].as_str().unwrap().to_owned();
    let browser_session = || async {
        let sessions = get_json(
            &stack.client,
            &format!("{auth}/v1/sessions"),
            Some(&other_token),
        )
        .await;
        sessions
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["user_agent"].as_str().unwrap_or("").contains("Chrome"))
            .cloned()
            .expect("the browser's session is listed")
    };
    let first_use = browser_session().await["last_used_at"].clone();
    loop {
        let elapsed = signed_up.elapsed();
        assert!(
            elapsed < Duration::from_secs(58),
            "no refresh within {elapsed:?} of a 60 s token"
        );
        if browser_session().await["last_used_at"] != first_use {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Past the first token's expiry the page works on, with the new one.
    let left = Duration::from_secs(62).saturating_sub(signed_up.elapsed());
    tokio::time::sleep(left).await;
    browser.add_task("After the first token expired", "").await;
    browser.close().await;
}

/// "Continue with …": the web app signs a new user in through a real OpenID
/// Connect provider (oidc-provider, signing its default account in without
/// a form), lists the identity under Security, refuses to remove the last
/// way to sign in, and signs the same user in again after logging out.
#[tokio::test]
async fn web_app_signs_in_with_an_openid_connect_provider() {
    let _serial = SERIAL.lock().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let account = unique_email("dana");
    let (client_id, secret) = ("browser-test-client", "the browser test's client secret");
    let Some((issuer, mut provider)) =
        service_kit::testing::start_oidc_provider(client_id, secret, Some(&account))
    else {
        browser.close().await;
        return;
    };
    let stack = Stack::start(
        "browser-oidc",
        &[
            ("AUTH_OAUTH_PROVIDERS", "idp"),
            ("AUTH_OAUTH_IDP_CLIENT_ID", client_id),
            ("AUTH_OAUTH_IDP_CLIENT_SECRET", secret),
            ("AUTH_OAUTH_IDP_ISSUER", &issuer),
            ("AUTH_OAUTH_IDP_DISPLAY_NAME", "Test OIDC"),
        ],
        &[],
    )
    .await;
    let app = stack.main.url();

    browser.goto(&app).await;
    browser.heading("Sign in").await;
    browser
        .wait_for("//button[normalize-space()='Continue with Test OIDC']")
        .await;
    browser.shot("10-sign-in-with-a-provider").await;
    browser.click("Continue with Test OIDC").await;
    browser.heading("Your tasks").await;
    // The one-time code has left the address bar.
    let url = browser.web.current_url().await.unwrap();
    assert_eq!((url.path(), url.fragment()), ("/", Some("tasks")), "{url}");
    mirror_holds_one_user(&stack).await;

    // Security lists the provider; the account has no password, so its
    // only identity cannot be removed, and the page says why.
    browser.goto(&format!("{app}/#security")).await;
    browser.heading("Security").await;
    let identity = format!(
        "//ul[@aria-label='Linked sign-in providers']/li[.//span[normalize-space()='Test OIDC'] and .//p[normalize-space()='{account}']]"
    );
    browser.wait_for(&identity).await;
    browser
        .eval("document.querySelector(\"[aria-label='Linked sign-in providers']\").scrollIntoView(); return 0")
        .await;
    browser.shot("11-sign-in-providers").await;
    browser.click("Remove").await;
    browser
        .wait_for(
            "//*[@id='status' and contains(normalize-space(), 'This is your last way to sign in')]",
        )
        .await;
    browser.wait_for(&identity).await;

    // Signed out and back in through the button: the same account.
    browser.click("Log out").await;
    browser.heading("Sign in").await;
    browser.click("Continue with Test OIDC").await;
    browser.heading("Your tasks").await;
    assert_eq!(stack.sync_health().await["local_user_count"], 1);

    browser.close().await;
    let _ = provider.kill();
    let _ = provider.wait();
}

/// WebDriver's WebAuthn extension: a virtual authenticator in this browser
/// session (CTAP2, internal, resident keys, user verification that always
/// succeeds), as a platform passkey provider would be.
#[derive(Debug)]
struct AddVirtualAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for AddVirtualAuthenticator {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/webauthn/authenticator",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (reqwest::Method, Option<String>) {
        let body = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserVerified": true,
            "automaticPresenceSimulation": true,
        });
        (reqwest::Method::POST, Some(body.to_string()))
    }
}

/// Passkeys in a real browser with a virtual authenticator: add one under
/// Security, sign out, sign in with it (with the email typed and without),
/// as a user with TOTP who is not asked for a code. The app is opened at
/// `localhost`: browsers refuse an IP address as a relying party id.
#[tokio::test]
async fn web_app_adds_a_passkey_and_signs_in_with_it() {
    let _serial = SERIAL.lock().await;
    let Some(browser) = Browser::start().await else {
        return;
    };
    browser
        .web
        .issue_cmd(AddVirtualAuthenticator)
        .await
        .expect("a virtual authenticator");
    let stack = Stack::start_at_localhost("browser-passkeys", &[], &[]).await;
    let app = stack.main.url().replace("127.0.0.1", "localhost");
    let erin = unique_email("erin");
    browser.sign_up(&app, &erin).await;
    // Erin has two-factor sign-in (turned on over the API, from a second
    // session): a passkey is both factors, so no code will be asked.
    let auth = stack.auth.url();
    let api = api_login(&auth, &erin, None).await;
    let token = api["access_token"].as_str().unwrap().to_owned();
    let setup: Value = client()
        .post(format!("{auth}/v1/mfa/totp/setup"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = auth_service::mfa::code_at(setup["secret"].as_str().unwrap(), now).unwrap();
    let enabled = client()
        .post(format!("{auth}/v1/mfa/totp/enable"))
        .bearer_auth(&token)
        .json(&json!({"code": code, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), 200);

    browser.goto(&format!("{app}/#security")).await;
    browser.heading("Security").await;
    browser.fill("passkey_password", PASSWORD).await;
    browser.click("Add a passkey").await;
    let passkeys = "//ul[@aria-label='Passkeys']/li[.//span[normalize-space()='This device']]";
    browser.wait_for(passkeys).await;
    browser
        .eval("document.querySelector(\"[aria-label='Passkeys']\").scrollIntoView(); return 0")
        .await;
    browser.shot("12-passkeys").await;

    // Signed out, then in with the passkey: first with the email typed
    // (its passkeys offered), then without (the discoverable credential).
    for with_email in [true, false] {
        browser.click("Log out").await;
        browser.heading("Sign in").await;
        if with_email {
            browser.fill("email", &erin).await;
        }
        browser.click("Sign in with a passkey").await;
        browser.heading("Your tasks").await;
    }
    browser.close().await;
}
