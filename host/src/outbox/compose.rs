//! A delivery made into the message its channel sends: recipient, content and context.
//!
//! Content comes from the send (the API's inline subject, text, HTML or JSON body). A journey
//! send names a template, which nothing renders yet: its message carries the template id, the
//! step's data and the contact's traits as a JSON body, so a webhook channel delivers what a
//! renderer would have used.

use serde_json::{Value, json};

use super::record::Delivery;
use crate::plugins::Medium;
use crate::profiles::Contact;
use crate::runtime::types::Message;

/// Why a delivery cannot be made into a message: permanent (a missing address does not heal
/// by retrying).
pub type ComposeError = String;

/// The message for `d`, to `contact`, on a channel carrying `medium` (none: the channel's
/// manifest does not say, and the message goes where the send or the channel's config says).
pub fn compose(
    d: &Delivery,
    contact: Option<&Contact>,
    medium: Option<Medium>,
) -> Result<Message, ComposeError> {
    let contact = contact.ok_or_else(|| format!("contact `{}` no longer exists", d.contact))?;
    let to = match (&d.to, medium.and_then(Medium::address_kind)) {
        (Some(to), _) => to.clone(),
        (None, Some(kind)) => address(contact, kind).ok_or_else(|| {
            format!(
                "contact `{}` has no {kind} for this {} channel",
                contact.id,
                medium.map_or("", Medium::as_str)
            )
        })?,
        (None, None) => String::new(),
    };
    let mut message = Message {
        id: d.id.clone(),
        channel: medium.map_or_else(|| d.channel.clone(), |m| m.as_str().to_string()),
        to,
        sender: None,
        subject: None,
        body: String::new(),
        content_type: "text/plain".into(),
        metadata: metadata(d).to_string(),
        html: None,
        headers: Vec::new(),
    };
    match &d.content {
        Some(content) => {
            message.subject = content.subject.clone();
            message.html = content.html.clone();
            match (&content.text, &content.body) {
                (Some(text), _) => message.body = text.clone(),
                (None, Some(Value::String(text))) => message.body = text.clone(),
                (None, Some(body)) => {
                    message.body = body.to_string();
                    message.content_type = "application/json".into();
                }
                (None, None) => {}
            }
        }
        None => {
            message.body = json!({
                "template": d.template,
                "data": d.data,
                "contact": { "id": contact.id, "traits": contact.traits },
            })
            .to_string();
            message.content_type = "application/json".into();
        }
    }
    Ok(message)
}

/// The contact's address of `kind`: an identity of that kind, else a trait of that name.
fn address(contact: &Contact, kind: &str) -> Option<String> {
    contact
        .identities
        .iter()
        .find(|i| i.kind == kind && !i.value.is_empty())
        .map(|i| i.value.clone())
        .or_else(|| {
            contact
                .traits
                .get(kind)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
}

/// Context for the channel: the contact, the delivery, the journey step and the send's data.
fn metadata(d: &Delivery) -> Value {
    let mut meta = json!({ "contact_id": d.contact, "delivery_id": d.id, "data": d.data });
    if let Some(origin) = &d.journey {
        meta["journey"] = json!(origin.journey);
        meta["journey_version"] = json!(origin.version);
        meta["run"] = json!(origin.run);
        meta["step"] = json!(origin.step_id);
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Identity;
    use crate::outbox::{Content, DeliveryState};

    fn delivery(content: Option<Content>, to: Option<&str>) -> Delivery {
        serde_json::from_value::<Delivery>(json!({
            "id": "api:k1", "state": "sending", "seq": 1, "contact": "c1",
            "channel": "mailer", "data": {"plan": "pro"}, "created_ms": 0, "updated_ms": 0,
            "template": "welcome", "to": to, "content": content,
        }))
        .unwrap()
    }

    fn contact(identities: &[(&str, &str)], traits: Value) -> Contact {
        let mut c: Contact = serde_json::from_value(json!({
            "id": "c1", "identities": [], "traits": traits, "counters": {},
            "created_seq": 1, "last_seq": 1
        }))
        .unwrap();
        c.identities = identities
            .iter()
            .map(|(k, v)| Identity::new(k, v))
            .collect();
        c
    }

    #[test]
    fn an_email_goes_to_the_contacts_email_with_both_parts() {
        let content = Content {
            subject: Some("Hi".into()),
            text: Some("Hello".into()),
            html: Some("<p>Hello</p>".into()),
            body: None,
        };
        let c = contact(&[("email", "Ada@Example.com")], json!({}));
        let m = compose(
            &delivery(Some(content), None),
            Some(&c),
            Some(Medium::Email),
        )
        .unwrap();
        assert_eq!(m.to, "ada@example.com");
        assert_eq!(m.channel, "email");
        assert_eq!(m.id, "api:k1");
        assert_eq!(m.body, "Hello");
        assert_eq!(m.html.as_deref(), Some("<p>Hello</p>"));
        assert_eq!(m.subject.as_deref(), Some("Hi"));
        let meta: Value = serde_json::from_str(&m.metadata).unwrap();
        assert_eq!(meta["contact_id"], "c1");
        assert_eq!(
            DeliveryState::parse("sending"),
            Some(DeliveryState::Sending)
        );
    }

    #[test]
    fn a_phone_trait_serves_when_no_identity_has_one_and_none_is_permanent() {
        let c = contact(&[], json!({"phone": "+15550100"}));
        let m = compose(&delivery(None, None), Some(&c), Some(Medium::Sms)).unwrap();
        assert_eq!(m.to, "+15550100");
        let nobody = contact(&[], json!({}));
        let e = compose(&delivery(None, None), Some(&nobody), Some(Medium::Email)).unwrap_err();
        assert!(e.contains("has no email"), "{e}");
        let e = compose(&delivery(None, None), None, Some(Medium::Email)).unwrap_err();
        assert!(e.contains("no longer exists"), "{e}");
    }

    #[test]
    fn a_json_body_is_sent_as_json_and_a_named_recipient_wins() {
        let content = Content {
            body: Some(json!({"order": 7})),
            ..Content::default()
        };
        let c = contact(&[("email", "a@b.c")], json!({}));
        let d = delivery(Some(content), Some("https://hooks.example.com/x"));
        let m = compose(&d, Some(&c), Some(Medium::Webhook)).unwrap();
        assert_eq!(m.to, "https://hooks.example.com/x");
        assert_eq!(m.content_type, "application/json");
        assert_eq!(m.body, r#"{"order":7}"#);
    }

    #[test]
    fn a_journey_send_carries_its_template_data_and_traits() {
        let c = contact(&[], json!({"first_name": "Ada"}));
        let m = compose(&delivery(None, None), Some(&c), None).unwrap();
        assert_eq!(m.to, "");
        assert_eq!(m.channel, "mailer");
        let body: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(body["template"], "welcome");
        assert_eq!(body["data"]["plan"], "pro");
        assert_eq!(body["contact"]["traits"]["first_name"], "Ada");
    }
}
