//! Errors of the web layer and how they answer: JSON `{"error": …}` for the API, a
//! French HTML page for the pages.
//!
//! Internal failures (database, store) are logged with their cause and answered with
//! a generic message: this module must never send a stack of internal details, a SQL
//! text or a secret to the client.

use axum::Json;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vigie_core::db::DbError;
use vigie_core::store::StoreError;

use crate::pages::layout;

/// An API failure: a status and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the caller.
    pub message: String,
}

impl ApiError {
    /// 400: a query parameter is missing or malformed.
    pub fn bad_parameter(name: &str, problem: impl std::fmt::Display) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("parameter {name:?}: {problem}"),
        }
    }
    /// 404: nothing the caller may see has this id.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no {what} {id:?}"),
        }
    }
    /// 401: no valid token nor session.
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "authentication required: send Authorization: Bearer <token> \
                      (see `vigie user token NAME`) or log in"
                .into(),
        }
    }
    /// 403: authenticated but not allowed.
    pub fn forbidden(why: &str) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            message: why.to_string(),
        }
    }
    /// 500, after logging the cause.
    pub fn internal(context: &str, cause: &dyn std::error::Error) -> ApiError {
        tracing::error!(error = %cause, "{context}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("internal error while {context}"),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::internal("reading the registry", &e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal("reading the time-series store", &e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"vigie\""),
            );
        }
        res
    }
}

/// A page failure, shown as a small French HTML page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct PageError {
    /// HTTP status.
    pub status: StatusCode,
    /// What to tell the user, in French.
    pub message: String,
}

impl PageError {
    /// 404 with a French message.
    pub fn not_found() -> PageError {
        PageError {
            status: StatusCode::NOT_FOUND,
            message: "Cette page n'existe pas ou vous n'y avez pas accès.".into(),
        }
    }
    /// 403 with a French message.
    pub fn forbidden() -> PageError {
        PageError {
            status: StatusCode::FORBIDDEN,
            message: "Cette page est réservée aux équipes de l'agence.".into(),
        }
    }
    /// 500, after logging the cause.
    pub fn internal(context: &str, cause: &dyn std::error::Error) -> PageError {
        tracing::error!(error = %cause, "{context}");
        PageError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "Une erreur interne est survenue ; réessayez dans un instant.".into(),
        }
    }
}

impl From<DbError> for PageError {
    fn from(e: DbError) -> Self {
        PageError::internal("reading the registry", &e)
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::internal("reading the time-series store", &e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::NOT_FOUND => "Page introuvable",
            StatusCode::FORBIDDEN => "Accès refusé",
            StatusCode::BAD_REQUEST => "Requête invalide",
            _ => "Erreur",
        };
        (self.status, layout::bare(title, &self.message)).into_response()
    }
}

/// Fallback for unknown paths: JSON under `/api/`, HTML elsewhere.
pub async fn not_found(uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!("no route {}", uri.path()),
        }
        .into_response()
    } else {
        PageError::not_found().into_response()
    }
}

/// A read of the registry or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The registry failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Db(e) => e.into(),
            ReadError::Store(e) => e.into(),
        }
    }
}

impl From<ReadError> for PageError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Db(e) => e.into(),
            ReadError::Store(e) => e.into(),
        }
    }
}
