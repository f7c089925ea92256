//! `POST /v1/messages`: one message to one contact through one channel plugin, with its
//! content given inline, into the same outbox journeys send through (admin).
//!
//! An `Idempotency-Key` header makes the send once-only: the delivery's id is `api:{key}`, and
//! a repeat with the same body answers the first delivery (200 instead of 201); a repeat with
//! another body is a 409. Without the header each call queues a new message.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::body::JsonBody;
use super::{ApiError, AppState};
use crate::ingest::Identity;
use crate::outbox::{Content, NewMessage};
use crate::plugins::PluginError;
use crate::runtime::PluginKind;

/// Longest `Idempotency-Key`, bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// Most bytes of content (subject, text, HTML and JSON body together) and data of one message.
pub const MAX_CONTENT_BYTES: usize = 512 << 10;
/// Longest recipient, bytes.
pub const MAX_TO_BYTES: usize = 2048;

/// The send route (the caller adds the admin-key check).
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/messages", post(send))
}

/// What a channel route names: one plugin id, or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Route {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    /// The contact's id.
    contact: Option<String>,
    /// Or the contact's user id.
    #[serde(alias = "userId")]
    user_id: Option<String>,
    /// Or the contact's email.
    email: Option<String>,
    /// The channel plugin (a list: a failover route).
    channel: Option<Route>,
    /// The recipient, when not the contact's address for the channel's medium.
    to: Option<String>,
    /// A template id (rendered when templates exist; until then the message carries it).
    template: Option<String>,
    subject: Option<String>,
    text: Option<String>,
    html: Option<String>,
    body: Option<Value>,
    /// Data for the template; context for the channel.
    data: Option<Map<String, Value>>,
}

async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SendBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let key = idempotency_key(&headers)?;
    let channel = route(&state, body.channel.as_ref())?;
    let content = content(&body)?;
    if body.template.is_none() && content.is_none() {
        return Err(ApiError::BadRequest(
            "a message needs content: `subject`, `text`, `html` or `body` (or a `template`)".into(),
        ));
    }
    if let Some(to) = &body.to
        && (to.is_empty() || to.len() > MAX_TO_BYTES)
    {
        return Err(ApiError::BadRequest(format!(
            "`to` must be 1 to {MAX_TO_BYTES} bytes"
        )));
    }
    let data = Value::Object(body.data.clone().unwrap_or_default());
    if data.to_string().len() > MAX_CONTENT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "`data` is over {MAX_CONTENT_BYTES} bytes"
        )));
    }
    let contact = contact(&state, &body)?;
    let id = match &key {
        Some(key) => format!("api:{key}"),
        None => format!("api:{}", hex::encode(rand::random::<[u8; 16]>())),
    };
    let fingerprint = crate::digest::sha256_hex(
        json!([contact, channel, body.to, body.template, content, data])
            .to_string()
            .as_bytes(),
    );
    let message = NewMessage {
        idempotency_key: id,
        contact,
        channel,
        to: body.to.clone(),
        template: body.template.clone(),
        content,
        data,
        journey: None,
        request_sha256: Some(fingerprint.clone()),
    };
    let (delivery, created) = state.outbox.enqueue(message, now())?;
    if !created && delivery.request_sha256.as_deref() != Some(fingerprint.as_str()) {
        return Err(ApiError::Conflict(format!(
            "Idempotency-Key `{}` was used for another message (delivery `{}`)",
            key.unwrap_or_default(),
            delivery.id
        )));
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!(delivery))))
}

/// The `Idempotency-Key` header, when given: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or_default();
    if key.is_empty() || key.len() > MAX_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest(format!(
            "`Idempotency-Key` must be 1 to {MAX_KEY_BYTES} visible ASCII characters"
        )));
    }
    Ok(Some(key.to_string()))
}

/// The channel plugin the route names, which must exist and be a channel.
fn route(state: &AppState, route: Option<&Route>) -> Result<String, ApiError> {
    let id = match route {
        None => return Err(ApiError::BadRequest("`channel` is required".into())),
        Some(Route::One(id)) => id.clone(),
        Some(Route::Many(ids)) => match ids.as_slice() {
            [id] => id.clone(),
            [] => return Err(ApiError::BadRequest("`channel` must name a channel".into())),
            _ => {
                return Err(ApiError::BadRequest(
                    "failover routes (a list of channels) are not supported yet; name one channel"
                        .into(),
                ));
            }
        },
    };
    let kind = state
        .registry
        .slot(&id)
        .map_err(|_| ApiError::NotFound(format!("no channel plugin `{id}`")))?
        .kind();
    if kind != PluginKind::Channel {
        return Err(PluginError::WrongKind {
            plugin: id,
            actual: kind,
            wanted: PluginKind::Channel,
        }
        .into());
    }
    Ok(id)
}

/// The inline content, if any is given.
fn content(body: &SendBody) -> Result<Option<Content>, ApiError> {
    if body.text.is_some() && body.body.is_some() {
        return Err(ApiError::BadRequest(
            "give `text` or `body`, not both (`body` is a structured body, `text` the plain-text part)"
                .into(),
        ));
    }
    if matches!(&body.body, Some(Value::Null)) {
        return Err(ApiError::BadRequest("`body` must not be null".into()));
    }
    let content = Content {
        subject: body.subject.clone(),
        text: body.text.clone(),
        html: body.html.clone(),
        body: body.body.clone(),
    };
    if content == Content::default() {
        return Ok(None);
    }
    let size = content.subject.as_ref().map_or(0, String::len)
        + content.text.as_ref().map_or(0, String::len)
        + content.html.as_ref().map_or(0, String::len)
        + content.body.as_ref().map_or(0, |b| b.to_string().len());
    if size > MAX_CONTENT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the message's content is {size} bytes, over {MAX_CONTENT_BYTES}"
        )));
    }
    Ok(Some(content))
}

/// The contact the body names by exactly one of `contact`, `user_id` or `email`.
fn contact(state: &AppState, body: &SendBody) -> Result<String, ApiError> {
    let named = [
        body.contact.as_ref().map(|c| ("contact", c)),
        body.user_id.as_ref().map(|u| ("user_id", u)),
        body.email.as_ref().map(|e| ("email", e)),
    ];
    let mut given = named.into_iter().flatten();
    let (Some((how, value)), None) = (given.next(), given.next()) else {
        return Err(ApiError::BadRequest(
            "name the contact by exactly one of `contact` (its id), `user_id` or `email`".into(),
        ));
    };
    let found = match how {
        "contact" => state.profiles.get(value)?,
        kind => state.profiles.find(&Identity::new(kind, value))?,
    };
    found.map(|c| c.id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no contact with {how} `{value}` (identify the contact first)"
        ))
    })
}

fn now() -> i64 {
    i64::try_from(crate::clock::now_ms()).unwrap_or(i64::MAX)
}
