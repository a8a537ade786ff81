//! The API's OpenAPI 3.1 document, served at `GET /openapi.json`.
//!
//! It is generated from the handlers themselves: each handler's
//! `#[utoipa::path]` gives its path, parameters, body and answers, and the
//! body types derive their schemas (`ToSchema`) from the same definitions
//! serde uses. The router registers every route together with its
//! documentation (utoipa-axum's `routes!`, in `api::routes`), so a route
//! cannot be served and left out of the document, or the reverse.
//!
//! `finish` then adds what no single handler states:
//! - **security**: the bearer scheme, and for each operation the role
//!   `authorize::required_role` (what the API enforces) gives it; an operation
//!   that needs one also answers 401 `unauthorized` and 403 `forbidden`;
//! - **error bodies**: every 4xx/5xx answer is an [`ApiError`] whose `error`
//!   is one of the codes its description names in backticks (all codes of
//!   its status if it names none), as [`ErrorCode`]'s table gives them;
//! - **event objects**: an externally tagged enum's `{"Variant": ...}` object
//!   has exactly one property, as serde reads it;
//! - **number ranges**: an `i32` or `f32` is bounded by its type's range (an
//!   `f32`'s as JSON writers print it).

use std::borrow::Cow;

use axum::body::Bytes;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};
use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{OpenApi, Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::authorize::required_role;
use super::error::{ApiError, ErrorCode};
use super::events::{EventsPage, EventsResponse};
use crate::event::{CriticalEvent, EphemeralEvent};

/// The name of the bearer security scheme in the document.
const BEARER: &str = "bearer";

/// The OpenAPI document, as `GET /openapi.json` serves it.
pub fn document() -> Value {
    finish(super::routes().split_for_parts().1)
}

/// The serialized document, served by [`serve`]; built once, with the router.
#[derive(Clone)]
pub struct Document(Bytes);

impl Document {
    pub fn new(openapi: OpenApi) -> Self {
        // A `Value` always serializes: its maps have string keys.
        Self(serde_json::to_vec(&finish(openapi)).unwrap_or_default().into())
    }
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    summary = "This document",
    description = "The API's OpenAPI document. Needs no token.",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)),
)]
pub async fn serve(Extension(document): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document.0).into_response()
}

/// What `GET /events` answers: the design's whole list without `from` and
/// `limit`, one page with either.
pub struct EventsAnswer;

impl PartialSchema for EventsAnswer {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Ref::from_schema_name(EventsResponse::name()))
            .item(Ref::from_schema_name(EventsPage::name()))
            .description(Some("Every event (`{events, count}`) without `from` and `limit`; one page with either."))
            .into()
    }
}

impl ToSchema for EventsAnswer {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (name, schema) in
            [(EventsResponse::name(), EventsResponse::schema()), (EventsPage::name(), EventsPage::schema())]
        {
            schemas.push((name.into_owned(), schema));
        }
        EventsResponse::schemas(schemas);
        EventsPage::schemas(schemas);
    }
}

/// The body of every error answer (`error.rs`).
impl PartialSchema for ApiError {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .description(Some(
                "Every error answer: the design's `success: false`, `message` and `log_index: null`, plus a \
                 machine-readable `error` code; a 503 `not_leader` names the leader when it is known.",
            ))
            .property("success", ObjectBuilder::new().schema_type(Type::Boolean).enum_values(Some([false])))
            .required("success")
            .property("error", string().enum_values(Some(ErrorCode::ALL.iter().map(|code| code.as_str()))))
            .required("error")
            .property("message", string())
            .required("message")
            .property("log_index", ObjectBuilder::new().schema_type(Type::Null))
            .required("log_index")
            .property(
                "leader_id",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0)),
            )
            .property("leader_http_addr", string())
            .into()
    }
}

impl ToSchema for ApiError {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ApiError")
    }
}

/// Adds to `openapi` what no handler states (see the module doc).
fn finish(openapi: OpenApi) -> Value {
    // utoipa's types are plain data with string map keys: they always
    // serialize, and the default is never used.
    let mut doc = serde_json::to_value(openapi).unwrap_or_default();
    doc["components"]["securitySchemes"] = json!({
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "With `--auth-tokens-file`, a token of the role each operation names: \
                `read` reads, `write` also posts events, `admin` also changes membership. Without \
                it, every request is allowed.",
        }
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for (method, operation) in item.iter_mut() {
                let Some(method) = http_method(method) else { continue };
                add_security(operation, &method, path);
                narrow_errors(operation);
            }
        }
    }
    add_number_ranges(&mut doc["components"]);
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (name, schema) in schemas.iter_mut() {
            let deny_unknown_fields = [CriticalEvent::name(), EphemeralEvent::name()].contains(&name.as_str().into());
            close_tagged_variants(schema, deny_unknown_fields);
        }
    }
    doc
}

/// The method a path item's key names (its other keys are not operations).
fn http_method(key: &str) -> Option<Method> {
    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    METHODS.contains(&key).then(|| key.to_ascii_uppercase().parse().ok()).flatten()
}

/// `path` with each `{parameter}` replaced by a value, as a request has it.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| if segment.starts_with('{') && segment.ends_with('}') { "0" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

/// The operation's bearer role, as `authorize.rs` enforces it, and the 401
/// and 403 answers it brings.
fn add_security(operation: &mut Value, method: &Method, path: &str) {
    let Some(role) = required_role(method, &concrete(path)) else {
        operation["security"] = json!([]);
        return;
    };
    operation["security"] = json!([{ BEARER: [role.as_str()] }]);
    let responses = &mut operation["responses"];
    // Their bodies are added with every other error's, by `narrow_errors`.
    responses["401"] = json!({
        "description": "`unauthorized`: no bearer token, or one this node does not accept.",
        "headers": { "WWW-Authenticate": { "schema": { "type": "string" }, "description": "Bearer" } },
    });
    responses["403"] = json!({ "description": format!("`forbidden`: the token's role is below {role}.") });
}

/// The codes `description` names in backticks (snake_case words only),
/// split into those [`ErrorCode`] has and those it has not.
pub(super) fn named_codes(description: &str) -> (Vec<ErrorCode>, Vec<String>) {
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for word in description.split('`').skip(1).step_by(2) {
        if word.is_empty() || !word.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            continue;
        }
        match ErrorCode::ALL.iter().find(|code| code.as_str() == word) {
            Some(code) => known.push(*code),
            None => unknown.push(word.to_string()),
        }
    }
    (known, unknown)
}

/// Each 4xx/5xx answer's body: an `ApiError` whose `error` is one of the
/// codes its description names that have its status (all of that status
/// if it names none).
fn narrow_errors(operation: &mut Value) {
    let Some(responses) = operation["responses"].as_object_mut() else { return };
    for (status, response) in responses.iter_mut() {
        let Ok(status) = status.parse::<u16>() else { continue };
        if status < 400 {
            continue;
        }
        let named = named_codes(response["description"].as_str().unwrap_or_default()).0;
        let mut codes: Vec<&str> =
            named.iter().filter(|code| code.status().as_u16() == status).map(|code| code.as_str()).collect();
        if codes.is_empty() {
            codes = ErrorCode::ALL.iter().filter(|c| c.status().as_u16() == status).map(|c| c.as_str()).collect();
        }
        response["content"] = json!({
            "application/json": { "schema": {
                "allOf": [
                    { "$ref": "#/components/schemas/ApiError" },
                    { "type": "object", "properties": { "error": { "enum": codes } } },
                ]
            } }
        });
    }
}

/// serde reads an externally tagged enum's value as an object of exactly
/// one property, the variant's name: each variant's object says so, and so
/// does each struct variant's own object if the enum refuses unknown fields
/// (the event enums do; utoipa reads `#[serde(deny_unknown_fields)]` on
/// structs only).
fn close_tagged_variants(schema: &mut Value, deny_unknown_fields: bool) {
    let Some(variants) = schema.get_mut("oneOf").and_then(Value::as_array_mut) else { return };
    for variant in variants {
        let Some(object) = variant.as_object_mut() else { continue };
        let tagged = object.get("type").is_some_and(|t| t == "object")
            && object.get("required").and_then(Value::as_array).is_some_and(|required| required.len() == 1);
        let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) else { continue };
        if !tagged || properties.len() != 1 {
            continue;
        }
        for fields in properties.values_mut() {
            if deny_unknown_fields && fields.get("type").is_some_and(|t| t == "object") {
                fields["additionalProperties"] = json!(false);
            }
        }
        object.insert("additionalProperties".into(), json!(false));
    }
}

/// `f32::MAX` as JSON writers print it: its shortest decimal, which reads as
/// that `f32` but as an `f64` a little above `f32::MAX`. Every `f32` is
/// printed within `±` this, and every number within it is a finite `f32`.
const F32_MAX_AS_PRINTED: f64 = 3.4028235e38;

/// utoipa gives an `i32` or `f32` its `format` but not its range, which
/// serde enforces for an `i32`, and `event.rs` for the one `f32` the API
/// reads (a coordinate; every `f32` it answers with is finite).
fn add_number_ranges(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            let range = match object.get("format").and_then(Value::as_str) {
                Some("int32") => Some((json!(i32::MIN), json!(i32::MAX))),
                Some("float") => Some((json!(-F32_MAX_AS_PRINTED), json!(F32_MAX_AS_PRINTED))),
                _ => None,
            };
            if let Some((minimum, maximum)) = range {
                object.entry("minimum").or_insert(minimum);
                object.entry("maximum").or_insert(maximum);
            }
            object.values_mut().for_each(add_number_ranges);
        }
        Value::Array(items) => items.iter_mut().for_each(add_number_ranges),
        _ => {}
    }
}
