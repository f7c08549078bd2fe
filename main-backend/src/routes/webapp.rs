//! The browser app (`web/`), embedded in the binary: no CDN, no build step.
//! `/` and the mail links' `/account/...` pages are the same page; the
//! script decides what to show. `/app/config.json` tells it where the auth
//! service is, since the page calls it directly (its refresh cookie must
//! never pass through this backend).

use actix_web::http::header::{self, CacheControl, CacheDirective};
use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::AppState;

const INDEX: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/app.css");

/// The pages mail links open (`{AUTH_APP_URL}/account/{page}?token=`),
/// and where a provider sign-in returns (`/account/oauth#code=`).
const ACCOUNT_PAGES: &[&str] = &["verify-email", "reset-password", "confirm-email", "oauth"];

/// Headers every asset carries: revalidate (a new binary serves new
/// assets), no sniffing, no framing, and no Referer — the account pages'
/// address holds a one-time token until the script removes it.
fn asset(content_type: &'static str, csp: Option<String>) -> actix_web::HttpResponseBuilder {
    let mut answer = HttpResponse::Ok();
    answer
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if let Some(csp) = csp {
        answer.insert_header((header::CONTENT_SECURITY_POLICY, csp));
    }
    answer
}

/// Scripts and styles from this origin only, no inline code, and network
/// calls to this origin and the auth service alone.
fn page(state: &AppState) -> HttpResponse {
    let auth = service_kit::config::origin_of(&state.settings.auth_public_url).unwrap_or_default();
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {auth}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    asset("text/html; charset=utf-8", Some(csp)).body(INDEX)
}

#[utoipa::path(get, path = "/", tag = "web app", responses((status = 200, description = "The web app", body = String, content_type = "text/html")), security(()))]
pub async fn index(state: web::Data<AppState>) -> HttpResponse {
    page(&state)
}

#[utoipa::path(get, path = "/account/{page}", tag = "web app", params(("page" = String, Path, description = "verify-email, reset-password, confirm-email or oauth")), responses((status = 200, description = "A mail link's page, or a provider sign-in's way back", body = String, content_type = "text/html")), security(()))]
pub async fn account(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !ACCOUNT_PAGES.contains(&path.as_str()) {
        return Err(ApiError::not_found("no such page"));
    }
    Ok(page(&state))
}

#[utoipa::path(get, path = "/app.js", tag = "web app", responses((status = 200, description = "The web app's script", body = String, content_type = "text/javascript")), security(()))]
pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", None).body(SCRIPT)
}

#[utoipa::path(get, path = "/app.css", tag = "web app", responses((status = 200, description = "The web app's style sheet", body = String, content_type = "text/css")), security(()))]
pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", None).body(STYLE)
}

#[utoipa::path(get, path = "/app/config.json", tag = "web app", responses((status = 200, description = "Where the auth service is", body = Object)), security(()))]
pub async fn config(state: web::Data<AppState>) -> HttpResponse {
    asset("application/json", None).json(json!({ "auth_url": state.settings.auth_public_url }))
}
