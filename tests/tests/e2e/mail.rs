//! Mail, end to end against a real SMTP receiver on loopback (`smtp.rs`): the welcome mail after
//! signup, sending that survives an SMTP server that is down, `.eml` files without SMTP, an
//! invitation accepted from its mailed link, and a password reset from its mailed link (once,
//! on its own tenant only, the same answer for an unknown address).

use std::time::Duration;

use control_plane::mail::{Mail, MailJob, enqueue_mail};
use control_plane::one_time_links::{LinkPurpose, password_reset_subject};
use reqwest::{Method, StatusCode, header};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use crate::harness::{TestApp, TestOptions, outbox_dir};
use crate::session::Session;
use crate::smtp::SmtpReceiver;

const PASSWORD: &str = "violet tram oyster gravel";

async fn app_with_smtp(receiver_url: String) -> TestApp {
    TestApp::spawn_with(TestOptions {
        smtp_url: Some(receiver_url),
        ..TestOptions::default()
    })
    .await
}

/// `link` (an absolute URL on a tenant host) as the path and query to request.
fn path_of(link: &str) -> String {
    let after_scheme = link.split_once("://").map_or(link, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or_else(|| "/".to_owned(), |start| after_scheme[start..].to_owned())
}

/// The link in `mail` to `path` on `slug`'s host, and the token it carries.
fn link_and_token(
    mail: &crate::smtp::ReceivedMail,
    app: &TestApp,
    slug: &str,
    path: &str,
) -> (String, String) {
    let prefix = format!(
        "http://{slug}.localhost:{}{path}?token=",
        app.address.port()
    );
    let link = mail
        .link_starting(&prefix)
        .unwrap_or_else(|| panic!("no link to {path} in {mail:?}"));
    let token = link.strip_prefix(&prefix).unwrap().to_owned();
    (link, token)
}

/// Posts a form on `slug`'s host, waiting out `503 busy` (shared password hashing) as a browser's
/// user would by trying again.
async fn post_form(
    app: &TestApp,
    slug: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    for _ in 0..15 {
        let response = app
            .request(Method::POST, &app.tenant_host(slug), path)
            .header(header::ACCEPT, "text/html")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::SERVICE_UNAVAILABLE {
            return response;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("POST {path} stayed busy for 15 s")
}

async fn get_page(app: &TestApp, slug: &str, path: &str) -> reqwest::Response {
    app.request(Method::GET, &app.tenant_host(slug), path)
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap()
}

/// The session cookie a response set.
fn session_cookie(response: &reqwest::Response) -> String {
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(cookie.starts_with("silo_session=st."), "{cookie}");
    cookie.split(';').next().unwrap().to_owned()
}

/// Mail jobs not yet done (queued, running or failed and waiting for another attempt).
async fn mail_jobs_left(app: &TestApp) -> i64 {
    app.control_plane()
        .await
        .query_one(
            "SELECT count(*) FROM apalis.jobs WHERE job_type = 'silo.mail' AND status <> 'Done'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn wait_until_no_mail_jobs_left(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while mail_jobs_left(app).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "mail jobs still queued"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn signup_sends_the_welcome_mail_with_the_workspace_link() {
    let receiver = SmtpReceiver::start().await;
    let app = app_with_smtp(receiver.url()).await;
    app.active_tenant("mailwelcome").await;
    let mail = receiver
        .wait_for("owner@mailwelcome.test", 1, Duration::from_secs(15))
        .await;
    assert!(mail.subject().contains("mailwelcome Pharmacy"), "{mail:?}");
    assert!(mail.from.starts_with("no-reply@"), "{mail:?}");
    assert!(mail.message.contains("text/plain") && mail.message.contains("text/html"));
    let workspace = format!("http://mailwelcome.localhost:{}/", app.address.port());
    let link = mail.link_starting(&workspace).expect("the workspace link");
    assert_eq!(link, workspace);
    let page = get_page(&app, "mailwelcome", &path_of(&link)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Sign in to mailwelcome Pharmacy")
    );
    // Exactly one welcome, however the jobs ran.
    wait_until_no_mail_jobs_left(&app).await;
    assert_eq!(receiver.mails_to("owner@mailwelcome.test").len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn with_smtp_down_signup_succeeds_and_the_mail_arrives_once_it_is_up() {
    // A port nobody listens on, until the receiver starts on it.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let app = app_with_smtp(format!("smtp://{address}")).await;
    let started = std::time::Instant::now();
    app.active_tenant("maildown").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "signup waited on mail"
    );
    // Several attempts fail meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        mail_jobs_left(&app).await,
        1,
        "the mail waits to be tried again"
    );
    let receiver = SmtpReceiver::start_on(address).await;
    let mail = receiver
        .wait_for("owner@maildown.test", 1, Duration::from_secs(20))
        .await;
    assert!(mail.subject().contains("maildown Pharmacy"));
    wait_until_no_mail_jobs_left(&app).await;
    assert_eq!(receiver.mails_to("owner@maildown.test").len(), 1);
    app.finish().await;
}

#[tokio::test]
async fn without_smtp_each_mail_is_written_as_an_eml_file() {
    let app = TestApp::spawn().await;
    app.active_tenant("mailfile").await;
    let folder = outbox_dir(&app.database);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let written = loop {
        let files: Vec<_> = std::fs::read_dir(&folder)
            .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
            .unwrap_or_default();
        if let Some(file) = files
            .iter()
            .find(|path| path.extension().is_some_and(|extension| extension == "eml"))
        {
            break std::fs::read_to_string(file).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no .eml file in {folder:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(written.contains("To: owner@mailfile.test"), "{written}");
    assert!(written.contains("mailfile Pharmacy"), "{written}");
    assert!(
        written.contains(&format!("mailfile.localhost:{}", app.address.port())),
        "{written}"
    );
    app.finish().await;
}

#[tokio::test]
async fn an_invitation_is_mailed_and_accepted_on_its_page_signing_in_as_staff() {
    let receiver = SmtpReceiver::start().await;
    let app = app_with_smtp(receiver.url()).await;
    app.active_tenant("mailinvite").await;
    app.active_tenant("mailother").await;
    let owner = Session::owner(&app, "mailinvite").await;
    owner
        .expect(
            Method::POST,
            "/api/v1/users/invitations",
            Some(json!({"email": "clerk@mailinvite.test", "role": "staff"})),
            StatusCode::CREATED,
        )
        .await;
    let mail = receiver
        .wait_for("clerk@mailinvite.test", 1, Duration::from_secs(15))
        .await;
    assert!(mail.subject().contains("mailinvite Pharmacy"), "{mail:?}");
    let (link, token) = link_and_token(&mail, &app, "mailinvite", "/join");

    // The link opens on its own tenant only, and not altered.
    let page = get_page(&app, "mailinvite", &path_of(&link)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        page.headers()[header::REFERRER_POLICY],
        "same-origin",
        "the URL holds a token: it reaches no other site"
    );
    let text = page.text().await.unwrap();
    assert!(text.contains("Join mailinvite Pharmacy") && text.contains("clerk@mailinvite.test"));
    let elsewhere = get_page(&app, "mailother", &path_of(&link)).await;
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    assert!(
        elsewhere
            .text()
            .await
            .unwrap()
            .contains("invalid_invitation")
    );
    let mut altered = token.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let refused = get_page(&app, "mailinvite", &format!("/join?token={altered}")).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);

    // A weak password is refused beside its field, the name kept, nobody created.
    let weak = post_form(
        &app,
        "mailinvite",
        "/join",
        &[
            ("token", &token),
            ("display_name", "Casey Clerk"),
            ("password", "password1"),
        ],
    )
    .await;
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let text = weak.text().await.unwrap();
    assert!(
        text.contains("password-error") && text.contains("value=\"Casey Clerk\""),
        "{text}"
    );
    Session::anonymous(&app, "mailinvite")
        .expect(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({"email": "clerk@mailinvite.test", "password": "password1"})),
            StatusCode::UNAUTHORIZED,
        )
        .await;

    // Joining signs the clerk in, as staff.
    let joined = post_form(
        &app,
        "mailinvite",
        "/join",
        &[
            ("token", &token),
            ("display_name", "Casey Clerk"),
            ("password", "amber kettle lantern moss"),
        ],
    )
    .await;
    assert_eq!(joined.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie(&joined);
    let dashboard = app
        .request(Method::GET, &app.tenant_host("mailinvite"), "/")
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    assert!(dashboard.text().await.unwrap().contains("Casey Clerk"));
    let clerk = Session::sign_in(
        &app,
        "mailinvite",
        "clerk@mailinvite.test",
        "amber kettle lantern moss",
    )
    .await;
    let me = clerk
        .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await;
    assert_eq!(me["role"], "staff", "{me}");

    // The link works once.
    let again = post_form(
        &app,
        "mailinvite",
        "/join",
        &[
            ("token", &token),
            ("display_name", "Mallory"),
            ("password", "amber kettle lantern moss"),
        ],
    )
    .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    app.finish().await;
}

#[tokio::test]
async fn a_forgotten_password_is_reset_from_the_mailed_link_once() {
    let receiver = SmtpReceiver::start().await;
    let app = app_with_smtp(receiver.url()).await;
    app.active_tenant("mailreset").await;
    app.active_tenant("mailresetb").await;
    let owner_email = "owner@mailreset.test";
    receiver
        .wait_for(owner_email, 1, Duration::from_secs(15))
        .await; // the welcome
    // A session from before the reset (whoever holds it may be why the password is reset).
    let before = Session::owner(&app, "mailreset").await;
    before
        .expect(Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await;

    let sign_in_page = get_page(&app, "mailreset", "/").await.text().await.unwrap();
    assert!(
        sign_in_page.contains("href=\"/password/forgot\""),
        "{sign_in_page}"
    );
    assert_eq!(
        get_page(&app, "mailreset", "/password/forgot")
            .await
            .status(),
        StatusCode::OK
    );
    // A known and an unknown address get the very same page.
    let known = post_form(
        &app,
        "mailreset",
        "/password/forgot",
        &[("email", owner_email)],
    )
    .await;
    let unknown = post_form(
        &app,
        "mailreset",
        "/password/forgot",
        &[("email", "nobody@mailreset.test")],
    )
    .await;
    assert_eq!(known.status(), StatusCode::OK);
    assert_eq!(unknown.status(), StatusCode::OK);
    let (known, unknown) = (known.text().await.unwrap(), unknown.text().await.unwrap());
    assert!(known.contains("reset-sent"), "{known}");
    assert_eq!(known, unknown);
    // Not an address at all: said beside the field.
    let bad = post_form(&app, "mailreset", "/password/forgot", &[("email", "owner")]).await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let mail = receiver
        .wait_for(owner_email, 2, Duration::from_secs(15))
        .await;
    assert!(mail.subject().contains("mailreset Pharmacy"), "{mail:?}");
    wait_until_no_mail_jobs_left(&app).await;
    assert!(
        receiver.mails_to("nobody@mailreset.test").is_empty(),
        "no mail for nobody"
    );
    let (link, token) = link_and_token(&mail, &app, "mailreset", "/password/reset");

    // On another tenant's host the link is refused.
    let elsewhere = get_page(&app, "mailresetb", &path_of(&link)).await;
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    assert!(
        elsewhere
            .text()
            .await
            .unwrap()
            .contains("invalid_reset_link")
    );
    let elsewhere = post_form(
        &app,
        "mailresetb",
        "/password/reset",
        &[("token", &token), ("password", "copper willow fable drift")],
    )
    .await;
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);

    let form = get_page(&app, "mailreset", &path_of(&link)).await;
    assert_eq!(form.status(), StatusCode::OK);
    assert_eq!(form.headers()[header::REFERRER_POLICY], "same-origin");
    // A weak password is refused and the link stays usable.
    let weak = post_form(
        &app,
        "mailreset",
        "/password/reset",
        &[("token", &token), ("password", "mailreset1")],
    )
    .await;
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let reset = post_form(
        &app,
        "mailreset",
        "/password/reset",
        &[("token", &token), ("password", "copper willow fable drift")],
    )
    .await;
    assert_eq!(reset.status(), StatusCode::SEE_OTHER);
    let after = session_cookie(&reset);
    // The reset ended every earlier session of the user; the one it started works.
    before
        .expect(Method::GET, "/api/v1/me", None, StatusCode::UNAUTHORIZED)
        .await;
    let dashboard = app
        .request(Method::GET, &app.tenant_host("mailreset"), "/")
        .header(header::COOKIE, &after)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(dashboard.contains("<h1>Dashboard</h1>"), "{dashboard}");

    // The new password signs in, the old one no longer does.
    Session::sign_in(&app, "mailreset", owner_email, "copper willow fable drift").await;
    Session::anonymous(&app, "mailreset")
        .expect(
            Method::POST,
            "/api/v1/sessions",
            Some(json!({"email": owner_email, "password": PASSWORD})),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    // Replayed, the link is refused, page and form alike.
    let replayed = get_page(&app, "mailreset", &path_of(&link)).await;
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    let replayed = post_form(
        &app,
        "mailreset",
        "/password/reset",
        &[("token", &token), ("password", "another brand new phrase")],
    )
    .await;
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    Session::sign_in(&app, "mailreset", owner_email, "copper willow fable drift").await;
    app.finish().await;
}

/// The store's one-time links, for both kinds a person follows: a mailed password reset and the
/// sign-in link the signup page sends a new owner through.
#[tokio::test]
async fn one_time_links_are_refused_replayed_elsewhere_expired_altered_or_for_another_purpose() {
    let app = TestApp::spawn().await;
    app.active_tenant("linksa").await;
    app.active_tenant("linksb").await;
    let store = &app.store;
    let tenant_a = store.tenant_by_slug("linksa").await.unwrap().unwrap().id;
    let tenant_b = store.tenant_by_slug("linksb").await.unwrap().unwrap().id;
    let subject = password_reset_subject(1);
    let kinds = [
        (
            LinkPurpose::PasswordReset,
            LinkPurpose::SignIn,
            control_plane::one_time_links::PASSWORD_RESET_LIFETIME,
        ),
        (
            LinkPurpose::SignIn,
            LinkPurpose::PasswordReset,
            control_plane::one_time_links::SIGN_IN_LINK_LIFETIME,
        ),
    ];
    for (purpose, other, lifetime) in kinds {
        let token = store
            .create_link(purpose, tenant_a, &subject, lifetime)
            .await
            .unwrap();
        // Another tenant, another purpose, an altered token: nothing.
        assert_eq!(
            store.peek_link(purpose, tenant_b, &token).await.unwrap(),
            None,
            "{purpose:?}"
        );
        assert_eq!(
            store.use_link(purpose, tenant_b, &token).await.unwrap(),
            None
        );
        assert_eq!(
            store.use_link(other, tenant_a, &token).await.unwrap(),
            None,
            "{purpose:?} as {other:?}"
        );
        let mut altered = token.expose_secret().to_owned();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        let altered = SecretString::from(altered);
        assert_eq!(
            store.use_link(purpose, tenant_a, &altered).await.unwrap(),
            None
        );
        // Its own tenant and purpose: once.
        assert_eq!(
            store
                .use_link(purpose, tenant_a, &token)
                .await
                .unwrap()
                .as_deref(),
            Some(subject.as_str()),
            "{purpose:?}"
        );
        assert_eq!(
            store.use_link(purpose, tenant_a, &token).await.unwrap(),
            None,
            "{purpose:?} replayed"
        );
        assert_eq!(
            store.peek_link(purpose, tenant_a, &token).await.unwrap(),
            None
        );
        // Expired: refused though never used.
        let expiring = store
            .create_link(purpose, tenant_a, &subject, Duration::from_millis(200))
            .await
            .unwrap();
        assert!(
            store
                .peek_link(purpose, tenant_a, &expiring)
                .await
                .unwrap()
                .is_some()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            store.use_link(purpose, tenant_a, &expiring).await.unwrap(),
            None,
            "{purpose:?} expired"
        );
        // Only the hash is stored.
        let stored: i64 = app
            .control_plane()
            .await
            .query_one(
                "SELECT count(*) FROM one_time_links WHERE position(convert_to($1, 'UTF8') IN token_hash) > 0",
                &[&token.expose_secret()],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, 0);
    }
    app.finish().await;
}

#[tokio::test]
async fn one_tenants_burst_of_mail_does_not_hold_up_another_tenants_mail() {
    // Each mail takes the server 40 ms: a burst of 600 takes about three seconds to drain with
    // the worker's eight at once.
    let receiver = SmtpReceiver::start_slow(Duration::from_millis(40)).await;
    let app = app_with_smtp(receiver.url()).await;
    app.active_tenant("fairbusy").await;
    app.active_tenant("fairquiet").await;
    wait_until_no_mail_jobs_left(&app).await;
    let busy = app
        .store
        .tenant_by_slug("fairbusy")
        .await
        .unwrap()
        .unwrap()
        .id;
    let quiet = app
        .store
        .tenant_by_slug("fairquiet")
        .await
        .unwrap()
        .unwrap()
        .id;
    let mut transaction = app.store.pool().begin().await.unwrap();
    for _ in 0..600 {
        let job = MailJob {
            tenant_id: busy,
            to: "burst@fairbusy.test".to_owned(),
            mail: Mail::Welcome,
        };
        enqueue_mail(&mut transaction, &job).await.unwrap();
    }
    transaction.commit().await.unwrap();
    // Queued later than the whole burst (the queue orders equal priorities by time, to the second).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let queued = std::time::Instant::now();
    let job = MailJob {
        tenant_id: quiet,
        to: "owner@fairquiet.test".to_owned(),
        mail: Mail::Welcome,
    };
    app.store.enqueue_mail(&job).await.unwrap();
    let sent_before = receiver.mails_to("burst@fairbusy.test").len();
    assert!(
        sent_before < 500,
        "the burst was nearly over ({sent_before} of 600) before the quiet tenant's mail was queued"
    );
    receiver
        .wait_for("owner@fairquiet.test", 2, Duration::from_secs(10))
        .await;
    let waited = queued.elapsed();
    let burst_sent = receiver.mails_to("burst@fairbusy.test").len();
    assert!(
        waited < Duration::from_secs(1),
        "the quiet tenant's mail waited {waited:?} behind another tenant's burst ({burst_sent} of 600 sent)"
    );
    wait_until_no_mail_jobs_left(&app).await;
    app.finish().await;
}

#[tokio::test]
async fn billing_changes_mail_the_owner_trial_ending_once_then_past_due_then_suspended() {
    let receiver = SmtpReceiver::start().await;
    let app = app_with_smtp(receiver.url()).await;
    app.active_tenant("mailbill").await;
    let owner = "owner@mailbill.test";
    receiver.wait_for(owner, 1, Duration::from_secs(15)).await; // the welcome
    let lifecycle = control_plane::Settings::default().lifecycle();
    let now = chrono::Utc::now();
    // Two and a half days before the 14-day trial ends: the reminder, once.
    let soon = now + chrono::Duration::hours(11 * 24 + 12);
    let done = app
        .store
        .apply_due_transitions(soon, &lifecycle)
        .await
        .unwrap();
    assert_eq!(done.trial_reminders, 1);
    let again = app
        .store
        .apply_due_transitions(soon, &lifecycle)
        .await
        .unwrap();
    assert_eq!(again.trial_reminders, 0);
    let reminder = receiver.wait_for(owner, 2, Duration::from_secs(15)).await;
    assert!(
        reminder.subject().contains("trial of mailbill Pharmacy"),
        "{reminder:?}"
    );
    // The trial ends unpaid: past due, and the owner is told until when it stays open.
    let done = app
        .store
        .apply_due_transitions(now + chrono::Duration::days(15), &lifecycle)
        .await
        .unwrap();
    assert_eq!(done.trials_ended, 1);
    let past_due = receiver.wait_for(owner, 3, Duration::from_secs(15)).await;
    assert!(
        past_due
            .subject()
            .contains("Payment needed for mailbill Pharmacy"),
        "{past_due:?}"
    );
    assert!(
        past_due.message.contains("stays open until"),
        "{past_due:?}"
    );
    // The grace period ends: suspended.
    let done = app
        .store
        .apply_due_transitions(now + chrono::Duration::days(30), &lifecycle)
        .await
        .unwrap();
    assert_eq!(done.suspended, 1);
    let suspended = receiver.wait_for(owner, 4, Duration::from_secs(15)).await;
    assert!(
        suspended
            .subject()
            .contains("mailbill Pharmacy is suspended"),
        "{suspended:?}"
    );
    wait_until_no_mail_jobs_left(&app).await;
    assert_eq!(receiver.mails_to(owner).len(), 4);
    app.finish().await;
}
