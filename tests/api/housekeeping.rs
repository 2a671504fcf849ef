//! Housekeeping on a fake clock: a week of synthetic launches, with the pruning the server runs
//! every minute, keeps the tables and the database file bounded. Also the batched launch write at
//! the store level, where a consumer change between verification and commit can be staged.

use std::sync::Arc;

use rocket_lti_tool::lti::launch::LaunchData;
use rocket_lti_tool::store::handoffs::NewHandoff;
use rocket_lti_tool::store::launches::{record_batch, LaunchWrite, NewSession, Recorded};
use rocket_lti_tool::store::{self, handoffs, nonces, outcomes, sessions, Db};

use crate::helpers::temp_dir;

/// The default `outcome_target_ttl`: a year, far beyond these tests' weeks.
const YEAR: i64 = 366 * 24 * 3600;

async fn open(dir: &std::path::Path) -> Db {
    store::open(&format!("sqlite://{}", dir.join("db.sqlite").display()))
        .await
        .expect("database")
}

async fn scalar(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

/// Whether the session whose cookie value is `id` is stored.
async fn session_stored(db: &Db, id: &str) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions WHERE id = ?")
        .bind(sessions::stored_id(id))
        .fetch_one(db)
        .await
        .expect("count")
        == 1
}

fn launch_data(user: &str) -> LaunchData {
    LaunchData::new(
        "k".into(),
        [
            ("lti_message_type", "basic-lti-launch-request"),
            ("resource_link_id", "link"),
            ("user_id", user),
            ("roles", "Learner"),
            ("lis_person_name_full", "Some Student With A Long Name"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect(),
    )
}

/// Records `count` graded launches of consumer `k` (its secret `stored` as the writer gets it) at
/// time `now` through the launch writer, each with a hand-off token, in batches as the server
/// commits them.
async fn launches_at(db: &Db, stored: &str, now: i64, count: usize, window: i64, ttl: i64) {
    let writes: Vec<LaunchWrite> = (0..count)
        .map(|i| {
            let user = format!("user-{i}");
            let mut launch = launch_data(&user);
            launch.params.extend([
                (
                    "lis_outcome_service_url".into(),
                    "https://lms.example.edu/grades".into(),
                ),
                ("lis_result_sourcedid".into(), format!("result-{user}")),
            ]);
            let mut write = launch_write(now, stored, &format!("{now}-{i}"), Some(launch));
            write.nonce_expires_at = now + window + 1;
            write.handoff = write
                .session
                .as_ref()
                .map(|s| NewHandoff::new(&sessions::new_id(), &s.id, now + handoffs::HANDOFF_TTL));
            if let Some(session) = &mut write.session {
                session.expires_at = now + ttl;
            }
            write
        })
        .collect();
    let mut conn = db.acquire().await.expect("connection");
    for batch in writes.chunks(64) {
        let (outcomes, _) = record_batch(&mut conn, batch).await.expect("batch");
        assert!(
            outcomes.iter().all(|o| *o == Recorded::Accepted),
            "{outcomes:?}"
        );
    }
}

#[rocket::async_test]
async fn a_week_of_launches_keeps_the_database_bounded() {
    const STEP: i64 = 600; // ten minutes of fake time per step
    const PER_STEP: usize = 20;
    const WINDOW: i64 = 300;
    const TTL: i64 = 8 * 3600;
    const STEPS_PER_DAY: i64 = 24 * 3600 / STEP;
    let start = 1_700_000_000;
    let (dir, db, stored) = with_consumer_k(start).await;
    let mut daily_pages = Vec::new();
    let mut most_sessions = 0;
    for step in 0..7 * STEPS_PER_DAY {
        let now = start + step * STEP;
        launches_at(&db, &stored, now, PER_STEP, WINDOW, TTL).await;
        store::prune_expired(&db, now, YEAR).await.expect("prune");
        let live_sessions = scalar(&db, "SELECT COUNT(*) FROM sessions").await;
        let live_nonces = scalar(&db, "SELECT COUNT(*) FROM nonces").await;
        let live_tokens = scalar(&db, "SELECT COUNT(*) FROM handoffs").await;
        // Only what has not expired is left: a session lasts TTL, a nonce WINDOW + 1 seconds.
        assert!(
            live_sessions <= PER_STEP as i64 * (TTL / STEP + 1),
            "{live_sessions}"
        );
        assert!(live_nonces <= PER_STEP as i64, "{live_nonces}");
        // A hand-off token lasts a minute: the last step's at most.
        assert!(live_tokens <= PER_STEP as i64, "{live_tokens}");
        // One grade target per learner of the link, however often they launch.
        assert_eq!(
            scalar(&db, "SELECT COUNT(*) FROM outcome_targets").await,
            PER_STEP as i64
        );
        most_sessions = most_sessions.max(live_sessions);
        if step % STEPS_PER_DAY == STEPS_PER_DAY - 1 {
            daily_pages.push(scalar(&db, "PRAGMA page_count").await);
        }
    }
    // Sessions live TTL seconds plus up to one pruning step.
    assert_eq!(most_sessions, PER_STEP as i64 * (TTL / STEP + 1));
    // After the first day the file stops growing: freed pages are reused.
    let first = daily_pages[0];
    assert!(
        daily_pages.iter().all(|&p| p <= first + first / 10 + 4),
        "pages per day: {daily_pages:?}"
    );
    // 20 160 launches went through; far fewer rows remain.
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM sessions").await,
        most_sessions
    );
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[rocket::async_test]
async fn pruning_takes_expired_rows_only_in_bounded_batches() {
    let now = 1_700_000_000;
    let (dir, db, stored) = with_consumer_k(now - 40_000).await;
    // 1,234 launches long expired, 7 live.
    launches_at(&db, &stored, now - 40_000, 1_234, 300, 3600).await;
    launches_at(&db, &stored, now, 7, 300, 3600).await;
    // Every batch is bounded: one call deletes at most the batch size.
    assert_eq!(nonces::prune(&db, now, 100).await.expect("prune"), 100);
    assert_eq!(sessions::prune(&db, now, 100).await.expect("prune"), 100);
    assert_eq!(handoffs::prune(&db, now, 100).await.expect("prune"), 100);
    assert_eq!(
        store::prune_expired(&db, now, YEAR).await.expect("prune"),
        3 * 1_134
    );
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM nonces").await, 7);
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM sessions").await, 7);
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM handoffs").await, 7);
    // The deletes find expired rows through the expiry indexes, not a table scan.
    for (table, index) in [
        ("nonces", "nonces_by_expiry"),
        ("sessions", "sessions_by_expiry"),
        ("handoffs", "handoffs_by_expiry"),
    ] {
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!(
            "EXPLAIN QUERY PLAN SELECT rowid FROM {table} WHERE expires_at < 1 ORDER BY expires_at LIMIT 10"
        ))
        .fetch_all(&db)
        .await
        .expect("plan");
        assert!(
            plan.iter().any(|(_, _, _, d)| d.contains(index)),
            "{table}: {plan:?}"
        );
    }
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[rocket::async_test]
async fn grade_records_go_once_their_learner_has_not_launched_for_their_lifetime() {
    const DAY: i64 = 24 * 3600;
    const KEEP: i64 = 30 * DAY;
    let start = 1_700_000_000;
    let (dir, db, stored) = with_consumer_k(start).await;
    // Five learners launch on day 0; two of them again on day 10.
    launches_at(&db, &stored, start, 5, 300, 3600).await;
    launches_at(&db, &stored, start + 10 * DAY, 2, 300, 3600).await;
    let users = |db: &Db| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT user_id FROM outcome_targets ORDER BY user_id")
                .fetch_all(&db)
                .await
                .expect("users")
        }
    };
    // A day before the first launches' records run out, all are kept.
    store::prune_expired(&db, start + KEEP - DAY, KEEP)
        .await
        .expect("prune");
    assert_eq!(users(&db).await.len(), 5);
    // After it, only the learners who launched since remain.
    store::prune_expired(&db, start + KEEP + 1, KEEP)
        .await
        .expect("prune");
    assert_eq!(users(&db).await, ["user-0", "user-1"]);
    // Bounded batches, through the index on the last launch.
    launches_at(&db, &stored, start + 20 * DAY, 120, 300, 3600).await;
    let far = start + 20 * DAY + KEEP + 1;
    assert_eq!(
        outcomes::prune(&db, far - KEEP, 50).await.expect("prune"),
        50
    );
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT rowid FROM outcome_targets WHERE updated_at < 1 \
         ORDER BY updated_at LIMIT 10",
    )
    .fetch_all(&db)
    .await
    .expect("plan");
    assert!(
        plan.iter()
            .any(|(_, _, _, d)| d.contains("outcome_targets_by_update")),
        "{plan:?}"
    );
    store::prune_expired(&db, far, KEEP).await.expect("prune");
    assert!(users(&db).await.is_empty());
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[rocket::async_test]
async fn the_server_prunes_grade_records_by_its_outcome_target_ttl_setting() {
    const DAY: i64 = 24 * 3600;
    let dir = temp_dir();
    let url = format!("sqlite://{}", dir.join("db.sqlite").display());
    let db = store::open(&url).await.expect("database");
    let now = store::now();
    for (user, launched) in [("left-long-ago", now - 3 * DAY), ("here-today", now - 3600)] {
        sqlx::query(
            "INSERT INTO outcome_targets (consumer_key, resource_link_id, user_id, service_url, \
             sourcedid, display_name, updated_at) VALUES ('k', 'link', ?, 'https://lms.test/o', 's', ?, ?)",
        )
        .bind(user)
        .bind(user)
        .bind(launched)
        .execute(&db)
        .await
        .expect("row");
    }
    db.close().await;
    let app = crate::helpers::spawn_app_with(|f| {
        f.merge(("database_url", &url))
            .merge(("outcome_target_ttl", 2 * DAY))
    })
    .await;
    // The pruning task's first pass runs as the server starts.
    let users = || async {
        sqlx::query_scalar::<_, String>("SELECT user_id FROM outcome_targets")
            .fetch_all(&app.state().db)
            .await
            .expect("users")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while users().await.len() > 1 && std::time::Instant::now() < deadline {
        rocket::tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(users().await, ["here-today"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh database with secrets sealed under a test key and consumer `k`; returns its folder,
/// the pool and `k`'s secret as stored (what a verified launch carries to the writer).
async fn with_consumer_k(now: i64) -> (std::path::PathBuf, Db, String) {
    use rocket_lti_tool::crypto::{install, SecretCipher};
    use rocket_lti_tool::store::consumers;
    let dir = temp_dir();
    let db = open(&dir).await;
    install(&db, SecretCipher::from_key_material(b"test key material"));
    assert!(consumers::insert(&db, "k", "current-secret", "k", now)
        .await
        .expect("consumer"));
    let stored = consumers::find(&db, "k")
        .await
        .expect("find")
        .expect("consumer")
        .stored_secret;
    (dir, db, stored)
}

/// A launch of consumer `k` verified with its `stored` secret at `now`, starting a session for
/// `launch` (`None`: a genuine launch with bad LTI fields), replacing nothing, with no token.
fn launch_write(now: i64, stored: &str, nonce: &str, launch: Option<LaunchData>) -> LaunchWrite {
    LaunchWrite {
        consumer_key: "k".into(),
        stored_secret: stored.into(),
        nonce: nonce.into(),
        nonce_expires_at: now + 301,
        signed_at: now,
        session: launch.map(|l| {
            NewSession::new(&sessions::new_id(), &Arc::new(l), now, now + 3600).expect("session")
        }),
        replaces: None,
        handoff: None,
    }
}

#[rocket::async_test]
async fn a_launch_verified_with_an_outdated_secret_writes_nothing() {
    use rocket_lti_tool::store::consumers;

    let now = 1_700_000_000;
    // The secret as stored (sealed) when the launch was verified.
    let (dir, db, current) = with_consumer_k(now).await;
    let write = |nonce: &str, stored: &str, user: &str| {
        launch_write(now, stored, nonce, Some(launch_data(user)))
    };
    let mut conn = db.acquire().await.expect("connection");
    let batch = [
        write("n1", "sealed-old-secret", "stale"),
        write("n2", &current, "fresh"),
        write("n2", &current, "copy"),
    ];
    let (outcomes, _) = record_batch(&mut conn, &batch).await.expect("batch");
    assert_eq!(
        outcomes,
        [
            Recorded::ConsumerChanged,
            Recorded::Accepted,
            Recorded::Replayed
        ]
    );
    drop(conn);
    // The stale launch left neither its nonce nor a session: verified again, it can still pass.
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM nonces WHERE nonce = 'n1'").await,
        0
    );
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM sessions WHERE user_id = 'stale'").await,
        0
    );
    assert_eq!(scalar(&db, "SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(
        scalar(
            &db,
            "SELECT launch_count FROM consumers WHERE consumer_key = 'k'"
        )
        .await,
        1
    );
    // A disabled consumer is a changed one too.
    consumers::set_enabled(&db, "k", false)
        .await
        .expect("disable");
    let mut conn = db.acquire().await.expect("connection");
    let (outcomes, _) = record_batch(&mut conn, &[write("n3", &current, "x")])
        .await
        .expect("batch");
    assert_eq!(outcomes, [Recorded::ConsumerChanged]);
    drop(conn);
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[rocket::async_test]
async fn only_the_launch_that_spends_a_nonce_writes_its_session_token_and_grade_target() {
    let now = 1_700_000_000;
    let (dir, db, stored) = with_consumer_k(now).await;
    // Two browsers' current sessions, which their launches would end.
    for old in ["old-a", "old-b"] {
        sqlx::query(
            "INSERT INTO sessions (id, consumer_key, user_id, roles, launch, created_at, \
             expires_at) VALUES (?, 'k', 'u', '', '{}', ?, ?)",
        )
        .bind(sessions::stored_id(old))
        .bind(now)
        .bind(now + 3600)
        .execute(&db)
        .await
        .expect("old session");
    }
    let graded = |user: &str| {
        let mut launch = launch_data(user);
        launch.params.push((
            "lis_outcome_service_url".into(),
            "https://lms.example/outcomes".into(),
        ));
        launch
            .params
            .push(("lis_result_sourcedid".into(), format!("sourcedid-{user}")));
        launch
    };
    let write = |nonce: &str, user: Option<&str>, replaces: &str, token: &str| {
        let write = launch_write(now, &stored, nonce, user.map(graded));
        let session = write
            .session
            .as_ref()
            .map_or("none".into(), |s| s.id.clone());
        LaunchWrite {
            replaces: Some(replaces.into()),
            handoff: Some(NewHandoff::new(token, &session, now + 60)),
            ..write
        }
    };
    // (`n2` has a replaced session and a token without a session, which the launch pipeline never
    // builds: they must be ignored all the same.)
    let batch = [
        write("n1", Some("first"), "old-a", "token-first"),
        // A replay of n1 from another browser: it must neither end that browser's session nor
        // leave a token or a grade target.
        write("n1", Some("replay"), "old-b", "token-replay"),
        // A genuine launch with bad LTI fields: its nonce is spent, nothing else is written.
        write("n2", None, "old-b", "token-none"),
    ];
    let mut conn = db.acquire().await.expect("connection");
    let (outcomes, _) = record_batch(&mut conn, &batch).await.expect("batch");
    drop(conn);
    assert_eq!(
        outcomes,
        [Recorded::Accepted, Recorded::Replayed, Recorded::Accepted]
    );
    let count = |sql: &'static str| scalar(&db, sql);
    assert!(!session_stored(&db, "old-a").await);
    assert!(session_stored(&db, "old-b").await);
    assert_eq!(
        count("SELECT COUNT(*) FROM sessions WHERE user_id = 'first'").await,
        1
    );
    assert_eq!(count("SELECT COUNT(*) FROM sessions").await, 2);
    let first_token: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM handoffs h JOIN sessions s ON s.id = h.session_id \
         WHERE h.token = ? AND s.user_id = 'first'",
    )
    .bind(sessions::stored_id("token-first"))
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(first_token, 1);
    assert_eq!(count("SELECT COUNT(*) FROM handoffs").await, 1);
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM outcome_targets WHERE user_id = 'first' \
             AND sourcedid = 'sourcedid-first' AND display_name != ''"
        )
        .await,
        1
    );
    assert_eq!(count("SELECT COUNT(*) FROM outcome_targets").await, 1);
    assert_eq!(
        count("SELECT COUNT(*) FROM nonces WHERE nonce IN ('n1', 'n2')").await,
        2
    );
    assert_eq!(
        count("SELECT launch_count FROM consumers WHERE consumer_key = 'k'").await,
        1
    );
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[rocket::async_test]
async fn a_batch_that_breaks_a_constraint_midway_leaves_nothing_behind() {
    let now = 1_700_000_000;
    let (dir, db, stored) = with_consumer_k(now).await;
    for sql in [
        "INSERT INTO sessions (id, consumer_key, user_id, roles, launch, created_at, expires_at) \
         VALUES (?, 'k', 'u', '', '{}', 0, 9999999999)",
        "INSERT INTO handoffs (token, session_id, expires_at) VALUES (?, 'old', 9999999999)",
    ] {
        let stored = sessions::stored_id(if sql.contains("handoffs") {
            "taken"
        } else {
            "old"
        });
        sqlx::query(sql)
            .bind(stored)
            .execute(&db)
            .await
            .expect("set-up");
    }
    let write = |nonce: &str, user: &str, token: &str| {
        let write = launch_write(now, &stored, nonce, Some(launch_data(user)));
        let session = write
            .session
            .as_ref()
            .map_or("none".into(), |s| s.id.clone());
        LaunchWrite {
            replaces: Some("old".into()),
            handoff: Some(NewHandoff::new(token, &session, now + 60)),
            ..write
        }
    };
    // The second launch's token is already in use: the hand-off insert, late in the script, fails
    // after the nonces, the old session's deletion and the new sessions were written.
    let batch = [write("n1", "one", "fresh"), write("n2", "two", "taken")];
    let mut conn = db.acquire().await.expect("connection");
    assert!(record_batch(&mut conn, &batch).await.is_err());
    // On the same connection: no transaction is left open with the batch's rows in it.
    sqlx::query("BEGIN")
        .execute(&mut *conn)
        .await
        .expect("no transaction left open");
    let nonces: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM nonces")
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    assert_eq!(nonces, 0);
    sqlx::query("ROLLBACK")
        .execute(&mut *conn)
        .await
        .expect("rollback");
    drop(conn);
    let count = |sql: &'static str| scalar(&db, sql);
    assert_eq!(count("SELECT COUNT(*) FROM nonces").await, 0);
    assert!(session_stored(&db, "old").await);
    assert_eq!(count("SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM handoffs").await, 1);
    assert_eq!(
        count("SELECT launch_count FROM consumers WHERE consumer_key = 'k'").await,
        0
    );
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[rocket::async_test]
async fn two_graded_launches_of_one_learner_in_a_batch_leave_the_later_sourcedid() {
    let now = 1_700_000_000;
    let (dir, db, stored) = with_consumer_k(now).await;
    let graded = |nonce: &str, sourcedid: &str| {
        let mut launch = launch_data("learner");
        launch.params.push((
            "lis_outcome_service_url".into(),
            "https://lms.example/outcomes".into(),
        ));
        launch
            .params
            .push(("lis_result_sourcedid".into(), sourcedid.into()));
        launch_write(now, &stored, nonce, Some(launch))
    };
    // A score the LMS confirmed for the first sourcedid: a new sourcedid must forget it.
    let mut conn = db.acquire().await.expect("connection");
    let (first, _) = record_batch(&mut conn, &[graded("n0", "s0")])
        .await
        .expect("batch");
    assert_eq!(first, [Recorded::Accepted]);
    sqlx::query("UPDATE outcome_targets SET last_score = 0.5, score_known_at = ?")
        .bind(now)
        .execute(&mut *conn)
        .await
        .expect("score");
    let (outcomes, _) = record_batch(&mut conn, &[graded("n1", "s1"), graded("n2", "s2")])
        .await
        .expect("batch");
    drop(conn);
    assert_eq!(outcomes, [Recorded::Accepted, Recorded::Accepted]);
    let (sourcedid, score): (String, Option<f64>) =
        sqlx::query_as("SELECT sourcedid, last_score FROM outcome_targets")
            .fetch_one(&db)
            .await
            .expect("one target");
    assert_eq!((sourcedid.as_str(), score), ("s2", None));
    assert_eq!(
        scalar(
            &db,
            "SELECT launch_count FROM consumers WHERE consumer_key = 'k'"
        )
        .await,
        3
    );
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An app, a launch signed `signed_ago` seconds ago and accepted, then pruning as a clock
/// `prune_in` seconds ahead does, which deletes its nonce; with the time the launch was signed
/// against.
async fn launch_then_prune(
    signed_ago: u64,
    prune_in: i64,
) -> (crate::helpers::TestApp, crate::helpers::Launch, i64) {
    use crate::helpers::{page, spawn_app, Launch};
    use rocket::http::Status;

    let app = spawn_app().await;
    let now = store::now();
    let launch = Launch::new("/any").timestamp(now as u64 - signed_ago);
    page(app.launch(&launch).await, Status::Ok).await;
    let db = &app.state().db;
    store::prune_expired(db, now + prune_in, YEAR)
        .await
        .expect("prune");
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM nonces").await, 0);
    (app, launch, now)
}

#[rocket::async_test]
async fn after_pruning_by_a_clock_that_ran_ahead_a_replay_of_a_forgotten_nonce_is_refused() {
    use crate::helpers::{page, refused, spawn_app_with, Launch};
    use rocket::http::Status;

    // A launch signed 100 s ago, then pruning by a clock nine hours ahead (as a server with a
    // wrong clock did before this restart): its nonce is gone.
    let (first, launch, now) = launch_then_prune(100, 9 * 3600).await;
    // Restarted on that database with the clock right, a replay of it cannot be told from a new
    // launch: it is refused, its nonce unspent. New launches, whose nonces were never stored,
    // still pass: the mark comes from the pruned nonces' expiries, not from the wrong clock.
    let url = first.database_url();
    let restarted = spawn_app_with(|f| f.merge(("database_url", url))).await;
    let body = refused(restarted.launch(&launch).await, Status::Unauthorized).await;
    assert!(body.contains("Launch expired"), "{body}");
    assert_eq!(
        scalar(&restarted.state().db, "SELECT COUNT(*) FROM nonces").await,
        0
    );
    // (A launch dated no later than the pruned one was stored would still be refused.)
    let new = Launch::new("/any").timestamp(now as u64 + 5);
    page(restarted.launch(&new).await, Status::Ok).await;
}

#[rocket::async_test]
async fn a_replay_of_a_nonce_another_process_pruned_is_refused_without_a_restart() {
    use crate::helpers::refused;
    use rocket::http::Status;

    // Another server on the same database, its clock nine hours ahead, prunes the nonce: this
    // server's own mark in memory never saw that, but the stored one did.
    let (app, launch, _) = launch_then_prune(100, 9 * 3600).await;
    let body = refused(app.launch(&launch).await, Status::Unauthorized).await;
    assert!(body.contains("Launch expired"), "{body}");
    assert_eq!(
        scalar(&app.state().db, "SELECT COUNT(*) FROM nonces").await,
        0
    );
}

#[rocket::async_test]
async fn a_mark_left_by_one_lms_fast_clock_locks_out_no_other_consumer() {
    use crate::helpers::{page, refused, spawn_app, Launch};
    use rocket::http::Status;

    let app = spawn_app().await;
    app.add_consumer("other-lms", "other-secret").await;
    let now = store::now();
    // The default consumer's LMS runs 290 s fast (inside the window); a server clock a day
    // ahead prunes its nonce.
    let fast = Launch::new("/any").timestamp(now as u64 + 290);
    page(app.launch(&fast).await, Status::Ok).await;
    let db = &app.state().db;
    store::prune_expired(db, now + 86_400, YEAR)
        .await
        .expect("prune");
    assert_eq!(scalar(db, "SELECT COUNT(*) FROM nonces").await, 0);
    // Once the clock is right: the replay is refused, and so is anything that LMS signed before
    // it; its next launches, and another LMS's launches at the right time, pass at once.
    let body = refused(app.launch(&fast).await, Status::Unauthorized).await;
    assert!(body.contains("Launch expired"), "{body}");
    let earlier = Launch::new("/any").timestamp(now as u64 + 200);
    refused(app.launch(&earlier).await, Status::Unauthorized).await;
    page(
        app.launch(&Launch::new("/any").timestamp(now as u64 + 291))
            .await,
        Status::Ok,
    )
    .await;
    let other = Launch::new("/any")
        .consumer("other-lms", "other-secret")
        .timestamp(now as u64);
    page(app.launch(&other).await, Status::Ok).await;
}

#[rocket::async_test]
async fn the_one_mark_of_older_builds_still_holds_for_every_key() {
    use crate::helpers::{page, refused, spawn_app, Launch};
    use rocket::http::Status;

    // As migration 0014 keeps it: no key has a mark of its own (one removed before the upgrade
    // and added again has none), yet launches signed at or before it are refused.
    let app = spawn_app().await;
    let now = store::now();
    sqlx::query("UPDATE nonce_pruning SET all_signed_up_to = ?")
        .bind(now + 100)
        .execute(&app.state().db)
        .await
        .expect("mark");
    let at_mark = Launch::new("/any").timestamp(now as u64 + 100);
    let body = refused(app.launch(&at_mark).await, Status::Unauthorized).await;
    assert!(body.contains("Launch expired"), "{body}");
    assert_eq!(app.count("nonces").await, 0, "its nonce is not spent");
    let after = Launch::new("/any").timestamp(now as u64 + 101);
    page(app.launch(&after).await, Status::Ok).await;
}

#[rocket::async_test]
async fn an_lms_with_a_slow_clock_is_not_locked_out_after_a_clock_ran_ahead() {
    use crate::helpers::{page, Launch};
    use rocket::http::Status;

    // Its clock 250 s slow: the nonce it used is pruned by a clock nine hours ahead, and its next
    // launch, a second later by its own clock, still passes.
    let (app, _, now) = launch_then_prune(250, 9 * 3600).await;
    let next = Launch::new("/any").timestamp(now as u64 - 249);
    page(app.launch(&next).await, Status::Ok).await;
}

#[rocket::async_test]
async fn a_wider_timestamp_window_after_a_restart_reaches_no_pruned_nonce() {
    use crate::helpers::{page, refused, spawn_app_with, Launch};
    use rocket::http::Status;

    // Accepted within the default 300 s window, then pruned by a right clock once it expired
    // (301 s after the launch, 60 s of pruning lag, and 10 s for a slow machine's launch to start
    // a few seconds after `now`).
    let (first, launch, now) = launch_then_prune(290, 301 + 60 + 10).await;
    let stored = Launch::new("/any").timestamp(now as u64 + 5);
    page(first.launch(&stored).await, Status::Ok).await;
    // With a window of an hour, the replay is within it again: it must not pass.
    let url = first.database_url();
    let wider = spawn_app_with(|f| {
        f.merge(("database_url", url))
            .merge(("timestamp_window", 3600))
    })
    .await;
    refused(wider.launch(&launch).await, Status::Unauthorized).await;
    // The nonces still stored now live as long as the wider window needs.
    let shortest: i64 = sqlx::query_scalar("SELECT min(expires_at) FROM nonces")
        .fetch_one(&wider.state().db)
        .await
        .expect("nonces");
    assert!(shortest >= now + 3600, "{shortest}");
    let new = Launch::new("/any").timestamp(now as u64 + 6);
    page(wider.launch(&new).await, Status::Ok).await;
}
