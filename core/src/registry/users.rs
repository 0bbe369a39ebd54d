//! Users, passwords, API tokens and login sessions.
//!
//! Passwords are hashed with Argon2id (PHC strings). API tokens and session tokens are
//! 32 random bytes shown once to their owner and stored only as SHA-256 digests, so a
//! copy of the database does not let anyone log in. This module must never log or
//! return a stored secret.

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
            Some((user, Some(phc))) if verify(password, &phc) => Ok(Some(user)),
            Some(_) => Ok(None),
            None => {
                let _ = hash_password(password);
                Ok(None)
            }
        }
    }

    /// Creates a new API token for `name` and returns it (the only time it is shown).
    pub fn create_token_blocking(&self, name: &str) -> Result<String, AuthError> {
        let token = format!("vigie_{}", random_token());
        let d = digest(&token);
        let n = name.to_string();
        let inserted = self.db().call_blocking(move |c| {
            Ok(c.execute(
                "INSERT INTO api_tokens (user_id, token_sha256, created_at)
                 SELECT id, ?2, ?3 FROM users WHERE name = ?1",
                params![n, d, Timestamp::now().0],
            )?)
        })?;
        if inserted == 0 {
            return Err(AuthError::UnknownUser(name.to_string()));
        }
        Ok(token)
    }

    /// The user owning an API token.
    pub async fn user_by_token(&self, token: &str) -> Result<Option<User>, DbError> {
        let d = digest(token);
        self.db()
            .call(move |c| {
                Ok(c.query_row(
                    "SELECT u.id, u.name, u.role, u.member_id FROM api_tokens t JOIN users u ON u.id = t.user_id
                     WHERE t.token_sha256 = ?1",
                    [d],
                    user_from_row,
                )
                .optional()?)
            })
            .await
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
        let session = NewSession {
            token: random_token(),
            csrf_token: random_token(),
            expires_at: Timestamp::now().plus_millis(ttl_ms),
        };
        let (d, csrf, exp) = (
            digest(&session.token),
            session.csrf_token.clone(),
            session.expires_at.0,
        );
        self.db()
            .call(move |c| {
                c.execute("DELETE FROM sessions WHERE expires_at < ?1", [Timestamp::now().0])?;
                c.execute(
                    "INSERT INTO sessions (token_sha256, user_id, csrf_token, expires_at) VALUES (?1, ?2, ?3, ?4)",
                    params![d, user.0, csrf, exp],
                )?;
                Ok(())
            })
            .await?;
        Ok(session)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open_dir(dir.path()).expect("open");
        (dir, Registry::new(db))
    }

    #[test]
    fn a_new_sessions_debug_output_shows_neither_secret() {
        let s = NewSession {
            token: "cookie-secret-4711".into(),
            csrf_token: "csrf-secret-0815".into(),
            expires_at: Timestamp(1),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("cookie-secret-4711"), "{shown}");
        assert!(!shown.contains("csrf-secret-0815"), "{shown}");
    }

    #[tokio::test]
    async fn an_expired_session_no_longer_resolves() {
        let (_d, r) = registry();
        let u = r
            .create_user_blocking("admin", Role::Admin, None, "admin password")
            .expect("create");
        let expired = r.create_session(u.id, -1).await.expect("session");
        assert!(r.session(&expired.token).await.expect("get").is_none());
        let live = r.create_session(u.id, 60_000).await.expect("session");
        assert!(r.session(&live.token).await.expect("get").is_some());
    }

    #[tokio::test]
    async fn session_and_api_tokens_are_256_random_bits_stored_only_as_digests() {
        let (_d, r) = registry();
        let u = r
            .create_user_blocking("admin", Role::Admin, None, "admin password")
            .expect("create");
        let session = r.create_session(u.id, 60_000).await.expect("session");
        let other = r.create_session(u.id, 60_000).await.expect("session");
        assert_eq!(session.token.len(), 64);
        assert!(session.token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(session.token, other.token);
        let api = r.create_token_blocking("admin").expect("token");
        let (s, a) = (session.token.clone(), api.clone());
        let stored: (i64, i64) = r
            .db()
            .call_blocking(move |c| {
                let in_sessions: i64 = c.query_row(
                    "SELECT COUNT(*) FROM sessions WHERE CAST(token_sha256 AS TEXT) = ?1 \
                     OR hex(token_sha256) = upper(?1)",
                    [&s],
                    |x| x.get(0),
                )?;
                let in_tokens: i64 = c.query_row(
                    "SELECT COUNT(*) FROM api_tokens WHERE CAST(token_sha256 AS TEXT) = ?1",
                    [&a],
                    |x| x.get(0),
                )?;
                Ok((in_sessions, in_tokens))
            })
            .expect("read");
        assert_eq!(stored, (0, 0));
        assert_eq!(
            r.user_by_token(&api).await.expect("lookup").map(|u| u.name),
            Some("admin".to_string())
        );
    }
}
