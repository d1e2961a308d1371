//! A caller of one tenant's API: signed in (a session token) or anonymous, over real HTTP.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{TestApp, error_code};

/// A signed-in caller on one tenant's host (or an anonymous one, with an empty token).
pub struct Session<'a> {
    pub app: &'a TestApp,
    pub slug: String,
    pub token: String,
}

impl<'a> Session<'a> {
    pub fn anonymous(app: &'a TestApp, slug: &str) -> Self {
        Self {
            app,
            slug: slug.to_owned(),
            token: String::new(),
        }
    }

    /// Signs in (asserting `201`).
    pub async fn sign_in(app: &'a TestApp, slug: &str, email: &str, password: &str) -> Self {
        let mut session = Self::anonymous(app, slug);
        let body = session
            .expect(
                Method::POST,
                "/api/v1/sessions",
                Some(json!({"email": email, "password": password})),
                StatusCode::CREATED,
            )
            .await;
        session.token = body["token"].as_str().unwrap().to_owned();
        session
    }

    /// The seeded owner of a tenant made by `TestApp::active_tenant`.
    pub async fn owner(app: &'a TestApp, slug: &str) -> Self {
        Self::sign_in(
            app,
            slug,
            &format!("owner@{slug}.test"),
            "violet tram oyster gravel",
        )
        .await
    }

    /// The owner of a new active tenant moved to `plan`, once the router applies the change.
    pub async fn owner_on_plan(app: &'a TestApp, slug: &str, plan: &str) -> (Self, uuid::Uuid) {
        let tenant = app.active_tenant(slug).await.tenant_id;
        app.store
            .set_plan(tenant, plan, "test:setup")
            .await
            .unwrap();
        let owner = Self::owner(app, slug).await;
        owner
            .wait_until_answered("/api/v1/api-keys", StatusCode::OK, "the plan change")
            .await;
        (owner, tenant)
    }

    /// The same token, sent to another tenant's host.
    pub fn on(&self, slug: &str) -> Session<'a> {
        Session {
            app: self.app,
            slug: slug.to_owned(),
            token: self.token.clone(),
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self
            .app
            .request(method, &self.app.tenant_host(&self.slug), path);
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// A call that must answer `status`; returns its JSON body (null for 204).
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: StatusCode,
    ) -> Value {
        // Password hashing is bounded per process and the tests share one process: a call that
        // hashes may meet `503 busy` while another test floods it, and does what a client
        // should — waits for Retry-After and asks again.
        for _ in 0..15 {
            let response = self.call(method.clone(), path, body.clone()).await;
            let got = response.status();
            let text = response.text().await.unwrap();
            if got == StatusCode::SERVICE_UNAVAILABLE
                && status != got
                && text.contains(r#""code":"busy""#)
            {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            assert_eq!(got, status, "{method} {path}: {text}");
            return serde_json::from_str(&text).unwrap_or(Value::Null);
        }
        panic!("{method} {path}: password hashing stayed busy for 15 s")
    }

    /// Waits (up to 2 s: routers hear of changes within a second) until `GET path` answers
    /// `status`, as it does once a plan or add-on change reaches the router.
    pub async fn wait_until_answered(&self, path: &str, status: StatusCode, what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.call(Method::GET, path, None).await.status() != status {
            assert!(
                std::time::Instant::now() < deadline,
                "{what} never took effect"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A page as a browser asks for it: the session cookie, `Accept: text/html`, and for a
    /// form (`application/x-www-form-urlencoded`) this site's `Origin`.
    pub async fn page(&self, method: Method, path: &str, form: Option<&str>) -> reqwest::Response {
        let host = self.app.tenant_host(&self.slug);
        let mut request = self
            .app
            .request(method, &host, path)
            .header("cookie", format!("silo_session={}", self.token))
            .header("accept", "text/html");
        if let Some(form) = form {
            request = request
                .header("origin", format!("http://{host}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form.to_owned());
        }
        request.send().await.unwrap()
    }

    pub async fn error(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        error_code(self.call(method, path, body).await).await
    }
}
