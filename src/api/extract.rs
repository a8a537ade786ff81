//! Extractors whose rejections answer with an [`ApiError`] JSON body instead
//! of axum's plain text.

use axum::async_trait;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};
use crate::event::unknown_event_type;

/// A JSON body, as `axum::Json` reads it. A body that does not fit `T` is
/// `unknown_event_type` when its event names a kind or type that does not
/// exist (found from its tags: [`unknown_event_type`]), else
/// `invalid_field`.
pub struct ApiJson<T>(pub T);

#[async_trait]
impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !has_json_content_type(request.headers()) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedContentType,
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            let code = match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
                _ => ErrorCode::InvalidBody,
            };
            ApiError::new(code, rejection.body_text())
        })?;
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let code = match &rejection {
                    JsonRejection::JsonDataError(_) if unknown_event_type(&bytes).is_some() => {
                        ErrorCode::UnknownEventType
                    }
                    JsonRejection::JsonDataError(_) => ErrorCode::InvalidField,
                    JsonRejection::JsonSyntaxError(_) => ErrorCode::MalformedJson,
                    _ => ErrorCode::InvalidBody,
                };
                Err(ApiError::new(code, rejection.body_text()))
            }
        }
    }
}

/// `application/json`, or any `application/*+json`, as `axum::Json` accepts.
fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

/// `axum::extract::Query` with JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` with JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn json_content_types_are_those_axum_accepts() {
        let with = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            has_json_content_type(&headers)
        };
        for accepted in
            ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/cloudevents+json"]
        {
            assert!(with(accepted), "{accepted}");
        }
        for refused in ["text/plain", "application/jsonx", "json", "application/x-www-form-urlencoded"] {
            assert!(!with(refused), "{refused}");
        }
        assert!(!has_json_content_type(&HeaderMap::new()));
    }
}
