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
