//! The REST store against a tiny axum stub on `127.0.0.1:0` that records every request and
//! answers as each test scripts it: what the store sends (the `Authorization` header, JSON
//! content type, batch sizes) and how it treats answers (retries on 5xx, none on 4xx).

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
};
use chainlog::store::{Auth, RestStore, StoreError, TrackingStore};
use serde_json::{Value, json};

use std::time::Duration;

/// A request as the stub saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Bytes,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Responder = dyn Fn(usize, &Recorded) -> (StatusCode, String) + Send + Sync;

#[derive(Clone)]
struct StubState {
    requests: Arc<Mutex<Vec<Recorded>>>,
    responder: Arc<Responder>,
}

/// A running stub; `responder(n, request)` answers the n-th request (0-based).
struct Stub {
    url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Stub {
    async fn start(
        responder: impl Fn(usize, &Recorded) -> (StatusCode, String) + Send + Sync + 'static,
    ) -> Stub {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = StubState {
            requests: Arc::clone(&requests),
            responder: Arc::new(responder),
        };
        let app = Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Stub { url, requests }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn record(
    State(state): State<StubState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    // An MLflow server says its version here; the stub is no version at all (not recorded,
    // so the tests count only the calls they script).
    if uri.path() == "/version" {
        return (StatusCode::NOT_FOUND, String::new());
    }
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request = Recorded {
        method,
        path: uri.to_string(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body,
    };
    let n = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(request.clone());
        requests.len() - 1
    };
    (state.responder)(n, &request)
}

fn experiment_json() -> String {
    json!({"experiment": {"experiment_id": "7", "name": "e", "artifact_location": "mlflow-artifacts:/7", "lifecycle_stage": "active"}})
        .to_string()
}

fn refuse(_: usize, _: &Recorded) -> (StatusCode, String) {
    (
        StatusCode::FORBIDDEN,
        json!({"error_code": "PERMISSION_DENIED", "message": "no access"}).to_string(),
    )
}

/// Proves a token from `MLFLOW_TRACKING_TOKEN` goes out as `Authorization: Bearer <token>`,
/// and that neither the error, its `Debug`, nor the store's `Debug` ever contains it.
#[tokio::test]
async fn token_from_env_is_sent_as_bearer_and_never_shown() {
    const CANARY: &str = "canary-token-5b1e0c9d";
    let stub = Stub::start(refuse).await;
    let auth =
        Auth::from_lookup(|name| (name == "MLFLOW_TRACKING_TOKEN").then(|| CANARY.to_owned()));
    let store = RestStore::new(&stub.url, auth).unwrap();

    let err = store.get_or_create_experiment("e").await.unwrap_err();

    let sent = stub.requests();
    assert_eq!(sent.len(), 1, "a 403 is not retried: {sent:?}");
    assert_eq!(
        sent[0].authorization.as_deref(),
        Some(format!("Bearer {CANARY}").as_str())
    );
    assert_eq!(
        err.to_string(),
        "MLflow refused experiments/get-by-name: no access (PERMISSION_DENIED)"
    );
    for shown in [
        err.to_string(),
        format!("{err:?}"),
        format!("{store:?}"),
        format!("{:?}", Auth::bearer(CANARY)),
    ] {
        assert!(!shown.contains(CANARY), "secret leaked: {shown}");
    }
}

/// Proves `MLFLOW_TRACKING_USERNAME`/`PASSWORD` go out as HTTP Basic auth, password unshown.
#[tokio::test]
async fn username_and_password_are_sent_as_basic_auth() {
    let stub = Stub::start(refuse).await;
    let auth = Auth::from_lookup(|name| match name {
        "MLFLOW_TRACKING_USERNAME" => Some("ada".to_owned()),
        "MLFLOW_TRACKING_PASSWORD" => Some("pw-canary".to_owned()),
        _ => None,
    });
    let store = RestStore::new(&stub.url, auth).unwrap();
    let err = store.get_or_create_experiment("e").await.unwrap_err();
    // base64("ada:pw-canary")
    assert_eq!(
        stub.requests()[0].authorization.as_deref(),
        Some("Basic YWRhOnB3LWNhbmFyeQ==")
    );
    assert!(!format!("{err:?}{store:?}").contains("pw-canary"));
}

/// Proves 5xx answers are retried and a later success is returned as if nothing happened.
#[tokio::test]
async fn transient_server_errors_are_retried_until_success() {
    let stub = Stub::start(|n, _| match n {
        0 => (StatusCode::SERVICE_UNAVAILABLE, "starting".to_owned()),
        1 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error_code": "INTERNAL_ERROR", "message": "db locked"}).to_string(),
        ),
        _ => (StatusCode::OK, experiment_json()),
    })
    .await;
    let store = RestStore::new(&stub.url, None)
        .unwrap()
        .with_retries(4, Duration::from_millis(5));
    let experiment = store.get_or_create_experiment("e").await.unwrap();
    assert_eq!(experiment.id, "7");
    assert_eq!(stub.requests().len(), 3);
}

/// Proves a server error that persists is reported with MLflow's own code and message after
/// exactly the configured attempts, and a 4xx is not retried at all.
#[tokio::test]
async fn persistent_errors_report_mlflow_message_after_bounded_attempts() {
    let stub = Stub::start(|_, _| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error_code": "INTERNAL_ERROR", "message": "disk full"}).to_string(),
        )
    })
    .await;
    let store = RestStore::new(&stub.url, None)
        .unwrap()
        .with_retries(3, Duration::from_millis(5));
    let err = store.get_or_create_experiment("e").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MLflow refused experiments/get-by-name: disk full (INTERNAL_ERROR)"
    );
    assert_eq!(stub.requests().len(), 3);

    let stub = Stub::start(|_, _| {
        (
            StatusCode::BAD_REQUEST,
            json!({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}).to_string(),
        )
    })
    .await;
    let store = RestStore::new(&stub.url, None).unwrap();
    let err = store.set_alias("m", "a", "1").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Mlflow { code, .. } if code == "INVALID_PARAMETER_VALUE"),
        "{err:?}"
    );
    assert_eq!(stub.requests().len(), 1);
}

/// Proves params and tags go out in `runs/log-batch` calls of at most 100 items together,
/// all of them exactly once, as JSON with `Content-Type: application/json`.
#[tokio::test]
async fn log_batch_sends_at_most_100_params_and_tags_per_call() {
    let stub = Stub::start(|_, _| (StatusCode::OK, "{}".to_owned())).await;
    let store = RestStore::new(&stub.url, None).unwrap();
    let params: Vec<(String, String)> = (0..180)
        .map(|i| (format!("p{i}"), format!("{i}")))
        .collect();
    let tags: Vec<(String, String)> = (0..40).map(|i| (format!("t{i}"), format!("{i}"))).collect();
    store.log_batch("r1", &params, &tags).await.unwrap();

    let sent = stub.requests();
    assert_eq!(sent.len(), 3);
    let (mut params_seen, mut tags_seen) = (0, 0);
    for request in &sent {
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.path, "/api/2.0/mlflow/runs/log-batch");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        let body = request.json();
        assert_eq!(body["run_id"], "r1");
        let (p, t) = (
            body["params"].as_array().unwrap().len(),
            body["tags"].as_array().unwrap().len(),
        );
        assert!(p + t <= 100, "{p} params + {t} tags in one call");
        params_seen += p;
        tags_seen += t;
    }
    assert_eq!((params_seen, tags_seen), (180, 40));
}

/// Proves a key over MLflow's 250-character limit fails before anything is sent, so a run
/// never ends up with half its params.
#[tokio::test]
async fn over_long_key_fails_before_any_request() {
    let stub = Stub::start(|_, _| (StatusCode::OK, "{}".to_owned())).await;
    let store = RestStore::new(&stub.url, None).unwrap();
    let mut params: Vec<(String, String)> = (0..150)
        .map(|i| (format!("p{i}"), "v".to_owned()))
        .collect();
    params.push(("k".repeat(251), "v".to_owned()));
    let err = store.log_batch("r1", &params, &[]).await.unwrap_err();
    assert!(err.to_string().contains("the limit is 250"), "{err}");
    assert!(stub.requests().is_empty());
}

/// Proves a model finalize is a PATCH with a JSON body naming the model and MLflow's status.
#[tokio::test]
async fn finalize_patches_the_logged_model_status() {
    let stub = Stub::start(|_, _| (StatusCode::OK, "{}".to_owned())).await;
    let store = RestStore::new(&stub.url, None).unwrap();
    store
        .finalize_logged_model("m-1", chainlog::store::ModelStatus::UploadFailed)
        .await
        .unwrap();
    let sent = stub.requests();
    assert_eq!(sent[0].method, Method::PATCH);
    assert_eq!(sent[0].path, "/api/2.0/mlflow/logged-models/m-1");
    assert_eq!(sent[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        sent[0].json(),
        json!({"model_id": "m-1", "status": "LOGGED_MODEL_UPLOAD_FAILED"})
    );
}
