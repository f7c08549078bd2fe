//! `POST /webhooks/auth`: signed events from the auth service.

use actix_web::{web, HttpRequest, HttpResponse};
use shared_types::webhook::VerifyError;
use shared_types::WebhookEvent;

use crate::error::ApiError;
use crate::sync;
use crate::AppState;

/// Verifies the Standard Webhooks signature (401 `invalid_signature` for a
/// bad or missing one, or a timestamp more than five minutes off), then
/// applies the event once. Answers 204 once the change is committed: the
/// auth service retries anything else.
#[utoipa::path(post, path = "/webhooks/auth", tag = "webhooks", request_body = shared_types::WebhookEvent, params(("webhook-id" = String, Header, description = "Standard Webhooks message id"), ("webhook-timestamp" = i64, Header, description = "Unix seconds"), ("webhook-signature" = String, Header, description = "`v1,<base64 HMAC-SHA256>` with AUTH_WEBHOOK_SECRET")), responses((status = 204, description = "Applied (or already applied)")), security(()))]
pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let bad = |detail: &str| ApiError::unauthorized("invalid_signature", detail);
    let (Some(id), Some(timestamp), Some(signature)) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ) else {
        return Err(bad(
            "webhook-id, webhook-timestamp and webhook-signature are required",
        ));
    };
    if id.is_empty() || id.len() > 128 {
        return Err(bad("webhook-id is malformed"));
    }
    state
        .settings
        .webhook_key
        .verify(
            id,
            timestamp,
            signature,
            &body,
            chrono::Utc::now().timestamp(),
        )
        .map_err(|e| match e {
            VerifyError::Timestamp => {
                bad("webhook-timestamp is missing or more than 5 minutes off")
            }
            VerifyError::Signature => bad("the signature does not match"),
        })?;
    let event: WebhookEvent = serde_json::from_slice(&body).map_err(|e| {
        ApiError::validation("validation_failed", format!("not a webhook event: {e}"))
    })?;
    sync::apply_event(&state.db, &state.validator, id, &event).await?;
    Ok(HttpResponse::NoContent().finish())
}
