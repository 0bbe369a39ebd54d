//! `vigie user …`: manage users and their API tokens directly on the data dir's registry.
//!
//! Works while vigie runs (SQLite WAL lets both open the file). A password is read
//! from standard input, never from the command line (which other users can see in the
//! process list), and never printed. An API token is printed once, when it is created
//! (alone on standard output, so that scripts can capture it); listings show its id,
//! label and dates in Europe/Paris local time (`30/11/2026 14:05`, as the dashboard
//! shows them), never the token. Changing a password ends all of that user's login
//! sessions; their API tokens stay valid until revoked or expired.

use std::io::Read;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use vigie_core::MemberId;
use vigie_core::config::Config;
use vigie_core::db::Db;
use vigie_core::registry::{ApiToken, Registry, Role, TokenId};
use vigie_core::time::{PARIS, Timestamp};

/// A day, in milliseconds (token expiry is counted in days from now).
const DAY_MS: i64 = 86_400_000;

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user.
    Add {
        /// Login name.
        name: String,
        /// admin, technician, manager or viewer.
        #[arg(long)]
        role: Role,
        /// Member the user belongs to (managers and viewers).
        #[arg(long)]
        member: Option<MemberId>,
        /// Read the password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Print a new API token for a user (shown once; only its SHA-256 digest is kept).
    Token {
        /// Login name.
        name: String,
        /// What the token is for (shown by `vigie user tokens`).
        #[arg(long, value_name = "TEXT")]
        label: Option<String>,
        /// Days until the token stops working (default: it never expires).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..=36_500))]
        expires_in: Option<u32>,
    },
    /// List a user's API tokens: id, label, created, last used, expires (never the token).
    Tokens {
        /// Login name.
        name: String,
    },
    /// Revoke an API token by its id (see `vigie user tokens`); it stops working at once.
    RevokeToken {
        /// Token id.
        id: TokenId,
    },
    /// Set a new password and end all of the user's login sessions.
    Password {
        /// Login name.
        name: String,
        /// Read the new password from standard input (first line).
        #[arg(long)]
        password_stdin: bool,
    },
}

pub(crate) fn run(config: &Config, cmd: UserCommand) -> Result<()> {
    let db = Db::open_dir(&config.storage.data_dir)?;
    let registry = Registry::new(db);
    match cmd {
        UserCommand::Add {
            name,
            role,
            member,
            password_stdin,
        } => {
            let password = password_from_stdin(password_stdin)?;
            let user = registry.create_user_blocking(&name, role, member.as_ref(), &password)?;
            println!("created user {} ({})", user.name, user.role.as_str());
        }
        UserCommand::Token {
            name,
            label,
            expires_in,
        } => {
            let expires_at =
                expires_in.map(|days| Timestamp::now().plus_millis(i64::from(days) * DAY_MS));
            let issued = registry.issue_token_blocking(&name, label.as_deref(), expires_at)?;
            println!("{}", issued.secret);
            let expiry = expires_at.map_or_else(
                || "never expires".to_string(),
                |e| format!("expires {}", local_time(e)),
            );
            eprintln!(
                "token {} for {name} ({expiry}): store it now, it is not shown again",
                issued.id
            );
        }
        UserCommand::Tokens { name } => {
            let tokens = registry.tokens_blocking(&name)?;
            if tokens.is_empty() {
                println!("{name} has no API tokens");
            } else {
                print!("{}", token_table(&tokens, Timestamp::now()));
            }
        }
        UserCommand::RevokeToken { id } => {
            let token = registry.revoke_token_blocking(id)?;
            let label = token.label.map(|l| format!(" ({l})")).unwrap_or_default();
            println!("revoked token {}{label} of {}", token.id, token.user);
        }
        UserCommand::Password {
            name,
            password_stdin,
        } => {
            let password = password_from_stdin(password_stdin)?;
            let ended = registry.set_password_blocking(&name, &password)?;
            let s = if ended == 1 { "" } else { "s" };
            println!("password of {name} changed; {ended} login session{s} ended");
        }
    }
    Ok(())
}

/// The first line of standard input, when `--password-stdin` was given.
fn password_from_stdin(password_stdin: bool) -> Result<String> {
    if !password_stdin {
        bail!("give the password on standard input with --password-stdin");
    }
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("cannot read the password from standard input")?;
    Ok(input.lines().next().unwrap_or("").to_string())
}

/// An instant in Europe/Paris local time, as the dashboard shows it: `30/11/2026 14:05`.
fn local_time(ts: Timestamp) -> String {
    ts.to_utc()
        .with_timezone(&PARIS)
        .format("%d/%m/%Y %H:%M")
        .to_string()
}

/// The token listing: a header and one aligned row per token; an expiry in the past
/// is marked `(expired)`.
fn token_table(tokens: &[ApiToken], now: Timestamp) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "LABEL".to_string(),
        "CREATED".to_string(),
        "LAST USED".to_string(),
        "EXPIRES".to_string(),
    ]];
    for t in tokens {
        let expires = match t.expires_at {
            None => "never".to_string(),
            Some(e) if t.is_expired_at(now) => format!("{} (expired)", local_time(e)),
            Some(e) => local_time(e),
        };
        rows.push([
            t.id.to_string(),
            t.label.clone().unwrap_or_else(|| "-".to_string()),
            local_time(t.created_at),
            t.last_used_at
                .map_or_else(|| "never".to_string(), local_time),
            expires,
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: i64, label: Option<&str>, last: Option<i64>, exp: Option<i64>) -> ApiToken {
        ApiToken {
            id: TokenId(id),
            user: "admin".into(),
            label: label.map(str::to_string),
            created_at: Timestamp::parse_rfc3339("2026-07-01T08:00:00Z").expect("ts"),
            last_used_at: last.map(Timestamp),
            expires_at: exp.map(Timestamp),
        }
    }

    #[test]
    fn the_token_table_shows_paris_times_and_marks_expired_tokens() {
        let winter = Timestamp::parse_rfc3339("2026-11-30T13:05:00Z").expect("ts");
        let tokens = [
            token(3, Some("grafana"), Some(winter.0), None),
            token(12, None, None, Some(winter.0)),
        ];
        let table = token_table(&tokens, winter);
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(
            lines,
            [
                "ID  LABEL    CREATED           LAST USED         EXPIRES",
                "3   grafana  01/07/2026 10:00  30/11/2026 14:05  never",
                "12  -        01/07/2026 10:00  never             30/11/2026 14:05 (expired)",
            ],
            "{table}"
        );
        let before = token_table(&tokens, winter.plus_millis(-1));
        assert!(!before.contains("expired"), "{before}");
    }
}
