//! Landing in the workspace: the signup's status URL hands the browser that signed up one-time
//! sign-in links; a link signs the owner in once, on its own tenant, within its minute. The
//! sign-in page, the session cookie, sign-out, cross-site form posts, and HTML error pages for
//! browsers (JSON for everyone else).

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, COOKIE, LOCATION, ORIGIN, SET_COOKIE};

use crate::harness::{TestApp, error_code};

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// A client that does not follow redirects, so a test sees each answer.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

/// The path and query of an absolute URL on the test's tenant host.
fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").expect("absolute").1;
    after_scheme[after_scheme.find('/').expect("a path")..].to_owned()
}

/// Follows a sign-in link path on `slug`'s host; answers the response.
async fn follow(app: &TestApp, slug: &str, path: &str) -> reqwest::Response {
    no_redirects()
        .get(format!("http://{}{path}", app.address))
        .header(reqwest::header::HOST, app.tenant_host(slug))
        .header(ACCEPT, BROWSER_ACCEPT)
        .send()
        .await
        .expect("answers")
}

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn form_body(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).expect("a form encodes")
}

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("silo_session=") && !value.starts_with("silo_session=;"))
        .map(|value| value.split(';').next().unwrap_or_default().to_owned())
}

async fn sign_in_url(app: &TestApp, status_url: &str) -> Option<String> {
    let status: serde_json::Value = app.apex_get(status_url).await.json().await.unwrap();
    status["sign_in_url"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_works_once_on_its_own_tenant_within_its_minute() {
    let app = TestApp::spawn().await;
    let accepted = app.active_tenant("landing").await;
    let other = app.active_tenant("elsewhere").await;
    assert!(
        accepted.status_url.contains("?key="),
        "the status URL carries the landing key: {}",
        accepted.status_url
    );

    // Without the key, the status says nothing that signs anyone in.
    let (bare, _) = accepted.status_url.split_once('?').unwrap();
    assert_eq!(sign_in_url(&app, bare).await, None);
    let mut tampered = accepted.status_url.clone();
    tampered.push('x');
    assert_eq!(sign_in_url(&app, &tampered).await, None);
    // Another signup's key does not open this one.
    let (_, other_key) = other.status_url.split_once('?').unwrap();
    assert_eq!(
        sign_in_url(&app, &format!("{bare}?{other_key}")).await,
        None
    );

    let link = sign_in_url(&app, &accepted.status_url)
        .await
        .expect("a link");
    assert!(
        link.starts_with(&format!(
            "http://landing.localhost:{}/sign-in/link?token=",
            app.address.port()
        )),
        "{link}"
    );
    let path = path_of(&link);

    // On another tenant's host the link opens nothing (and is not used up by trying).
    let elsewhere = follow(&app, "elsewhere", &path).await;
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    assert!(session_cookie(&elsewhere).is_none());

    let landed = follow(&app, "landing", &path).await;
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(landed.headers()[LOCATION], "/");
    assert_eq!(landed.headers()["referrer-policy"], "same-origin");
    let cookie = session_cookie(&landed).expect("signed in");
    let set_cookie = landed.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );

    // The cookie opens the dashboard, which names the owner.
    let dashboard = app
        .request(reqwest::Method::GET, &app.tenant_host("landing"), "/")
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), StatusCode::OK);
    assert_eq!(dashboard.headers()["cache-control"], "no-store");
    let html = dashboard.text().await.unwrap();
    assert!(html.contains("<h1>Dashboard</h1>"), "{html}");
    assert!(html.contains("owner@landing.test"), "{html}");
    // The same cookie on another tenant's host is no session there.
    let foreign = app
        .request(reqwest::Method::GET, &app.tenant_host("elsewhere"), "/")
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(foreign.contains("Sign in to"), "{foreign}");

    // Twice: refused, as an HTML page for the browser.
    let again = follow(&app, "landing", &path).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert!(session_cookie(&again).is_none());
    let page = again.text().await.unwrap();
    assert!(
        page.contains("invalid_sign_in_link") && page.contains("<h1>"),
        "{page}"
    );

    // Once the owner has landed, the landing key makes no more links.
    assert_eq!(sign_in_url(&app, &accepted.status_url).await, None);

    // A link past its minute is refused.
    let second = sign_in_url(&app, &other.status_url).await.expect("a link");
    app.control_plane()
        .await
        .execute(
            "UPDATE one_time_links SET expires_at = now() - interval '1 second' \
             WHERE purpose = 'sign_in'",
            &[],
        )
        .await
        .unwrap();
    let expired = follow(&app, "elsewhere", &path_of(&second)).await;
    assert_eq!(expired.status(), StatusCode::BAD_REQUEST);
    // A made-up token, and none at all, likewise.
    for path in ["/sign-in/link?token=AAAA", "/sign-in/link"] {
        let response = follow(&app, "elsewhere", path).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_form_signs_in_keeps_the_email_on_error_and_refuses_other_sites() {
    let app = TestApp::spawn().await;
    app.active_tenant("formed").await;
    let host = app.tenant_host("formed");
    let origin = format!("http://{host}");
    let post = |form: &'static [(&'static str, &'static str)], origin: Option<&str>| {
        let mut request = no_redirects()
            .post(format!("http://{}/sign-in", app.address))
            .header(reqwest::header::HOST, &host)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_body(form));
        if let Some(origin) = origin {
            request = request.header(ORIGIN, origin);
        }
        request
    };

    // Signed out, `/` is the branded sign-in page with labelled fields.
    let page = app.tenant_get("formed", "/").await.text().await.unwrap();
    assert!(page.contains("Sign in to formed Pharmacy"), "{page}");
    assert!(page.contains(r#"<label for="email">"#) && page.contains(r#"<label for="password">"#));

    // A wrong password: the form again, 401, the email kept, the password not echoed.
    let wrong = post(
        &[
            ("email", "owner@formed.test"),
            ("password", "not the password"),
        ],
        Some(&origin),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(session_cookie(&wrong).is_none());
    let html = wrong.text().await.unwrap();
    assert!(html.contains("The email or password is wrong."), "{html}");
    assert!(html.contains(r#"value="owner@formed.test""#), "{html}");
    assert!(!html.contains("not the password"));

    // An empty email: the problem beside its field.
    let empty = post(&[("email", ""), ("password", "x")], Some(&origin))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = empty.text().await.unwrap();
    assert!(html.contains(r#"id="email-error""#), "{html}");

    // From another site, with a cookie: refused before anything is checked.
    let forged = post(
        &[
            ("email", "owner@formed.test"),
            ("password", "violet tram oyster gravel"),
        ],
        Some("http://evil.localhost"),
    )
    .header(COOKIE, "silo_session=whatever")
    .send()
    .await
    .unwrap();
    assert_eq!(
        error_code(forged).await,
        (StatusCode::FORBIDDEN, "cross_site_request".to_owned())
    );

    let signed = post(
        &[
            ("email", "owner@formed.test"),
            ("password", "violet tram oyster gravel"),
        ],
        Some(&origin),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie(&signed).expect("a session");

    // Signing out from another site is refused; from the page it ends the cookie.
    let forged_out = no_redirects()
        .post(format!("http://{}/sign-out", app.address))
        .header(reqwest::header::HOST, &host)
        .header(COOKIE, &cookie)
        .header(ORIGIN, "http://evil.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(forged_out.status(), StatusCode::FORBIDDEN);
    let out = sign_out(&app, &cookie, &origin).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let cleared = out.headers()[SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("silo_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_get_error_pages_and_api_clients_get_json() {
    let app = TestApp::spawn().await;
    app.active_tenant("pages").await;
    let get = |host: String, path: &'static str, accept: &'static str| {
        app.request(reqwest::Method::GET, &host, path)
            .header(ACCEPT, accept)
            .send()
    };
    for (host, path, status, code) in [
        (
            app.tenant_host("pages"),
            "/no/such/page",
            StatusCode::NOT_FOUND,
            "route_not_found",
        ),
        (
            app.tenant_host("nobody"),
            "/",
            StatusCode::NOT_FOUND,
            "tenant_not_found",
        ),
    ] {
        let page = get(host.clone(), path, BROWSER_ACCEPT).await.unwrap();
        assert_eq!(page.status(), status);
        assert!(
            page.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let html = page.text().await.unwrap();
        assert!(html.contains(code) && html.contains("<h1>"), "{html}");
        let json = get(host, path, "application/json").await.unwrap();
        assert_eq!(error_code(json).await, (status, code.to_owned()));
    }

    // The workspace's branding (name, colour, logo) is on its signed-out pages and its error
    // pages: the sign-in page, an unknown path, and the page saying it is suspended.
    let id = app.store.tenant_by_slug("pages").await.unwrap().unwrap().id;
    let logo = "https://cdn.example.test/pages-logo.png";
    app.store
        .set_branding(
            id,
            &control_plane::branding::Branding {
                display_name: Some("Pages Pharmacy".to_owned()),
                logo_url: Some(logo.to_owned()),
                primary_color: Some("#0a7d54".to_owned()),
            },
            "test",
        )
        .await
        .unwrap();
    let branded = |html: &str| {
        html.contains("Pages Pharmacy")
            && html.contains(&format!(r#"src="{logo}""#))
            && html.contains("#0a7d54")
    };
    let mut shown = String::new();
    for _ in 0..100 {
        shown = get(app.tenant_host("pages"), "/", BROWSER_ACCEPT)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if branded(&shown) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        branded(&shown) && shown.contains("Sign in to Pages Pharmacy"),
        "the sign-in page shows the branding: {shown}"
    );
    let missing = get(app.tenant_host("pages"), "/no/such/page", BROWSER_ACCEPT)
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let csp = missing.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("img-src 'self' https:"), "{csp}");
    let html = missing.text().await.unwrap();
    assert!(branded(&html) && html.contains("Page not found"), "{html}");

    // A suspended workspace: its end users' browsers get a page saying so, in its branding.
    app.store
        .set_status(id, control_plane::model::TenantStatus::Suspended)
        .await
        .unwrap();
    app.wait_for_error("pages", StatusCode::FORBIDDEN, "tenant_suspended")
        .await;
    let page = get(app.tenant_host("pages"), "/", BROWSER_ACCEPT)
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("This workspace is suspended") && branded(&html),
        "{html}"
    );
    app.finish().await;
}

/// The sign-out form posted with `cookie` from a page of `origin` (the tenant's own).
async fn sign_out(app: &TestApp, cookie: &str, origin: &str) -> reqwest::Response {
    no_redirects()
        .post(format!("http://{}/sign-out", app.address))
        .header(reqwest::header::HOST, origin.trim_start_matches("http://"))
        .header(COOKIE, cookie)
        .header(ORIGIN, origin)
        .send()
        .await
        .unwrap()
}

/// Whether `cookie` signs its holder in on `app`: `/` is the dashboard, not the sign-in page.
async fn signed_in(app: &TestApp, slug: &str, cookie: &str) -> bool {
    let page = no_redirects()
        .get(format!("http://{}/", app.address))
        .header(reqwest::header::HOST, app.tenant_host(slug))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.contains("<h1>Dashboard</h1>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_session_is_over_on_every_router_even_for_a_copy_of_its_cookie() {
    let app = TestApp::spawn().await;
    let mut other_router = TestApp::spawn_with(crate::harness::TestOptions {
        database: Some(app.database.clone()),
        keys: Some(app.keys.clone()),
        run_workers: false,
        ..Default::default()
    })
    .await;
    app.active_tenant("ended").await;
    let host = app.tenant_host("ended");
    let origin = format!("http://{host}");
    let sign_in = || async {
        let signed = no_redirects()
            .post(format!("http://{}/sign-in", app.address))
            .header(reqwest::header::HOST, &host)
            .header(ORIGIN, &origin)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_body(&[
                ("email", "owner@ended.test"),
                ("password", "violet tram oyster gravel"),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(signed.status(), StatusCode::SEE_OTHER);
        session_cookie(&signed).expect("a session")
    };
    // Two sessions of one owner (two devices); the first one's cookie is also copied away.
    let (laptop, phone) = (sign_in().await, sign_in().await);
    for router in [&app, &other_router] {
        assert!(signed_in(router, "ended", &laptop).await);
        assert!(signed_in(router, "ended", &phone).await);
    }

    let out = sign_out(&app, &laptop, &origin).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    // The copy no longer signs anyone in: at once on the router that signed it out, within
    // moments on the other; the other device stays signed in.
    assert!(!signed_in(&app, "ended", &laptop).await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while signed_in(&other_router, "ended", &laptop).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the other router still takes the ended session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for router in [&app, &other_router] {
        assert!(signed_in(router, "ended", &phone).await);
    }
    // An API client signs out the same way: its token stops working.
    let api = crate::session::Session::owner(&app, "ended").await;
    api.expect(reqwest::Method::GET, "/api/v1/me", None, StatusCode::OK)
        .await;
    api.expect(
        reqwest::Method::DELETE,
        "/api/v1/sessions/current",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    api.expect(
        reqwest::Method::GET,
        "/api/v1/me",
        None,
        StatusCode::UNAUTHORIZED,
    )
    .await;

    // A router started afterwards knows of it too.
    other_router.stop().await;
    let late_router = TestApp::spawn_with(crate::harness::TestOptions {
        database: Some(app.database.clone()),
        keys: Some(app.keys.clone()),
        run_workers: false,
        ..Default::default()
    })
    .await;
    // Its very first answer to the copied cookie is the sign-in page: it read the ended
    // sessions before it served, not once its change listener was up.
    let first = no_redirects()
        .get(format!("http://{}/", late_router.address))
        .header(reqwest::header::HOST, late_router.tenant_host("ended"))
        .header(COOKIE, &laptop)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        first.contains("<h1>Sign in to ") && !first.contains("<h1>Dashboard</h1>"),
        "a new router took an ended session: {first}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        if signed_in(&late_router, "ended", &phone).await {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "late router not serving"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!signed_in(&late_router, "ended", &laptop).await);
    let mut late_router = late_router;
    late_router.stop().await;
    app.finish().await;
}
