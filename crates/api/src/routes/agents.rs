//! The environment's agents, and how a customer detaches numbers from them.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use releasedesk_domain::{Direction, PhoneNumberId};
use releasedesk_store::Store;

use super::{PageQuery, page_params};
use crate::ApiError;
use crate::dto::{AgentCallingBody, AgentDto, Envelope, ListEnvelope};
use crate::error::ErrorBody;
use crate::extract::{AgentPath, Auth, JsonBody};

/// List the environment's agents with their numbers, oldest first.
#[utoipa::path(
    get,
    path = "/agents",
    operation_id = "listAgents",
    tag = "Agents",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of agents", body = ListEnvelope<AgentDto>),
        (status = 422, description = "`VALIDATION_ERROR`: a bad `limit` or `cursor`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(store): State<Store>,
    Auth(auth): Auth,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ListEnvelope<AgentDto>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::validation("query", e.body_text()))?;
    let (limit, cursor) = page_params(q.limit.as_deref(), q.cursor.as_deref())?;
    let page = store
        .list_agents(auth.environment_id, limit, cursor)
        .await?;
    Ok(Json(ListEnvelope::page(page, AgentDto::from)))
}

/// Update an agent's calling: its direction and the complete list of its numbers.
///
/// Numbers left out are detached — this is how a number is freed before requesting its
/// release. A number being added must not be released and must have no open release request.
#[utoipa::path(
    put,
    path = "/agents/{agent_id}/calling",
    operation_id = "updateAgentCalling",
    tag = "Agents",
    params(AgentPath),
    request_body(content = AgentCallingBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The updated agent", body = Envelope<AgentDto>),
        (status = 400, description = "`INVALID_JSON`: not JSON, not an object, or a field of the wrong type", body = ErrorBody),
        (status = 404, description = "`AGENT_NOT_FOUND`, or `PHONE_NUMBER_NOT_FOUND` for a listed number", body = ErrorBody),
        (status = 409, description = "`PHONE_NUMBER_RELEASE_PENDING` or `PHONE_NUMBER_RELEASED` for a number being added", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 422, description = "`VALIDATION_ERROR`", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn update_calling(
    State(store): State<Store>,
    Auth(auth): Auth,
    AgentPath(agent_id): AgentPath,
    JsonBody(body): JsonBody<AgentCallingBody>,
) -> Result<Json<Envelope<AgentDto>>, ApiError> {
    let direction = body
        .direction
        .ok_or_else(|| ApiError::validation("direction", "is required"))?
        .parse::<Direction>()
        .map_err(|_| ApiError::validation("direction", "must be inbound or outbound"))?;
    let ids = body
        .phone_number_ids
        .ok_or_else(|| ApiError::validation("phone_number_ids", "is required"))?;
    let ids = ids
        .iter()
        .map(|s| PhoneNumberId::parse(s).map_err(|_| ApiError::phone_number_not_found()))
        .collect::<Result<Vec<_>, _>>()?;
    let agent = store
        .set_agent_calling(&auth, agent_id, direction, &ids)
        .await?;
    tracing::info!(agent_id = %agent.id, "agent calling updated");
    Ok(Json(Envelope::new(agent)))
}
