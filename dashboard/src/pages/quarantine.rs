//! `/quarantine` (agency staff only): how many messages were quarantined for each
//! reason and the latest ones, payload shown as escaped text. This module must never
//! render a payload unescaped nor show the page to a manager or viewer.

use axum::extract::State;
use maud::{Markup, html};

use super::layout;
use crate::AppState;
use crate::auth::{SessionUser, is_staff};
use crate::error::PageError;
use crate::format;

/// How many latest entries the page lists.
pub const LATEST: usize = 100;
/// Longest payload prefix shown, in characters.
pub const PAYLOAD_CHARS: usize = 400;

/// `GET /quarantine`.
pub async fn page(
    State(state): State<AppState>,
    session: SessionUser,
) -> Result<Markup, PageError> {
    if !is_staff(&session.user) {
        return Err(PageError::forbidden());
    }
    let counts = state.registry.quarantine_counts().await?;
    let entries = state.registry.quarantined(LATEST).await?;
    let content = html! {
        h2 { "Par motif" }
        @if counts.is_empty() {
            p.muted { "Aucun message en quarantaine." }
        } @else {
            table.counts {
                thead { tr { th { "Motif" } th { "Code" } th { "Occurrences" } } }
                tbody {
                    @for (reason, n) in &counts {
                        tr {
                            td { (reason.label_fr()) }
                            td { code { (reason.as_str()) } }
                            td.num { (format::number(*n as f64, 0)) }
                        }
                    }
                }
            }
        }
        h2 { "Derniers messages" }
        @if !entries.is_empty() {
            table.entries {
                thead { tr {
                    th { "Dernière réception" } th { "Fois" } th { "Sujet" }
                    th { "Motif" } th { "Détail" } th { "Message" }
                } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (format::date_time(e.last_received_at)) }
                            td.num { (e.occurrences) }
                            td { code { (e.topic) } }
                            td { (e.reason.label_fr()) }
                            td { (e.detail) }
                            td { pre.payload {
                                (e.payload.chars().take(PAYLOAD_CHARS).collect::<String>())
                                @if e.payload.chars().count() > PAYLOAD_CHARS { "…" }
                            } }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&session, "Quarantaine", content))
}
