use super::*;

async fn registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open_dir(dir.path()).expect("open");
    (dir, Registry::new(db))
}

fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().expect("valid id")
}

async fn two_members(r: &Registry) {
    for (m, b) in [("commune-a", "mairie-a"), ("commune-b", "ecole-b")] {
        r.upsert_member(&Member {
            id: id(m),
            name: m.into(),
            kind: "commune".into(),
        })
        .await
        .expect("member");
        r.upsert_building(&Building {
            id: id(b),
            member_id: id(m),
            name: b.into(),
            address: String::new(),
            floor_area_m2: Some(500.0),
            usage: "bureaux".into(),
            gas_pcs_kwh_per_m3: 11.2,
        })
        .await
        .expect("building");
        r.upsert_device(&Device::new(
            id(&format!("{b}-elec")),
            Some(id(b)),
            DeviceKind::ElectricityMeter,
        ))
        .await
        .expect("device");
    }
}

#[tokio::test]
async fn a_manager_sees_only_their_members_buildings_and_devices() {
    let (_d, r) = registry().await;
    two_members(&r).await;
    let scope = Scope::Member(id("commune-a"));
    let names: Vec<_> = r
        .buildings(&scope)
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.id.to_string())
        .collect();
    assert_eq!(names, ["mairie-a"]);
    assert!(
        r.building(&scope, &id("ecole-b"))
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        r.device(&scope, &id("ecole-b-elec"))
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        r.device(&scope, &id("mairie-a-elec"))
            .await
            .expect("get")
            .is_some()
    );
    assert_eq!(r.devices(&Scope::All).await.expect("all").len(), 2);
    assert!(r.buildings(&Scope::Nothing).await.expect("none").is_empty());
}

#[tokio::test]
async fn series_ids_are_stable_per_device_and_quantity() {
    let (_d, r) = registry().await;
    two_members(&r).await;
    let d: DeviceId = id("mairie-a-elec");
    let a = r
        .series_id(&d, Quantity::ElectricityKwh)
        .await
        .expect("series");
    let b = r.series_id(&d, Quantity::PowerW).await.expect("series");
    let r2 = Registry::new(r.db().clone());
    assert_eq!(
        r2.series_id(&d, Quantity::ElectricityKwh)
            .await
            .expect("again"),
        a
    );
    assert_ne!(a, b);
    assert_eq!(
        r.energy_series(&id("mairie-a"), Energy::Electricity)
            .await
            .expect("energy")
            .len(),
        1
    );
}

#[tokio::test]
async fn passwords_verify_and_tokens_resolve_to_their_user() {
    let (_d, r) = registry().await;
    two_members(&r).await;
    let m: MemberId = id("commune-a");
    let u = r
        .create_user_blocking("alice", Role::Manager, Some(&m), "correct horse")
        .expect("create");
    assert!(
        r.verify_password("alice", "wrong password")
            .await
            .expect("verify")
            .is_none()
    );
    assert_eq!(
        r.verify_password("alice", "correct horse")
            .await
            .expect("verify"),
        Some(u.clone())
    );
    let token = r.create_token_blocking("alice").expect("token");
    assert_eq!(
        r.user_by_token(&token).await.expect("lookup"),
        Some(u.clone())
    );
    assert!(
        r.user_by_token("vigie_nope")
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(matches!(
        r.create_token_blocking("bob"),
        Err(AuthError::UnknownUser(_))
    ));
    assert!(matches!(
        r.create_user_blocking("carol", Role::Manager, None, "long enough"),
        Err(AuthError::BadMember { .. })
    ));
    let stored: String = r
        .db()
        .call_blocking(|c| {
            Ok(c.query_row(
                "SELECT password_hash FROM users WHERE name = 'alice'",
                [],
                |x| x.get(0),
            )?)
        })
        .expect("hash");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
}

#[tokio::test]
async fn a_session_resolves_until_deleted() {
    let (_d, r) = registry().await;
    let u = r
        .create_user_blocking("admin", Role::Admin, None, "admin password")
        .expect("create");
    let s = r.create_session(u.id, 60_000).await.expect("session");
    let (user, csrf) = r.session(&s.token).await.expect("get").expect("live");
    assert_eq!((user, csrf), (u, s.csrf_token.clone()));
    r.delete_session(&s.token).await.expect("delete");
    assert!(r.session(&s.token).await.expect("get").is_none());
}

#[tokio::test]
async fn a_redelivered_quarantined_message_is_one_row_with_two_occurrences() {
    let (_d, r) = registry().await;
    let e = QuarantineEntry {
        received_at: Timestamp(1),
        topic: "vigie/x/telemetry".into(),
        device_id: None,
        reason: QuarantineReason::Malformed,
        detail: "expected JSON".into(),
        payload: b"{oops".to_vec(),
    };
    r.quarantine_blocking(std::slice::from_ref(&e)).expect("q");
    r.quarantine_blocking(&[e]).expect("q");
    let rows = r.quarantined(10).await.expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].occurrences, 2);
    assert_eq!(
        r.quarantine_counts().await.expect("counts"),
        vec![(QuarantineReason::Malformed, 2)]
    );
}

#[tokio::test]
async fn a_token_stops_authenticating_at_its_expiry_and_one_without_expiry_never_does() {
    let (_d, r) = registry().await;
    let u = r
        .create_user_blocking("admin", Role::Admin, None, "admin password")
        .expect("create");
    let expiry = Timestamp(1_800_000_000_000);
    let expiring = r
        .issue_token_blocking("admin", Some("grafana"), Some(expiry))
        .expect("token");
    let forever = r.issue_token_blocking("admin", None, None).expect("token");
    let before = Timestamp(expiry.0 - 1);
    let far_future = Timestamp(i64::MAX / 2);
    assert_eq!(
        r.user_by_token_at(&expiring.secret, before)
            .await
            .expect("lookup"),
        Some(u.clone())
    );
    assert!(
        r.user_by_token_at(&expiring.secret, expiry)
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(
        r.user_by_token_at(&forever.secret, far_future)
            .await
            .expect("lookup"),
        Some(u)
    );
    let listed = r.tokens_blocking("admin").expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, expiring.id);
    assert_eq!(listed[0].label.as_deref(), Some("grafana"));
    assert_eq!(listed[0].expires_at, Some(expiry));
    assert!(listed[0].is_expired_at(expiry) && !listed[0].is_expired_at(before));
    assert_eq!(
        (listed[1].label.as_deref(), listed[1].expires_at),
        (None, None)
    );
    assert!(!listed[1].is_expired_at(far_future));
}

#[tokio::test]
async fn a_revoked_token_no_longer_authenticates_and_the_others_still_do() {
    let (_d, r) = registry().await;
    r.create_user_blocking("admin", Role::Admin, None, "admin password")
        .expect("create");
    let revoked = r
        .issue_token_blocking("admin", Some("old"), None)
        .expect("token");
    let kept = r
        .issue_token_blocking("admin", Some("new"), None)
        .expect("token");
    let gone = r.revoke_token_blocking(revoked.id).expect("revoke");
    assert_eq!((gone.id, gone.user.as_str()), (revoked.id, "admin"));
    assert_eq!(gone.label.as_deref(), Some("old"));
    assert!(
        r.user_by_token(&revoked.secret)
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(
        r.user_by_token(&kept.secret)
            .await
            .expect("lookup")
            .is_some()
    );
    let ids: Vec<_> = r
        .tokens_blocking("admin")
        .expect("list")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, [kept.id]);
    let err = r.revoke_token_blocking(revoked.id).expect_err("twice");
    assert!(matches!(err, AuthError::UnknownToken(id) if id == revoked.id));
    assert!(err.to_string().contains(&revoked.id.to_string()), "{err}");
}

#[tokio::test]
async fn token_listing_and_creation_name_an_unknown_user_and_refuse_bad_labels() {
    let (_d, r) = registry().await;
    r.create_user_blocking("admin", Role::Admin, None, "admin password")
        .expect("create");
    let err = r.tokens_blocking("bob").expect_err("unknown");
    assert!(matches!(&err, AuthError::UnknownUser(n) if n == "bob"));
    assert!(err.to_string().contains("bob"), "{err}");
    assert!(matches!(
        r.issue_token_blocking("bob", Some("x"), None),
        Err(AuthError::UnknownUser(_))
    ));
    assert!(r.tokens_blocking("admin").expect("list").is_empty());
    assert!(matches!(
        r.issue_token_blocking("admin", Some("two\nlines"), None),
        Err(AuthError::BadLabel { .. })
    ));
    assert!(matches!(
        r.issue_token_blocking("admin", Some(&"x".repeat(101)), None),
        Err(AuthError::BadLabel { .. })
    ));
    // A blank label is no label.
    r.issue_token_blocking("admin", Some("  "), None)
        .expect("token");
    assert_eq!(r.tokens_blocking("admin").expect("list")[0].label, None);
}

#[tokio::test]
async fn a_tokens_last_use_is_recorded_at_most_once_per_minute() {
    let (_d, r) = registry().await;
    r.create_user_blocking("admin", Role::Admin, None, "admin password")
        .expect("create");
    let t = r.issue_token_blocking("admin", None, None).expect("token");
    let last_used = || r.tokens_blocking("admin").expect("list")[0].last_used_at;
    assert_eq!(last_used(), None);
    let t0 = Timestamp(1_800_000_000_000);
    r.user_by_token_at(&t.secret, t0).await.expect("lookup");
    assert_eq!(last_used(), Some(t0));
    let within = t0.plus_millis(LAST_USED_RESOLUTION_MS - 1);
    r.user_by_token_at(&t.secret, within).await.expect("lookup");
    assert_eq!(last_used(), Some(t0));
    let later = t0.plus_millis(LAST_USED_RESOLUTION_MS);
    r.user_by_token_at(&t.secret, later).await.expect("lookup");
    assert_eq!(last_used(), Some(later));
    // A wrong token records nothing.
    r.user_by_token_at("vigie_nope", later.plus_millis(3_600_000))
        .await
        .expect("lookup");
    assert_eq!(last_used(), Some(later));
}

#[tokio::test]
async fn a_password_change_ends_every_session_of_that_user_only() {
    let (_d, r) = registry().await;
    let admin = r
        .create_user_blocking("admin", Role::Admin, None, "old password")
        .expect("create");
    let tech = r
        .create_user_blocking("tech", Role::Technician, None, "tech password")
        .expect("create");
    let stolen = r.create_session(admin.id, 60_000).await.expect("session");
    let other_device = r.create_session(admin.id, 60_000).await.expect("session");
    let bystander = r.create_session(tech.id, 60_000).await.expect("session");
    let token = r.create_token_blocking("admin").expect("token");
    assert_eq!(
        r.set_password_blocking("admin", "new password")
            .expect("change"),
        2
    );
    assert!(r.session(&stolen.token).await.expect("get").is_none());
    assert!(r.session(&other_device.token).await.expect("get").is_none());
    assert!(r.session(&bystander.token).await.expect("get").is_some());
    assert!(
        r.verify_password("admin", "old password")
            .await
            .expect("verify")
            .is_none()
    );
    assert_eq!(
        r.verify_password("admin", "new password")
            .await
            .expect("verify"),
        Some(admin)
    );
    // API tokens are revoked one by one, not by a password change.
    assert!(r.user_by_token(&token).await.expect("lookup").is_some());
    let err = r
        .set_password_blocking("bob", "new password")
        .expect_err("unknown");
    assert!(err.to_string().contains("bob"), "{err}");
    assert!(matches!(
        r.set_password_blocking("admin", "short"),
        Err(AuthError::WeakPassword)
    ));
}

#[tokio::test]
async fn a_token_from_a_version_7_file_still_authenticates_and_never_expires() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vigie.db");
    // A file as vigie left it at version 7: its schema, a user, a used token.
    {
        let mut c = rusqlite::Connection::open(&path).expect("open");
        for sql in &crate::db::MIGRATIONS[..7] {
            let tx = c.transaction().expect("tx");
            tx.execute_batch(sql).expect("migration");
            tx.commit().expect("commit");
        }
        let phc = super::users::hash_password("admin password").expect("hash");
        c.execute_batch("PRAGMA user_version = 7;")
            .expect("version");
        c.execute(
            "INSERT INTO users (id, name, role, password_hash, created_at) VALUES (1, 'admin', 'admin', ?1, 0)",
            [phc],
        )
        .expect("user");
        c.execute(
            "INSERT INTO api_tokens (id, user_id, token_sha256, created_at, last_used_at) VALUES (3, 1, ?1, 10, 42)",
            [Sha256::digest(b"vigie_from_version_7").to_vec()],
        )
        .expect("token");
    }
    let r = Registry::new(Db::open_dir(dir.path()).expect("migrate to the latest version"));
    let listed = r.tokens_blocking("admin").expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (
            listed[0].id.0,
            listed[0].label.as_deref(),
            listed[0].expires_at,
            listed[0].last_used_at
        ),
        (3, None, None, Some(Timestamp(42)))
    );
    let user = r
        .user_by_token_at("vigie_from_version_7", Timestamp(i64::MAX / 2))
        .await
        .expect("lookup")
        .expect("the old token authenticates, far in the future too");
    assert_eq!(user.name, "admin");
    // Deleting the user still takes its tokens with it (the foreign key survived).
    r.db()
        .call_blocking(|c| Ok(c.execute("DELETE FROM users WHERE id = 1", [])?))
        .expect("delete");
    assert_eq!(
        r.db()
            .call_blocking(
                |c| Ok(c.query_row("SELECT COUNT(*) FROM api_tokens", [], |r| r
                    .get::<_, i64>(0))?)
            )
            .expect("count"),
        0
    );
}

#[tokio::test]
async fn a_revoked_tokens_id_is_never_given_to_a_new_token() {
    let (_d, r) = registry().await;
    r.create_user_blocking("admin", Role::Admin, None, "admin password")
        .expect("admin");
    r.create_user_blocking("tech", Role::Technician, None, "tech password")
        .expect("tech");
    let first = r.issue_token_blocking("admin", None, None).expect("first");
    let newest = r.issue_token_blocking("admin", None, None).expect("newest");
    r.revoke_token_blocking(newest.id).expect("revoke");
    let other = r.issue_token_blocking("tech", None, None).expect("other");
    assert!(
        other.id != newest.id && other.id != first.id,
        "{:?} reused",
        other.id
    );
    // Revoking the same id again names it and touches nobody else's token.
    assert!(r.revoke_token_blocking(newest.id).is_err());
    assert!(
        r.user_by_token(&other.secret)
            .await
            .expect("lookup")
            .is_some()
    );
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
    let (_d, r) = registry().await;
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
    let (_d, r) = registry().await;
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

#[tokio::test]
async fn a_login_whose_password_changes_while_it_is_checked_opens_no_session() {
    let (_d, r) = registry().await;
    let u = r
        .create_user_blocking("admin", Role::Admin, None, "old password")
        .expect("create");
    // The login has checked the old password; the change commits before its session.
    let (user, phc) = r
        .check_password_blocking("admin", "old password")
        .expect("check")
        .expect("right password");
    assert_eq!(user, u);
    r.set_password_blocking("admin", "new password")
        .expect("change");
    assert!(
        r.open_session_if_unchanged_blocking(user.id, &phc, 60_000)
            .expect("open")
            .is_none(),
        "a session opened with the replaced password"
    );
    // Without a change in between, the same path opens a session that resolves.
    let (user, session) = r
        .login_blocking("admin", "new password", 60_000)
        .expect("login")
        .expect("opened");
    assert_eq!(user, u);
    assert!(r.session(&session.token).await.expect("session").is_some());
    assert!(
        r.login_blocking("admin", "old password", 60_000)
            .expect("login")
            .is_none()
    );
}
