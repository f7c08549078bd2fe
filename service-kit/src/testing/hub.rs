//! A plain OAuth 2.0 provider in GitHub's shape, for the auth service's
//! tests and the benchmark: `/login/oauth/authorize` signs the configured
//! user in at once and sends the browser back; `/login/oauth/access_token`
//! checks client authentication (Basic, form-encoded as RFC 6749 §2.3.1
//! asks), the code once, PKCE S256 and the redirect URI; `/user` and
//! `/user/emails` answer as GitHub does. It can be told to be slow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

/// A user at the GitHub-shaped provider.
#[derive(Clone)]
pub struct HubUser {
    pub id: u64,
    pub login: String,
    /// The public email of `/user` (GitHub leaves it null when private).
    pub public_email: Option<String>,
    /// `/user/emails`: (address, primary, verified).
    pub emails: Vec<(String, bool, bool)>,
}

#[derive(Default)]
struct HubState {
    client_id: String,
    client_secret: String,
    user: Option<HubUser>,
    /// code -> (code_challenge, redirect_uri)
    codes: HashMap<String, (String, String)>,
    /// access tokens handed out
    tokens: Vec<String>,
    delay: Duration,
}

/// A plain OAuth 2.0 provider in GitHub's shape, on a loopback port.
pub struct Hub {
    pub url: String,
    state: Arc<Mutex<HubState>>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Hub {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl Hub {
    /// Starts on a free loopback port, for the one client `client_id`.
    pub async fn start(client_id: &str, client_secret: &str) -> Hub {
        let state = Arc::new(Mutex::new(HubState {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            ..HubState::default()
        }));
        let shared = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route("/login/oauth/authorize", web::get().to(hub_authorize))
                .route("/login/oauth/access_token", web::post().to(hub_token))
                .route("/user", web::get().to(hub_user))
                .route("/user/emails", web::get().to(hub_emails))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("bind");
        let url = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Hub { url, state, handle }
    }

    /// Who signs in next.
    pub fn sign_in_as(&self, user: HubUser) {
        self.lock().user = Some(user);
    }

    /// Every answer of the token and user endpoints waits this long.
    pub fn slow_down(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().tokens.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The auth service's variables for this provider as `name`.
    pub fn env(&self, name: &str, with_emails: bool) -> Vec<(String, String)> {
        let up = name.to_uppercase();
        let s = self.lock();
        let mut env = vec![
            (format!("AUTH_OAUTH_{up}_CLIENT_ID"), s.client_id.clone()),
            (
                format!("AUTH_OAUTH_{up}_CLIENT_SECRET"),
                s.client_secret.clone(),
            ),
            (
                format!("AUTH_OAUTH_{up}_AUTHORIZATION_URL"),
                format!("{}/login/oauth/authorize", self.url),
            ),
            (
                format!("AUTH_OAUTH_{up}_TOKEN_URL"),
                format!("{}/login/oauth/access_token", self.url),
            ),
            (
                format!("AUTH_OAUTH_{up}_USERINFO_URL"),
                format!("{}/user", self.url),
            ),
            (
                format!("AUTH_OAUTH_{up}_SCOPES"),
                "read:user user:email".into(),
            ),
        ];
        if with_emails {
            env.push((
                format!("AUTH_OAUTH_{up}_EMAILS_URL"),
                format!("{}/user/emails", self.url),
            ));
        }
        env
    }
}

type Hubbed = web::Data<Mutex<HubState>>;

fn hub(state: &Hubbed) -> std::sync::MutexGuard<'_, HubState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Signs the configured user in at once and sends the browser back.
async fn hub_authorize(state: Hubbed, query: web::Query<HashMap<String, String>>) -> HttpResponse {
    let q = query.into_inner();
    let (Some(redirect), Some(st), Some(challenge)) = (
        q.get("redirect_uri"),
        q.get("state"),
        q.get("code_challenge"),
    ) else {
        return HttpResponse::BadRequest().body("redirect_uri, state and code_challenge required");
    };
    if q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || q.get("client_id").map(String::as_str) != Some(hub(&state).client_id.as_str())
    {
        return HttpResponse::BadRequest().body("S256 and our client only");
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    hub(&state)
        .codes
        .insert(code.clone(), (challenge.clone(), redirect.clone()));
    HttpResponse::Found()
        .insert_header(("Location", format!("{redirect}?code={code}&state={st}")))
        .finish()
}

/// The token endpoint: client authentication, the code once, PKCE S256,
/// the same redirect_uri.
async fn hub_token(
    state: Hubbed,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let delay = hub(&state).delay;
    tokio::time::sleep(delay).await;
    let f = form.into_inner();
    let (id, secret) = {
        let s = hub(&state);
        (urlencode(&s.client_id), urlencode(&s.client_secret))
    };
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(basic.as_str());
    let refuse = |error: &str| HttpResponse::BadRequest().json(json!({"error": error}));
    if !authorized {
        return refuse("invalid_client");
    }
    let mut s = hub(&state);
    let Some((challenge, redirect)) = f.get("code").and_then(|c| s.codes.remove(c)) else {
        return refuse("invalid_grant");
    };
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    if computed != challenge || f.get("redirect_uri") != Some(&redirect) {
        return refuse("invalid_grant");
    }
    let token = format!("gho_{}", uuid::Uuid::new_v4().simple());
    s.tokens.push(token.clone());
    HttpResponse::Ok().json(
        json!({"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}),
    )
}

fn bearer_ok(state: &Hubbed, req: &HttpRequest) -> bool {
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    presented.is_some_and(|t| hub(state).tokens.contains(&t))
}

async fn hub_user(state: Hubbed, req: HttpRequest) -> HttpResponse {
    let delay = hub(&state).delay;
    tokio::time::sleep(delay).await;
    if !bearer_ok(&state, &req) {
        return HttpResponse::Unauthorized().json(json!({"message": "Bad credentials"}));
    }
    let Some(u) = hub(&state).user.clone() else {
        return HttpResponse::InternalServerError().finish();
    };
    HttpResponse::Ok()
        .json(json!({"id": u.id, "login": u.login, "email": u.public_email, "name": null}))
}

async fn hub_emails(state: Hubbed, req: HttpRequest) -> HttpResponse {
    if !bearer_ok(&state, &req) {
        return HttpResponse::Unauthorized().json(json!({"message": "Bad credentials"}));
    }
    let Some(u) = hub(&state).user.clone() else {
        return HttpResponse::InternalServerError().finish();
    };
    let list: Vec<Value> = u
        .emails
        .iter()
        .map(|(e, p, v)| json!({"email": e, "primary": p, "verified": v, "visibility": null}))
        .collect();
    HttpResponse::Ok().json(list)
}

/// application/x-www-form-urlencoded, as RFC 6749 §2.3.1 asks of the
/// client id and secret in Basic authentication.
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
