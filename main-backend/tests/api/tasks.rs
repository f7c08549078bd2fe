//! Tasks through their routes, and every body the business routes refuse:
//! 422 naming the field, 400 for what is not JSON.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn tasks_are_created_changed_paged_and_deleted() {
    let stack = spawn_stack().await;
    let me = stack.caller().await;
    let base = format!("/v1/users/{}/tasks", me.id);
    let mut ids = Vec::new();
    for i in 0..5 {
        let res = stack
            .call(
                &me,
                Method::POST,
                &base,
                Some(json!({"title": format!("t{i}")})),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let task: Value = res.json().await.expect("task");
        assert_eq!(task["completed"], false);
        assert!(task["created_at"].is_string() && task["updated_at"].is_string());
        ids.push(task["id"].as_str().expect("id").to_owned());
    }
    // Newest first, two at a time, following the cursor to the end.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}?limit=2&cursor={c}"),
            None => format!("{base}?limit=2"),
        };
        let page = stack.ok_json(&me, Method::GET, &path, None).await;
        for item in page["items"].as_array().expect("items") {
            seen.push(item["id"].as_str().expect("id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);

    let one = format!("{base}/{}", ids[0]);
    let task = stack
        .ok_json(
            &me,
            Method::PATCH,
            &one,
            Some(json!({"completed": true, "description": "done it"})),
        )
        .await;
    assert_eq!(task["completed"], true);
    assert_eq!(task["description"], "done it");
    assert_eq!(task["title"], "t4");
    let task = stack
        .ok_json(&me, Method::PATCH, &one, Some(json!({"description": null})))
        .await;
    assert!(task["description"].is_null());
    let res = stack.call(&me, Method::DELETE, &one, None).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = stack.call(&me, Method::GET, &one, None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = stack.call(&me, Method::DELETE, &one, None).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invalid_bodies_are_422_naming_the_field() {
    let stack = spawn_stack().await;
    let me = stack.caller().await;
    let tasks = format!("/v1/users/{}/tasks", me.id);
    let task = stack.fill(&me, "me").await;
    let cases = [
        (Method::POST, tasks.clone(), json!({"title": ""}), "title"),
        (
            Method::POST,
            tasks.clone(),
            json!({"title": "x".repeat(201)}),
            "title",
        ),
        (
            Method::POST,
            tasks.clone(),
            json!({"title": "ok", "owner": "x"}),
            "owner",
        ),
        (
            Method::POST,
            tasks.clone(),
            json!({"description": "no title"}),
            "title",
        ),
        (
            Method::POST,
            tasks.clone(),
            json!({"title": "ok", "completed": "yes"}),
            "completed",
        ),
        (
            Method::PATCH,
            format!("{tasks}/{task}"),
            json!({}),
            "nothing to change",
        ),
        (
            Method::PATCH,
            format!("{tasks}/{task}"),
            json!({"title": " "}),
            "title",
        ),
        (
            Method::PUT,
            "/v1/me/settings".into(),
            json!(["not", "an", "object"]),
            // Every JSON body must be an object (service_kit::http::parse_json_object).
            "must be a JSON object",
        ),
        (
            Method::PUT,
            "/v1/me/settings".into(),
            json!({"big": "x".repeat(17 * 1024)}),
            "preferences",
        ),
        (
            Method::PUT,
            "/v1/me/secrets/bad%20name".into(),
            json!({"value": "v"}),
            "name",
        ),
        (
            Method::PUT,
            "/v1/me/secrets/ok".into(),
            json!({"value": ""}),
            "value",
        ),
        (
            Method::PUT,
            "/v1/me/secrets/ok".into(),
            json!({"secret": "v"}),
            "secret",
        ),
        (
            Method::POST,
            "/v1/agent-sessions".into(),
            json!({"title": "s", "status": "dreaming"}),
            "status",
        ),
        (
            Method::POST,
            "/v1/agent-sessions".into(),
            json!({"title": "s", "metadata": [1]}),
            "metadata",
        ),
        (
            Method::POST,
            "/v1/tool-usage".into(),
            json!({"tool_name": "a b", "success": true}),
            "tool_name",
        ),
        (
            Method::POST,
            "/v1/tool-usage".into(),
            json!({"tool_name": "t"}),
            "success",
        ),
        (
            Method::POST,
            "/v1/tool-usage".into(),
            json!({"tool_name": "t", "success": true, "duration_ms": -1}),
            "duration_ms",
        ),
        (
            Method::POST,
            "/v1/corpus".into(),
            json!({"title": "d", "content": ""}),
            "content",
        ),
        (
            Method::POST,
            "/v1/corpus".into(),
            json!({"title": "d", "content": "x", "content_type": "nope"}),
            "content_type",
        ),
    ];
    for (method, path, body, field) in cases {
        let res = stack
            .call(&me, method.clone(), &path, Some(body.clone()))
            .await;
        assert_eq!(
            res.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{method} {path} {body}"
        );
        let problem: Value = res.json().await.expect("problem");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(field),
            "{method} {path}: {detail:?} should name {field}"
        );
    }
    for bad in ["?limit=0", "?limit=101", "?cursor=nope"] {
        let res = stack
            .call(&me, Method::GET, &format!("{tasks}{bad}"), None)
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

#[tokio::test]
async fn malformed_and_non_json_bodies_are_refused_clearly() {
    let stack = spawn_stack().await;
    let me = stack.caller().await;
    let url = format!("{}/v1/users/{}/tasks", stack.main_url, me.id);
    let send = |content_type: &'static str, body: &'static str| {
        stack
            .client
            .post(&url)
            .bearer_auth(&me.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let res = send("application/json", "{\"title\": ").await.expect("req");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = send("application/json", "{\"title\": \"a\"} trailing")
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = send("text/plain", "{\"title\": \"a\"}").await.expect("req");
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = Box::leak(format!("{{\"title\": \"{}\"}}", "x".repeat(70 * 1024)).into_boxed_str());
    let res = send("application/json", big).await.expect("req");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let res = send("application/json; charset=utf-8", "{\"title\": \"fine\"}")
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::CREATED);
}
