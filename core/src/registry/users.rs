//! Users, passwords, API tokens and login sessions.
//!
//! Passwords are hashed with Argon2id (PHC strings). API tokens and session tokens are
//! 32 random bytes shown once to their owner and stored only as SHA-256 digests, so a
//! copy of the database does not let anyone log in. This module must never log or
//! return a stored secret.
//!
//! An API token has an optional label and an optional expiry instant (none: it never
//! expires); revoking one deletes its row, so a revoked or expired token resolves to
//! no user. A token's `last_used_at` is written when it authenticates, at most once per
//! [`LAST_USED_RESOLUTION_MS`] per token, so that API calls do not each cost a write.
//! Changing a password ends all of that user's login sessions (API tokens stay: they
//! are revoked one by one).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Registry, Role, User};
use crate::db::DbError;
use crate::ids::{MemberId, UserId};
use crate::time::Timestamp;

/// Why a user operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The store failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// No such user.
    #[error("no user named {0:?}")]
    UnknownUser(String),
    /// The name is taken.
    #[error("a user named {0:?} already exists")]
    Exists(String),
    /// A manager or viewer needs a member; staff must not have one.
    #[error("role {role} {problem}")]
    BadMember {
        /// The role.
        role: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// Password hashing failed.
    #[error("cannot hash password: {0}")]
    Hash(String),
    /// Password too short.
    #[error("password too short: at least 8 characters")]
    WeakPassword,
    /// No API token has this id (never created, or already revoked).
    #[error("no API token with id {0} (see `vigie user tokens NAME`)")]
    UnknownToken(TokenId),
    /// A token label that cannot be shown as one line.
    #[error("token label {label:?} {problem}")]
    BadLabel {
        /// The label given.
        label: String,
        /// What is wrong.
        problem: &'static str,
    },
}

/// A freshly created login session: the cookie value and its CSRF token (`Debug`
/// shows neither).
#[derive(Clone)]
pub struct NewSession {
    /// Secret cookie value (shown once).
    pub token: String,
    /// CSRF token to embed in forms.
    pub csrf_token: String,
    /// When it expires.
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("token", &"<redacted>")
            .field("csrf_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The id of an API token, as `vigie user tokens` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(pub i64);

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for TokenId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(TokenId)
    }
}

/// A freshly created API token: its id and the secret (shown once; `Debug` hides it).
#[derive(Clone)]
pub struct IssuedToken {
    /// Its id, to list or revoke it.
    pub id: TokenId,
    /// The secret (`vigie_` and 64 hex digits).
    pub secret: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What is known about an API token; never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Its id.
    pub id: TokenId,
    /// Its owner's login name.
    pub user: String,
    /// What it is for, as given when it was created.
    pub label: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last authenticated (to [`LAST_USED_RESOLUTION_MS`]); `None`: never.
    pub last_used_at: Option<Timestamp>,
    /// When it stops authenticating; `None`: never.
    pub expires_at: Option<Timestamp>,
}

impl ApiToken {
    /// Whether it no longer authenticates at `now`.
    pub fn is_expired_at(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// A token's `last_used_at` is written only when the stored value is at least this old
/// (one minute), so that a burst of API calls costs one write.
pub const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// The longest label a token may have, in characters.
const MAX_LABEL_CHARS: usize = 100;

/// How long recording a token's last use may wait for the write lock.
const TOUCH_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: TokenId(r.get(0)?),
        user: r.get(1)?,
        label: r.get(2)?,
        created_at: Timestamp(r.get(3)?),
        last_used_at: r.get::<_, Option<i64>>(4)?.map(Timestamp),
        expires_at: r.get::<_, Option<i64>>(5)?.map(Timestamp),
    })
}

const TOKEN_COLUMNS: &str = "t.id, u.name, t.label, t.created_at, t.last_used_at, t.expires_at FROM api_tokens t \
     JOIN users u ON u.id = t.user_id";

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Registry {
    /// 256 random bits as 64 hex characters, for a short-lived secret that is never
    /// stored, such as the login form's CSRF token (the dashboard's `GET /login`).
    pub fn random_secret() -> String {
        random_token()
    }
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Hashes a password with Argon2id.
pub(crate) fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(2)?;
    let member: Option<String> = r.get(3)?;
    Ok(User {
        id: UserId(r.get(0)?),
        name: r.get(1)?,
        role: role.parse().unwrap_or(Role::Viewer),
        member_id: member.and_then(|m| MemberId::new(m).ok()),
    })
}

impl Registry {
    /// How many users exist.
    pub fn user_count_blocking(&self) -> Result<u64, DbError> {
        self.db().call_blocking(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))? as u64)
        })
    }

    /// Creates a user with a hashed password.
    pub fn create_user_blocking(
        &self,
        name: &str,
        role: Role,
        member: Option<&MemberId>,
        password: &str,
    ) -> Result<User, AuthError> {
        match (role, member) {
            (Role::Manager | Role::Viewer, None) => {
                return Err(AuthError::BadMember {
                    role: role.as_str(),
                    problem: "needs --member",
                });
            }
            (Role::Admin | Role::Technician, Some(_)) => {
                return Err(AuthError::BadMember {
                    role: role.as_str(),
                    problem: "sees every member and takes no --member",
                });
            }
            _ => {}
        }
        if password.chars().count() < 8 {
            return Err(AuthError::WeakPassword);
        }
        let hash = hash_password(password)?;
        let name_owned = name.to_string();
        let member = member.map(|m| m.to_string());
        let created = self.db().call_blocking(move |c| {
            let n = c.execute(
                "INSERT INTO users (name, role, member_id, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO NOTHING",
                params![name_owned, role.as_str(), member, hash, Timestamp::now().0],
            )?;
            if n == 0 {
                return Ok(None);
            }
            Ok(Some(c.query_row(
                "SELECT id, name, role, member_id FROM users WHERE name = ?1",
                [&name_owned],
                user_from_row,
            )?))
        })?;
        created.ok_or_else(|| AuthError::Exists(name.to_string()))
    }

    /// The user if `password` is right; `None` otherwise (same answer for an unknown
    /// name, which is hashed anyway so that timing does not reveal names).
    pub fn verify_password_blocking(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<User>, DbError> {
        Ok(self
            .check_password_blocking(name, password)?
            .map(|(user, _)| user))
    }

    /// The user `name` and the password hash `password` was verified against, if it is
    /// right (a hash is computed for an unknown name too, so that the answer takes as
    /// long).
    pub(crate) fn check_password_blocking(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<(User, String)>, DbError> {
        let name = name.to_string();
        let row = self.db().call_blocking(move |c| {
            Ok(c.query_row(
                "SELECT id, name, role, member_id, password_hash FROM users WHERE name = ?1",
                [name],
                |r| Ok((user_from_row(r)?, r.get::<_, Option<String>>(4)?)),
            )
            .optional()?)
        })?;
        match row {
            Some((user, Some(phc))) if verify(password, &phc) => Ok(Some((user, phc))),
            Some(_) => Ok(None),
            None => {
                let _ = hash_password(password);
                Ok(None)
            }
        }
    }

    /// Checks `name`'s password and opens a login session valid for `ttl_ms` (blocking:
    /// hashing is slow). `None` when the password is wrong, or was changed while it was
    /// being checked: the session is only created while the verified hash is still the
    /// user's, so a login racing `vigie user password` cannot outlive the change.
    pub fn login_blocking(
        &self,
        name: &str,
        password: &str,
        ttl_ms: i64,
    ) -> Result<Option<(User, NewSession)>, DbError> {
        let Some((user, phc)) = self.check_password_blocking(name, password)? else {
            return Ok(None);
        };
        Ok(self
            .open_session_if_unchanged_blocking(user.id, &phc, ttl_ms)?
            .map(|session| (user, session)))
    }

    /// Async form of [`Registry::login_blocking`] (on the blocking pool).
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        ttl_ms: i64,
    ) -> Result<Option<(User, NewSession)>, DbError> {
        let r = self.clone();
        let (n, p) = (name.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || r.login_blocking(&n, &p, ttl_ms))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Opens a session for `user` if its password hash is still `phc`.
    pub(crate) fn open_session_if_unchanged_blocking(
        &self,
        user: UserId,
        phc: &str,
        ttl_ms: i64,
    ) -> Result<Option<NewSession>, DbError> {
        self.insert_session_blocking(user, Some(phc), ttl_ms)
    }

    /// Inserts a fresh session for `user`, valid for `ttl_ms` (and drops expired ones);
    /// with `phc`, only while that is still the user's password hash.
    fn insert_session_blocking(
        &self,
        user: UserId,
        phc: Option<&str>,
        ttl_ms: i64,
    ) -> Result<Option<NewSession>, DbError> {
        let session = NewSession {
            token: random_token(),
            csrf_token: random_token(),
            expires_at: Timestamp::now().plus_millis(ttl_ms),
        };
        let (d, csrf, exp, phc) = (
            digest(&session.token),
            session.csrf_token.clone(),
            session.expires_at.0,
            phc.map(str::to_string),
        );
        let inserted = self.db().call_blocking(move |c| {
            c.execute(
                "DELETE FROM sessions WHERE expires_at < ?1",
                [Timestamp::now().0],
            )?;
            Ok(c.execute(
                "INSERT INTO sessions (token_sha256, user_id, csrf_token, expires_at)
                 SELECT ?1, ?2, ?3, ?4
                 WHERE ?5 IS NULL OR (SELECT password_hash FROM users WHERE id = ?2) = ?5",
                params![d, user.0, csrf, exp, phc],
            )?)
        })?;
        Ok((inserted == 1).then_some(session))
    }

    /// Creates a new API token for `name`, without label or expiry, and returns it (the
    /// only time it is shown).
    pub fn create_token_blocking(&self, name: &str) -> Result<String, AuthError> {
        Ok(self.issue_token_blocking(name, None, None)?.secret)
    }

    /// Creates a new API token for `name` with an optional label and expiry instant
    /// (`None`: it never expires), and returns it (the only time it is shown).
    pub fn issue_token_blocking(
        &self,
        name: &str,
        label: Option<&str>,
        expires_at: Option<Timestamp>,
    ) -> Result<IssuedToken, AuthError> {
        let label = match label.map(str::trim).filter(|l| !l.is_empty()) {
            Some(l) if l.chars().any(char::is_control) => {
                return Err(AuthError::BadLabel {
                    label: l.to_string(),
                    problem: "contains control characters",
                });
            }
            Some(l) if l.chars().count() > MAX_LABEL_CHARS => {
                return Err(AuthError::BadLabel {
                    label: l.to_string(),
                    problem: "is longer than 100 characters",
                });
            }
            l => l.map(str::to_string),
        };
        let secret = format!("vigie_{}", random_token());
        let d = digest(&secret);
        let n = name.to_string();
        let id = self.db().call_blocking(move |c| {
            Ok(c.query_row(
                "INSERT INTO api_tokens (user_id, token_sha256, created_at, label, expires_at)
                 SELECT id, ?2, ?3, ?4, ?5 FROM users WHERE name = ?1 RETURNING id",
                params![n, d, Timestamp::now().0, label, expires_at.map(|e| e.0)],
                |r| r.get::<_, i64>(0),
            )
            .optional()?)
        })?;
        match id {
            Some(id) => Ok(IssuedToken {
                id: TokenId(id),
                secret,
            }),
            None => Err(AuthError::UnknownUser(name.to_string())),
        }
    }

    /// The API tokens of `name`, oldest first, expired ones included (never the
    /// tokens themselves).
    pub fn tokens_blocking(&self, name: &str) -> Result<Vec<ApiToken>, AuthError> {
        let n = name.to_string();
        let tokens = self.db().call_blocking(move |c| {
            let exists = c
                .query_row("SELECT 1 FROM users WHERE name = ?1", [&n], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Ok(None);
            }
            let mut stmt = c.prepare(&format!(
                "SELECT {TOKEN_COLUMNS} WHERE u.name = ?1 ORDER BY t.id"
            ))?;
            let rows = stmt.query_map([&n], token_from_row)?;
            Ok(Some(rows.collect::<Result<Vec<_>, _>>()?))
        })?;
        tokens.ok_or_else(|| AuthError::UnknownUser(name.to_string()))
    }

    /// Revokes (deletes) an API token and returns what it was: from now on it resolves
    /// to no user.
    pub fn revoke_token_blocking(&self, id: TokenId) -> Result<ApiToken, AuthError> {
        let revoked = self.db().call_blocking(move |c| {
            let tx = c.transaction()?;
            let token = tx
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} WHERE t.id = ?1"),
                    [id.0],
                    token_from_row,
                )
                .optional()?;
            tx.execute("DELETE FROM api_tokens WHERE id = ?1", [id.0])?;
            tx.commit()?;
            Ok(token)
        })?;
        revoked.ok_or(AuthError::UnknownToken(id))
    }

    /// The user owning an API token, if it is neither revoked nor expired; records when
    /// the token was used (see [`LAST_USED_RESOLUTION_MS`]).
    pub async fn user_by_token(&self, token: &str) -> Result<Option<User>, DbError> {
        self.user_by_token_at(token, Timestamp::now()).await
    }

    /// [`Registry::user_by_token`] as if it were `now`.
    pub(crate) async fn user_by_token_at(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Option<User>, DbError> {
        let d = digest(token);
        self.db()
            .call(move |c| {
                let found = c
                    .query_row(
                        "SELECT u.id, u.name, u.role, u.member_id, t.id, t.last_used_at
                         FROM api_tokens t JOIN users u ON u.id = t.user_id
                         WHERE t.token_sha256 = ?1 AND (t.expires_at IS NULL OR t.expires_at > ?2)",
                        params![d, now.0],
                        |r| {
                            Ok((
                                user_from_row(r)?,
                                r.get::<_, i64>(4)?,
                                r.get::<_, Option<i64>>(5)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((user, id, last_used)) = found else {
                    return Ok(None);
                };
                if last_used
                    .is_none_or(|l| now.0.abs_diff(l) >= LAST_USED_RESOLUTION_MS.unsigned_abs())
                {
                    // Bookkeeping: a failed write must not refuse a valid token, nor make
                    // the call wait behind a long write (retention holds the write lock
                    // for a while): a short busy timeout, and the next minute retries.
                    let _ = c.busy_timeout(TOUCH_BUSY_TIMEOUT);
                    let touched = c.execute(
                        "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
                        params![id, now.0],
                    );
                    let _ = c.busy_timeout(crate::db::BUSY_TIMEOUT);
                    if let Err(e) = touched {
                        tracing::debug!(token_id = id, error = %e, "API token use not recorded");
                    }
                }
                Ok(Some(user))
            })
            .await
    }

    /// Sets a new password for `name` (Argon2id) and ends all of that user's login
    /// sessions, in one transaction; returns how many sessions were ended.
    pub fn set_password_blocking(&self, name: &str, password: &str) -> Result<u64, AuthError> {
        if password.chars().count() < 8 {
            return Err(AuthError::WeakPassword);
        }
        let hash = hash_password(password)?;
        let n = name.to_string();
        let ended = self.db().call_blocking(move |c| {
            let tx = c.transaction()?;
            let user = tx
                .query_row(
                    "UPDATE users SET password_hash = ?2 WHERE name = ?1 RETURNING id",
                    params![n, hash],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?;
            let Some(user) = user else {
                return Ok(None);
            };
            let ended = tx.execute("DELETE FROM sessions WHERE user_id = ?1", [user])?;
            tx.commit()?;
            Ok(Some(ended as u64))
        })?;
        ended.ok_or_else(|| AuthError::UnknownUser(name.to_string()))
    }

    /// Async form of [`Registry::verify_password_blocking`] (hashing is slow: it runs
    /// on the blocking pool).
    pub async fn verify_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<User>, DbError> {
        let r = self.clone();
        let (n, p) = (name.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || r.verify_password_blocking(&n, &p))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Opens a login session for `user`, valid for `ttl_ms`.
    pub async fn create_session(&self, user: UserId, ttl_ms: i64) -> Result<NewSession, DbError> {
        let r = self.clone();
        tokio::task::spawn_blocking(move || r.insert_session_blocking(user, None, ttl_ms))
            .await
            .map_err(|e| DbError::Task(e.to_string()))??
            .ok_or_else(|| DbError::Task("session insert wrote no row".into()))
    }

    /// The user and CSRF token of a live session.
    pub async fn session(&self, token: &str) -> Result<Option<(User, String)>, DbError> {
        let d = digest(token);
        self.db()
            .call(move |c| {
                Ok(c.query_row(
                    "SELECT u.id, u.name, u.role, u.member_id, s.csrf_token FROM sessions s
                     JOIN users u ON u.id = s.user_id WHERE s.token_sha256 = ?1 AND s.expires_at > ?2",
                    params![d, Timestamp::now().0],
                    |r| Ok((user_from_row(r)?, r.get::<_, String>(4)?)),
                )
                .optional()?)
            })
            .await
    }

    /// Ends a session.
    pub async fn delete_session(&self, token: &str) -> Result<(), DbError> {
        let d = digest(token);
        self.db()
            .call(move |c| {
                c.execute("DELETE FROM sessions WHERE token_sha256 = ?1", [d])?;
                Ok(())
            })
            .await
    }
}

/// A random password for the first admin when none is configured.
pub fn random_password() -> String {
    random_token()[..20].to_string()
}
