//! Queries on `agent_sessions`, `tool_usage_logs` and `corpus_data`: rows a
//! user creates and lists, always filtered by the owner.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use service_kit::run;
use uuid::Uuid;

use super::schema::{agent_sessions as a, corpus_data as d, tool_usage_logs as u};
use super::sql_types::{DbTime, DbUuid};
use super::Conn;
use crate::domain::business::{NewAgentSession, NewCorpusItem, NewToolUsage, PageRequest};

fn json(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).unwrap_or_default()
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = a)]
pub struct AgentSessionRow {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub title: String,
    pub status: String,
    pub metadata: String,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

impl AgentSessionRow {
    pub fn wire(&self) -> shared_types::AgentSession {
        shared_types::AgentSession {
            id: self.id.0,
            title: self.title.clone(),
            status: self.status.clone(),
            metadata: json(&self.metadata),
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = u)]
pub struct ToolUsageRow {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub agent_session_id: Option<DbUuid>,
    pub tool_name: String,
    pub success: bool,
    pub duration_ms: Option<i64>,
    pub metadata: String,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

impl ToolUsageRow {
    pub fn wire(&self) -> shared_types::ToolUsage {
        shared_types::ToolUsage {
            id: self.id.0,
            agent_session_id: self.agent_session_id.map(|i| i.0),
            tool_name: self.tool_name.clone(),
            success: self.success,
            duration_ms: self.duration_ms,
            metadata: json(&self.metadata),
            created_at: self.created_at.0,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = d)]
pub struct CorpusRow {
    pub id: DbUuid,
    pub user_id: DbUuid,
    pub title: String,
    pub content: String,
    pub content_type: String,
    pub created_at: DbTime,
    pub updated_at: DbTime,
}

impl CorpusRow {
    pub fn wire(&self) -> shared_types::CorpusItem {
        shared_types::CorpusItem {
            id: self.id.0,
            title: self.title.clone(),
            content: self.content.clone(),
            content_type: self.content_type.clone(),
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        }
    }
}

pub async fn insert_agent_session(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    new: &NewAgentSession,
) -> QueryResult<AgentSessionRow> {
    let now = DbTime(super::now());
    let row = AgentSessionRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: DbUuid(user_id),
        title: new.title.clone(),
        status: new.status.clone(),
        metadata: new.metadata.clone(),
        created_at: now,
        updated_at: now,
    };
    run!(conn, |c| diesel::insert_into(a::table)
        .values(&row)
        .execute(c)
        .await)?;
    Ok(row)
}

pub async fn agent_sessions(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    req: PageRequest,
) -> QueryResult<Vec<AgentSessionRow>> {
    owned_page!(conn, a, AgentSessionRow, user_id, req)
}

/// Whether `id` is one of the caller's agent sessions.
pub async fn owns_agent_session(conn: &mut Conn<'_>, user_id: Uuid, id: Uuid) -> QueryResult<bool> {
    let n: i64 = run!(conn, |c| a::table
        .filter(a::id.eq(DbUuid(id)))
        .filter(a::user_id.eq(DbUuid(user_id)))
        .count()
        .get_result(c)
        .await)?;
    Ok(n > 0)
}

pub async fn insert_tool_usage(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    new: &NewToolUsage,
) -> QueryResult<ToolUsageRow> {
    let now = DbTime(super::now());
    let row = ToolUsageRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: DbUuid(user_id),
        agent_session_id: new.agent_session_id.map(DbUuid),
        tool_name: new.tool_name.clone(),
        success: new.success,
        duration_ms: new.duration_ms,
        metadata: new.metadata.clone(),
        created_at: now,
        updated_at: now,
    };
    run!(conn, |c| diesel::insert_into(u::table)
        .values(&row)
        .execute(c)
        .await)?;
    Ok(row)
}

pub async fn tool_usage(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    req: PageRequest,
) -> QueryResult<Vec<ToolUsageRow>> {
    owned_page!(conn, u, ToolUsageRow, user_id, req)
}

pub async fn insert_corpus(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    new: &NewCorpusItem,
) -> QueryResult<CorpusRow> {
    let now = DbTime(super::now());
    let row = CorpusRow {
        id: DbUuid(Uuid::now_v7()),
        user_id: DbUuid(user_id),
        title: new.title.clone(),
        content: new.content.clone(),
        content_type: new.content_type.clone(),
        created_at: now,
        updated_at: now,
    };
    run!(conn, |c| diesel::insert_into(d::table)
        .values(&row)
        .execute(c)
        .await)?;
    Ok(row)
}

pub async fn corpus(
    conn: &mut Conn<'_>,
    user_id: Uuid,
    req: PageRequest,
) -> QueryResult<Vec<CorpusRow>> {
    owned_page!(conn, d, CorpusRow, user_id, req)
}
