//! A local stand-in for Stripe's API (the real one cannot be reached from here): records each
//! call and answers like Stripe — customers, checkout sessions (a checkout for the Enterprise
//! plan is declined) and customer-portal sessions (declined while `refuse_portal` is set).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct StripeCall {
    pub path: String,
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
    pub form: Vec<(String, String)>,
}

impl StripeCall {
    /// The form field `name`, if sent.
    pub fn field(&self, name: &str) -> Option<String> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    }
}

type Calls = Arc<Mutex<Vec<StripeCall>>>;

#[derive(Clone)]
struct Shared {
    calls: Calls,
    refuse_portal: Arc<AtomicBool>,
}

pub struct StripeStandIn {
    /// Where it listens: `SILO_STRIPE_API_BASE` for the app under test.
    pub base: String,
    pub calls: Calls,
    pub refuse_portal: Arc<AtomicBool>,
}

impl StripeStandIn {
    pub async fn start() -> Self {
        let shared = Shared {
            calls: Calls::default(),
            refuse_portal: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/v1/customers", axum::routing::post(record))
            .route("/v1/checkout/sessions", axum::routing::post(record))
            .route("/v1/billing_portal/sessions", axum::routing::post(record))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base: format!("http://{address}"),
            calls: shared.calls,
            refuse_portal: shared.refuse_portal,
        }
    }

    /// The paths called so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|call| call.path.clone())
            .collect()
    }
}

fn declined(message: &str) -> (StatusCode, axum::Json<Value>) {
    (
        StatusCode::PAYMENT_REQUIRED,
        axum::Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
}

async fn record(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, axum::Json<Value>) {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let call = StripeCall {
        path: uri.path().to_owned(),
        authorization: header("authorization"),
        idempotency_key: header("idempotency-key"),
        form: serde_urlencoded::from_str(&body).unwrap(),
    };
    let count = {
        let mut calls = shared.calls.lock().unwrap();
        calls.push(call.clone());
        calls.len()
    };
    match uri.path() {
        "/v1/customers" => (
            StatusCode::OK,
            axum::Json(json!({"id": format!("cus_local_{count}"), "object": "customer"})),
        ),
        "/v1/billing_portal/sessions" if shared.refuse_portal.load(Ordering::SeqCst) => {
            declined("No configuration provided for the customer portal.")
        }
        "/v1/billing_portal/sessions" => (
            StatusCode::OK,
            axum::Json(
                json!({"id": format!("bps_local_{count}"), "object": "billing_portal.session",
                              "url": format!("https://billing.stripe.test/p/session/bps_local_{count}")}),
            ),
        ),
        _ if call.field("metadata[plan]").as_deref() == Some("enterprise") => {
            declined("Your card was declined.")
        }
        _ => (
            StatusCode::OK,
            axum::Json(
                json!({"id": format!("cs_local_{count}"), "object": "checkout.session",
                              "url": format!("https://checkout.stripe.test/c/pay/cs_local_{count}")}),
            ),
        ),
    }
}
