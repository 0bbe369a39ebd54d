//! `GET /api/v1/members`: the members the caller may see (staff: all; a manager or
//! viewer: their own). This module must never list members outside the scope.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::params::Params;
use crate::AppState;
use crate::auth::ApiCaller;
use crate::error::ApiError;

/// A member as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberJson {
    /// Identifier.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `commune`, `intercommunalite`, `ccas`, `association`…
    pub kind: String,
}

/// `GET /api/v1/members`.
pub async fn list(
    State(state): State<AppState>,
    caller: ApiCaller,
    params: Params,
) -> Result<Json<Vec<MemberJson>>, ApiError> {
    params.only(&[])?;
    let members = state.registry.members(&caller.user.scope()).await?;
    Ok(Json(
        members
            .into_iter()
            .map(|m| MemberJson {
                id: m.id.to_string(),
                name: m.name,
                kind: m.kind,
            })
            .collect(),
    ))
}
