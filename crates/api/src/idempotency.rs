//! `Idempotency-Key` on every `POST`: a retried request is answered with the first attempt's
//! response instead of acting twice (Stripe's semantics, the IETF httpapi draft's header).
//!
//! One layer ([`layer`]) serves every POST route; a handler only takes part when it has an
//! effect to protect:
//!
//! - the layer parses the header, authenticates (keys are per environment), buffers the body
//!   and fingerprints method, path and body, then **claims** the key in the store. A completed
//!   key is **replayed** (the stored status and body, byte for byte, with
//!   `Idempotent-Replayed: true`); a key in flight is `409 IDEMPOTENCY_KEY_IN_USE` at once; a key
//!   used for another request is `422 IDEMPOTENCY_KEY_REUSED`. Otherwise the handler runs with the
//!   claim in the request's extensions.
//! - a handler whose success has an effect takes [`Idempotency`], hands
//!   [`Idempotency::completion`] (the claim and how to render its success) to its use case, which
//!   stores the rendered response **in the effect's own transaction**, and answers with
//!   [`Idempotency::respond`] — exactly the stored bytes.
//! - after the handler, the layer stores any other answer below 500 on its own (a refusal had no
//!   effect, so there is nothing to be atomic with) and frees the key after a 5xx, so a retry
//!   runs again. A request abandoned mid-way (the client went away) frees its key too; one whose
//!   process died leaves it locked for at most a minute ([`IDEMPOTENCY_LOCK`]).
//!
//! [`IDEMPOTENCY_LOCK`]: releasedesk_store::IDEMPOTENCY_LOCK

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use releasedesk_domain::{IdempotencyKey, IdempotencyKeyError, RequestFingerprint};
use releasedesk_store::{
    Completion, IdempotencyClaim, KeyClaim, Render, Store, StoreError, StoredResponse,
};
use serde::Serialize;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::{HeaderBuilder, ObjectBuilder, OpenApi, RefOr, Required, Type};

use crate::ApiError;
use crate::extract::{Auth, body_bytes};

/// The request header.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// On a replayed response: `true`.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The layer on every API route; it acts on `POST`s that carry the header. See the module
/// documentation.
pub(crate) async fn layer(State(store): State<Store>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST || !req.headers().contains_key(IDEMPOTENCY_KEY) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    // Keys are per environment: the token comes first (its 401 before anything else).
    let auth = match Auth::from_request_parts(&mut parts, &store).await {
        Ok(Auth(auth)) => auth,
        Err(e) => return e.into_response(),
    };
    let key = match parse_key(&parts) {
        Ok(key) => key,
        Err(e) => return invalid_key(e).into_response(),
    };
    let body = match read_body(&parts, body).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let target = parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    let target = target
        .path_and_query()
        .map_or_else(|| target.path(), |pq| pq.as_str());
    let fingerprint = RequestFingerprint::of(parts.method.as_str(), target, &body);
    let claim = match store
        .claim_idempotency_key(auth.environment_id, &key, &fingerprint)
        .await
    {
        Ok(KeyClaim::Claimed(claim)) => claim,
        Ok(KeyClaim::Replay(stored)) => {
            let mut response = stored_into_response(stored);
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            return response;
        }
        Ok(KeyClaim::InFlight) => return ApiError::idempotency_key_in_use().into_response(),
        Ok(KeyClaim::Reused) => return ApiError::idempotency_key_reused().into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    parts.extensions.insert(claim.clone());
    let abandoned = FreeIfAbandoned {
        store: store.clone(),
        claim: Some(claim),
    };
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    finish(&store, abandoned.disarm(), response).await
}

/// After the handler: a response stored in the effect's transaction goes out as it is; a
/// server error frees the key; any other answer is stored now, on its own.
async fn finish(store: &Store, claim: IdempotencyClaim, response: Response) -> Response {
    if claim.completed_response().is_some() {
        return response;
    }
    let status = response.status();
    if status.is_server_error() {
        if let Err(e) = store.release_idempotency_key(&claim).await {
            tracing::warn!(error = %error_chain(&e), "could not free an idempotency key after a server error; it frees itself when its lock expires");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "could not read a response to store it with its idempotency key");
            let _ = store.release_idempotency_key(&claim).await;
            return ApiError::internal().into_response();
        }
    };
    if status.is_success() {
        // A success with an effect must store its response in the effect's transaction
        // (`Idempotency::completion`); stored afterwards, a crash in between would let a retry
        // act again.
        tracing::error!(
            %status,
            "a POST handler succeeded without storing its response with its idempotency key; stored now, outside its transaction"
        );
    }
    let stored = StoredResponse {
        status: status.as_u16(),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.to_vec(),
    };
    match store.record_idempotent_response(&claim, &stored).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("an idempotency key was taken over before its refusal could be stored")
        }
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "could not store a refusal with its idempotency key; the key frees itself when its lock expires")
        }
    }
    Response::from_parts(parts, Body::from(body))
}

/// Frees the key of a request dropped before it finished (the client disconnected, or the
/// handler panicked): a retry should run instead of waiting for the lock to expire. Freeing is
/// guarded by the claim's token and refuses a key whose response was stored, so it cannot undo
/// a completed request.
struct FreeIfAbandoned {
    store: Store,
    claim: Option<IdempotencyClaim>,
}

impl FreeIfAbandoned {
    fn disarm(mut self) -> IdempotencyClaim {
        match self.claim.take() {
            Some(claim) => claim,
            None => unreachable!("a claim is disarmed once"),
        }
    }
}

impl Drop for FreeIfAbandoned {
    fn drop(&mut self) {
        let Some(claim) = self.claim.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        runtime.spawn(async move {
            if let Err(e) = store.release_idempotency_key(&claim).await {
                tracing::warn!(error = %error_chain(&e), "could not free the idempotency key of an abandoned request; it frees itself when its lock expires");
            }
        });
    }
}

fn parse_key(parts: &Parts) -> Result<IdempotencyKey, IdempotencyKeyError> {
    let mut values = parts.headers.get_all(IDEMPOTENCY_KEY).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => IdempotencyKey::parse(value.as_bytes()),
        // Absent was handled by the caller; twice is ambiguous.
        _ => Err(IdempotencyKeyError),
    }
}

fn invalid_key(e: IdempotencyKeyError) -> ApiError {
    let mut error = ApiError::validation("Idempotency-Key", e.to_string());
    error.message = "The Idempotency-Key header is invalid: send it once, with 1 to 255 printable ASCII characters".into();
    error
}

/// The body, buffered to fingerprint it (and handed on to the handler): 413 over the limit.
async fn read_body(parts: &Parts, body: Body) -> Result<Bytes, ApiError> {
    let mut req = Request::new(body);
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    body_bytes(req).await
}

fn stored_into_response(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    match stored
        .content_type
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        Some(value) => {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        None => {
            response.headers_mut().remove(header::CONTENT_TYPE);
        }
    }
    response
}

fn error_chain(e: &StoreError) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// A JSON response as the store keeps it (status, content type, body bytes): what a handler's
/// render function returns.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> StoredResponse {
    StoredResponse {
        status: status.as_u16(),
        content_type: Some("application/json".to_owned()),
        // The API's response types are plain structs of strings, numbers and lists: they
        // always serialize.
        body: serde_json::to_vec(body).expect("an API response serializes to JSON"),
    }
}

/// The claim on the request's `Idempotency-Key`, if it sent one. A handler whose success has an
/// effect takes it and uses it in three lines:
///
/// ```text
/// let render = |r: &ReleaseRequest| idempotency::json(StatusCode::CREATED, &Envelope::new(ReleaseRequestDto::from(r.clone())));
/// let request = store.request_release_idempotent(&auth, id, reason, idem.completion(&render)).await?;
/// Ok(idem.respond(&request, &render))
/// ```
pub struct Idempotency(Option<IdempotencyClaim>);

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<IdempotencyClaim>().cloned()))
    }
}

impl Idempotency {
    /// What the use case needs to store `render(&result)` with the key in its transaction;
    /// `None` without a key.
    pub fn completion<'a, T>(&'a self, render: &'a Render<T>) -> Option<Completion<'a, T>> {
        self.0.as_ref().map(|claim| claim.completion(render))
    }

    /// The success response: exactly the bytes stored with the key, or `render(value)` when
    /// the request had no key.
    pub fn respond<T>(&self, value: &T, render: &Render<T>) -> Response {
        match self
            .0
            .as_ref()
            .and_then(IdempotencyClaim::completed_response)
        {
            Some(stored) => stored_into_response(stored.clone()),
            None => stored_into_response(render(value)),
        }
    }
}

/// Documents the header and its answers on every `POST` of `doc`, as the layer serves them
/// all: the `Idempotency-Key` parameter, `Idempotent-Replayed` on the answers that can be
/// replays, `409 IDEMPOTENCY_KEY_IN_USE`, `422 IDEMPOTENCY_KEY_REUSED` (and `VALIDATION_ERROR`
/// for a bad key), and `413` (the body is read to fingerprint it).
pub(crate) fn document(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let Some(op) = item.post.as_mut() else {
            continue;
        };
        op.parameters.get_or_insert_with(Vec::new).push(RefOr::T(
            ParameterBuilder::new()
                .name("Idempotency-Key")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Makes a retry safe: the first request with a key is carried out and its \
                     response (any status below 500) is stored; the same request with the same \
                     key within 24 hours gets that response again, byte for byte, with \
                     `Idempotent-Replayed: true`, and nothing is done twice. Keys are per \
                     environment; a UUID is a good choice.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(releasedesk_domain::MAX_IDEMPOTENCY_KEY_LEN))
                        .pattern(Some("^[\\x20-\\x7E]+$")),
                ))
                .build(),
        ));
        for (status, codes) in [
            (
                "409",
                "`IDEMPOTENCY_KEY_IN_USE` (the first request with this `Idempotency-Key` is still being carried out; retry shortly)",
            ),
            (
                "422",
                "`IDEMPOTENCY_KEY_REUSED` (the `Idempotency-Key` was used with another method, path or body) or `VALIDATION_ERROR` (a malformed `Idempotency-Key`)",
            ),
        ] {
            match op.responses.responses.get_mut(status) {
                Some(RefOr::T(existing)) => {
                    if !existing.description.contains(codes) {
                        existing.description = format!("{}; or {codes}", existing.description);
                    }
                }
                Some(RefOr::Ref(_)) => {}
                None => {
                    op.responses.responses.insert(
                        status.to_owned(),
                        RefOr::T(crate::openapi::error_response(codes).build()),
                    );
                }
            }
        }
        let responses = &mut op.responses.responses;
        for (status, response) in responses.iter_mut() {
            // Any stored answer can come back as a replay; not the answers given before a
            // key is looked at (401, 413) nor server errors.
            let replayable = (status.starts_with('2') || status.starts_with('4'))
                && !matches!(status.as_str(), "401" | "413");
            if let (true, RefOr::T(response)) = (replayable, response) {
                response.headers.insert(
                    "Idempotent-Replayed".into(),
                    RefOr::T(
                        HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true"]))))
                            .description(Some("`true` when this is the stored response of an earlier request with the same `Idempotency-Key`."))
                            .build(),
                    ),
                );
            }
        }
    }
}
