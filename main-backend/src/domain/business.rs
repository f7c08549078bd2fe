//! Request bodies and queries of the business routes, and the rules that
//! make them valid. Every refusal is 422 `validation_failed` naming the field;
//! unknown fields are refused by serde (`deny_unknown_fields`) the same way.

use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use service_kit::invalid::Invalid;

/// Serialized size limit of a JSON object field (settings, metadata).
pub const MAX_JSON_BYTES: usize = 16 * 1024;
/// Largest corpus document, in bytes (the request limit is 64 KiB).
pub const MAX_CONTENT_BYTES: usize = 48 * 1024;
/// Largest secret value, in bytes.
pub const MAX_SECRET_BYTES: usize = 8 * 1024;

fn invalid(field: &str, rule: impl std::fmt::Display) -> Invalid {
    Invalid::failed(format!("{field}: {rule}"))
}

/// Trimmed text of 1..=max characters without control characters
/// (newlines and tabs allowed where `multiline`).
fn text(field: &str, raw: &str, max: usize, multiline: bool) -> Result<String, Invalid> {
    let s = raw.trim();
    let bad_char =
        |c: char| c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r'));
    if s.is_empty() || s.chars().count() > max || s.chars().any(bad_char) {
        return Err(invalid(
            field,
            format!("1 to {max} characters, no control characters"),
        ));
    }
    Ok(s.to_owned())
}

/// A JSON object of at most `MAX_JSON_BYTES`, serialized for storage.
pub fn json_object(field: &str, value: Option<Value>) -> Result<String, Invalid> {
    let value = value.unwrap_or_else(|| Value::Object(Map::new()));
    if !value.is_object() {
        return Err(invalid(field, "must be a JSON object"));
    }
    let json = value.to_string();
    if json.len() > MAX_JSON_BYTES {
        return Err(invalid(
            field,
            format!("at most {MAX_JSON_BYTES} bytes of JSON"),
        ));
    }
    Ok(json)
}

/// `?limit=&cursor=` of every paged list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// A validated page request: newest first, items older than `before`.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: i64,
    pub before: Option<Uuid>,
}

impl PageRequest {
    /// The newest `limit` rows.
    pub fn first(limit: i64) -> Self {
        Self {
            limit,
            before: None,
        }
    }
}

impl PageQuery {
    pub fn parse(&self) -> Result<PageRequest, Invalid> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(invalid("limit", "from 1 to 100"));
        }
        let before = match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                c.parse::<Uuid>()
                    .map_err(|_| invalid("cursor", "not a cursor from an earlier page"))?,
            ),
        };
        Ok(PageRequest { limit, before })
    }
}

/// Turns rows fetched with one extra beyond the limit into a page: the
/// extra row becomes the next cursor, the rest their wire form.
pub fn page<R, T>(
    mut rows: Vec<R>,
    limit: i64,
    id: impl Fn(&R) -> Uuid,
    wire: impl Fn(&R) -> T,
) -> shared_types::Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| id(r).to_string())
    } else {
        None
    };
    shared_types::Page {
        items: rows.iter().map(wire).collect(),
        next_cursor,
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTaskBody {
    title: String,
    description: Option<String>,
    #[serde(default)]
    completed: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct NewTask {
    pub title: String,
    pub description: Option<String>,
    pub completed: bool,
}

fn description(raw: Option<&str>) -> Result<Option<String>, Invalid> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(d) => text("description", d, 10_000, true).map(Some),
    }
}

impl NewTask {
    pub fn parse(body: NewTaskBody) -> Result<Self, Invalid> {
        Ok(Self {
            title: text("title", &body.title, 200, false)?,
            description: description(body.description.as_deref())?,
            completed: body.completed,
        })
    }
}

/// `PATCH`: absent fields stay; `description: null` clears it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatchBody {
    title: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    completed: Option<bool>,
}

/// Tells `"field": null` (Some(None)) from an absent field (None).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub completed: Option<bool>,
}

impl TaskPatch {
    pub fn parse(body: TaskPatchBody) -> Result<Self, Invalid> {
        let patch = Self {
            title: body
                .title
                .map(|t| text("title", &t, 200, false))
                .transpose()?,
            description: body
                .description
                .map(|d| description(d.as_deref()))
                .transpose()?,
            completed: body.completed,
        };
        if patch == Self::default() {
            return Err(invalid(
                "body",
                "nothing to change: send title, description or completed",
            ));
        }
        Ok(patch)
    }
}

/// A secret's name: what the user calls it, e.g. `openai_api_key`.
pub fn secret_name(raw: &str) -> Result<String, Invalid> {
    let ok = !raw.is_empty()
        && raw.len() <= 100
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        return Err(invalid("name", "1 to 100 of A-Z, a-z, 0-9, _ . -"));
    }
    Ok(raw.to_owned())
}

/// Body of `PUT /v1/me/secrets/{name}`; no `Debug`: it holds the value.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretBody {
    #[schema(value_type = String)]
    pub value: secrecy::SecretString,
}

/// Checks a secret's value and gives its hint: the last 4 characters, and
/// only when the value has 16 or more, so a hint never gives away much.
pub fn secret_hint(value: &str) -> Result<Option<String>, Invalid> {
    if value.is_empty() || value.len() > MAX_SECRET_BYTES {
        return Err(invalid("value", format!("1 to {MAX_SECRET_BYTES} bytes")));
    }
    let chars: Vec<char> = value.chars().collect();
    Ok((chars.len() >= 16).then(|| chars[chars.len() - 4..].iter().collect()))
}

pub const SESSION_STATUSES: &[&str] = &["active", "completed", "failed", "cancelled"];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgentSessionBody {
    title: String,
    status: Option<String>,
    metadata: Option<Value>,
}

#[derive(Debug)]
pub struct NewAgentSession {
    pub title: String,
    pub status: String,
    pub metadata: String,
}

impl NewAgentSession {
    pub fn parse(body: NewAgentSessionBody) -> Result<Self, Invalid> {
        let status = body.status.unwrap_or_else(|| "active".into());
        if !SESSION_STATUSES.contains(&status.as_str()) {
            return Err(invalid(
                "status",
                format!("one of {}", SESSION_STATUSES.join(", ")),
            ));
        }
        Ok(Self {
            title: text("title", &body.title, 200, false)?,
            status,
            metadata: json_object("metadata", body.metadata)?,
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToolUsageBody {
    tool_name: String,
    success: bool,
    agent_session_id: Option<Uuid>,
    duration_ms: Option<i64>,
    metadata: Option<Value>,
}

#[derive(Debug)]
pub struct NewToolUsage {
    pub tool_name: String,
    pub success: bool,
    pub agent_session_id: Option<Uuid>,
    pub duration_ms: Option<i64>,
    pub metadata: String,
}

impl NewToolUsage {
    pub fn parse(body: NewToolUsageBody) -> Result<Self, Invalid> {
        let name_ok = !body.tool_name.is_empty()
            && body.tool_name.len() <= 100
            && body
                .tool_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.:-/".contains(&b));
        if !name_ok {
            return Err(invalid("tool_name", "1 to 100 of A-Z, a-z, 0-9, _ . : - /"));
        }
        if body
            .duration_ms
            .is_some_and(|d| !(0..=7 * 24 * 3600 * 1000).contains(&d))
        {
            return Err(invalid("duration_ms", "from 0 to a week"));
        }
        Ok(Self {
            tool_name: body.tool_name,
            success: body.success,
            agent_session_id: body.agent_session_id,
            duration_ms: body.duration_ms,
            metadata: json_object("metadata", body.metadata)?,
        })
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCorpusBody {
    title: String,
    content: String,
    content_type: Option<String>,
}

#[derive(Debug)]
pub struct NewCorpusItem {
    pub title: String,
    pub content: String,
    pub content_type: String,
}

impl NewCorpusItem {
    pub fn parse(body: NewCorpusBody) -> Result<Self, Invalid> {
        if body.content.is_empty() || body.content.len() > MAX_CONTENT_BYTES {
            return Err(invalid(
                "content",
                format!("1 to {MAX_CONTENT_BYTES} bytes"),
            ));
        }
        let content_type = body.content_type.unwrap_or_else(|| "text/plain".into());
        let mime_ok = content_type.len() <= 100
            && content_type.split_once('/').is_some_and(|(a, b)| {
                let token = |s: &str| {
                    !s.is_empty()
                        && s.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&c))
                };
                token(a) && token(b)
            });
        if !mime_ok {
            return Err(invalid(
                "content_type",
                "a media type such as text/markdown",
            ));
        }
        Ok(Self {
            title: text("title", &body.title, 200, false)?,
            content: body.content,
            content_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(v: Value) -> Result<NewTask, Invalid> {
        NewTask::parse(serde_json::from_value(v).expect("shape"))
    }

    #[test]
    fn task_rules() {
        let t = task(json!({"title": "  Write docs ", "description": ""})).expect("valid");
        assert_eq!(t.title, "Write docs");
        assert_eq!(t.description, None);
        for bad in [
            json!({"title": ""}),
            json!({"title": "x".repeat(201)}),
            json!({"title": "a\u{7}"}),
        ] {
            let e = task(bad).expect_err("invalid");
            assert!(e.detail.starts_with("title"), "{}", e.detail);
        }
        let patch: TaskPatchBody =
            serde_json::from_value(json!({"description": null})).expect("shape");
        assert_eq!(
            TaskPatch::parse(patch).expect("valid").description,
            Some(None)
        );
        let empty: TaskPatchBody = serde_json::from_value(json!({})).expect("shape");
        assert!(TaskPatch::parse(empty).is_err());
    }

    #[test]
    fn hints_never_give_away_short_secrets() {
        assert_eq!(secret_hint("short-secret").expect("ok"), None);
        assert_eq!(
            secret_hint("sk-0123456789abcdef").expect("ok").as_deref(),
            Some("cdef")
        );
        assert!(secret_hint("").is_err());
        assert!(secret_hint(&"x".repeat(MAX_SECRET_BYTES + 1)).is_err());
        assert!(secret_name("openai_api_key").is_ok());
        assert!(secret_name("bad name").is_err());
    }

    #[test]
    fn paging_cuts_the_extra_row_into_a_cursor() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let p = page(ids.clone(), 2, |u| *u, |u| *u);
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.next_cursor, Some(ids[1].to_string()));
        let p = page(ids, 3, |u| *u, |u| *u);
        assert_eq!(p.next_cursor, None);
        let q = PageQuery {
            limit: Some(0),
            cursor: None,
        };
        assert!(q.parse().is_err());
        let q = PageQuery {
            limit: None,
            cursor: Some("nope".into()),
        };
        assert!(q.parse().is_err());
    }
}
