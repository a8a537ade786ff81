//! Which role each endpoint needs, checked before any handler runs.
//!
//! `GET /health` and `GET /ready` are open (load balancers probe them), and
//! so is `GET /openapi.json` (the API's description, which holds no data);
//! other reads need `read`, except `GET /backup` (a copy of every event,
//! and the membership), which needs `admin`; `POST /events` needs `write`;
//! everything else (membership changes, and any other method or path)
//! needs `admin`. A
//! follower checks the token too, and forwards it: the leader checks the
//! same token against its own tokens file.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};
use super::AppState;
use crate::auth::{Denied, Role};

/// The role `method` on `path` needs; `None` for the open endpoints.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    match (method, path) {
        (_, "/health" | "/ready" | "/openapi.json") => None,
        (&Method::POST, "/events") => Some(Role::Write),
        (_, "/backup") => Some(Role::Admin),
        (&Method::GET | &Method::HEAD, _) => Some(Role::Read),
        _ => Some(Role::Admin),
    }
}

pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(needed) = required_role(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    match state.tokens.check(authorization, needed) {
        Ok(_) => next.run(request).await,
        Err(denied @ Denied::Forbidden { .. }) => {
            ApiError::new(ErrorCode::Forbidden, denied.to_string()).into_response()
        }
        Err(denied) => {
            let mut response = ApiError::new(ErrorCode::Unauthorized, denied.to_string()).into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}
