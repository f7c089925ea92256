//! A Shopify webhook connector: checks `X-Shopify-Hmac-Sha256`, then maps the topic's payload.
//!
//! Shopify signs the raw body with the app's client secret and sends
//! `X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(secret, body))`. The topic comes in
//! `X-Shopify-Topic`, the delivery's id in `X-Shopify-Webhook-Id` (the same on every retry of
//! one delivery, so it is the event id) and the shop in `X-Shopify-Shop-Domain`. See
//! [`mapping`] for what each topic becomes.

mod mapping;
#[cfg(test)]
mod samples;

use tessera_sdk::types::{ConnectorError, Event, HttpRequest};
use tessera_sdk::{Connector, config, hmac, log, signature};

/// The header carrying the base64 HMAC of the body.
const HMAC_HEADER: &str = "x-shopify-hmac-sha256";
/// The header naming the webhook topic (`orders/create`, ...).
const TOPIC_HEADER: &str = "x-shopify-topic";
/// The header carrying the delivery's id, stable across retries.
const WEBHOOK_ID_HEADER: &str = "x-shopify-webhook-id";
/// The header naming the shop (`example.myshopify.com`).
const SHOP_HEADER: &str = "x-shopify-shop-domain";

/// The Shopify connector.
pub struct Shopify;

impl Connector for Shopify {
    fn handle_webhook(request: HttpRequest) -> Result<Vec<Event>, ConnectorError> {
        verify_hmac(&request)?;
        let topic = request
            .header(TOPIC_HEADER)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ConnectorError::BadRequest("missing X-Shopify-Topic header".into()))?;
        let delivery = mapping::Delivery {
            topic,
            webhook_id: non_empty_header(&request, WEBHOOK_ID_HEADER),
            shop: non_empty_header(&request, SHOP_HEADER),
        };
        let events = mapping::events(&delivery, &request.body)?;
        log::debug(
            "mapped webhook",
            &[("topic", &topic), ("events", &events.len())],
        );
        Ok(events)
    }

    fn self_test() -> Result<(), String> {
        config::require("secret").map(|_| ())
    }
}

tessera_sdk::export_connector!(Shopify);

fn non_empty_header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .header(name)
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// Checks `X-Shopify-Hmac-Sha256` against the HMAC-SHA256 of the raw body, in constant time.
fn verify_hmac(request: &HttpRequest) -> Result<(), ConnectorError> {
    let unauthorized = |why: &str| ConnectorError::Unauthorized(why.to_string());
    let secret = signature::configured_secret()?;
    let header = request
        .header(HMAC_HEADER)
        .ok_or_else(|| unauthorized("missing X-Shopify-Hmac-Sha256 header"))?;
    let mac = hmac::decode_base64(header)
        .map_err(|_| unauthorized("X-Shopify-Hmac-Sha256 is not valid base64"))?;
    if hmac::verify_sha256(secret.as_bytes(), &request.body, &mac) {
        Ok(())
    } else {
        Err(unauthorized(
            "X-Shopify-Hmac-Sha256 does not match the body",
        ))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use tessera_sdk::json::json;
    use tessera_sdk::testing::{Harness, expect_unauthorized};
    use tessera_sdk::types::{EventKind, Identity};

    const SECRET: &str = "shpss_0123456789abcdef0123456789abcdef";

    /// Signs `body` the way Shopify does and adds the headers a delivery carries.
    fn delivery(topic: &str, body: &str) -> HttpRequest {
        let mac = hmac::sign_sha256(SECRET.as_bytes(), body.as_bytes());
        HttpRequest::post("/", body)
            .with_header("X-Shopify-Topic", topic)
            .with_header("X-Shopify-Hmac-Sha256", hmac::encode_base64(&mac))
            .with_header("X-Shopify-Shop-Domain", "example.myshopify.com")
            .with_header(
                "X-Shopify-Webhook-Id",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            )
    }

    #[test]
    fn documented_orders_create_maps_to_order_completed() {
        let _h = Harness::with_secret(SECRET);
        let events =
            Shopify::handle_webhook(delivery("orders/create", samples::ORDERS_CREATE)).unwrap();
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.id, "shopify:b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
        assert_eq!(event.kind, EventKind::Track);
        assert_eq!(event.name.as_deref(), Some("Order Completed"));
        assert_eq!(
            event.timestamp.as_deref(),
            Some("2022-04-06T08:09:03-04:00")
        );
        assert_eq!(
            event.contact.identities,
            vec![
                Identity::new("shopify:customer", "115310627314723954"),
                Identity::new("email", "jon@doe.ca"),
            ]
        );
        let properties = event.properties_value();
        assert_eq!(properties["order_id"], "820982911946154508");
        assert_eq!(properties["total"], 403.0);
        assert_eq!(properties["subtotal"], 393.0);
        assert_eq!(properties["tax"], 0.0);
        assert_eq!(properties["discount"], 5.0);
        assert_eq!(properties["shipping"], 10.0);
        assert_eq!(properties["currency"], "USD");
        assert_eq!(properties["affiliation"], "example.myshopify.com");
        assert!(properties.get("checkout_id").is_none());
        let products = properties["products"].as_array().unwrap();
        assert_eq!(products.len(), 2);
        assert_eq!(
            products[0],
            json!({
                "product_id": "632910392",
                "sku": "IPOD2008PINK",
                "name": "IPod Nano - 8GB",
                "price": 199.0,
                "quantity": 1,
                "variant_id": "808950810",
                "position": 1
            })
        );
        assert_eq!(event.traits, "{}");
    }

    #[test]
    fn orders_paid_maps_to_order_paid_with_the_same_properties() {
        let _h = Harness::with_secret(SECRET);
        let events =
            Shopify::handle_webhook(delivery("orders/paid", samples::ORDERS_CREATE)).unwrap();
        assert_eq!(events[0].name.as_deref(), Some("Order Paid"));
        assert_eq!(events[0].properties_value()["total"], 403.0);
    }

    #[test]
    fn checkouts_create_maps_to_checkout_started() {
        let _h = Harness::with_secret(SECRET);
        let events =
            Shopify::handle_webhook(delivery("checkouts/create", samples::CHECKOUTS_CREATE))
                .unwrap();
        let event = &events[0];
        assert_eq!(event.name.as_deref(), Some("Checkout Started"));
        let properties = event.properties_value();
        assert_eq!(properties["checkout_id"], "981820079255243537");
        assert!(properties.get("order_id").is_none());
        assert_eq!(properties["total"], 398.0);
        assert_eq!(properties["subtotal"], 398.0);
        assert_eq!(properties["shipping"], 0.0);
        assert_eq!(properties["currency"], "USD");
        assert!(properties.get("coupon").is_none());
        assert_eq!(properties["products"][0]["name"], "IPod Nano - 8GB");
        assert_eq!(properties["products"][0]["variant"], "Pink");
        assert_eq!(properties["products"][0]["brand"], "Apple");
        assert_eq!(properties["products"][1]["position"], 2);
        assert_eq!(
            event.contact.identities,
            vec![
                Identity::new("shopify:customer", "603851970716743426"),
                Identity::new("email", "example@email.com"),
            ]
        );
        assert_eq!(
            event.timestamp.as_deref(),
            Some("2021-12-31T19:00:00-05:00")
        );
    }

    #[test]
    fn documented_customers_create_maps_to_identify() {
        let _h = Harness::with_secret(SECRET);
        for topic in ["customers/create", "customers/update"] {
            let events =
                Shopify::handle_webhook(delivery(topic, samples::CUSTOMERS_CREATE)).unwrap();
            let event = &events[0];
            assert_eq!(event.kind, EventKind::Identify);
            assert_eq!(event.name, None);
            assert_eq!(
                event.contact.identities,
                vec![
                    Identity::new("shopify:customer", "706405506930370084"),
                    Identity::new("email", "bob@biller.com"),
                ]
            );
            assert_eq!(
                event.traits_value(),
                json!({
                    "email": "bob@biller.com",
                    "firstName": "Bob",
                    "lastName": "Biller",
                    "accepts_marketing": true,
                    "tags": [],
                    "createdAt": "2021-12-31T19:00:00-05:00"
                })
            );
            assert_eq!(
                event.timestamp.as_deref(),
                Some("2021-12-31T19:00:00-05:00")
            );
        }
    }

    #[test]
    fn customer_tags_phone_and_marketing_consent_become_traits() {
        let _h = Harness::with_secret(SECRET);
        let body = json!({
            "id": 207119551, "email": "ada@example.com", "phone": "+16135551111",
            "first_name": "Ada", "last_name": null, "tags": "vip, wholesale ,",
            "email_marketing_consent": {"state": "subscribed"},
            "updated_at": "2024-05-01T10:00:00-04:00"
        })
        .to_string();
        let events = Shopify::handle_webhook(delivery("customers/update", &body)).unwrap();
        let event = &events[0];
        assert!(
            event
                .contact
                .identities
                .contains(&Identity::new("phone", "+16135551111"))
        );
        assert_eq!(
            event.traits_value(),
            json!({
                "email": "ada@example.com", "phone": "+16135551111", "firstName": "Ada",
                "accepts_marketing": true, "tags": ["vip", "wholesale"]
            })
        );
    }

    #[test]
    fn signature_from_shopifys_own_scheme_is_accepted() {
        // Shopify's libraries compute base64(HMAC-SHA256(secret, raw body)): the Node one as
        // `createHmac('sha256', secret).update(body).digest('base64')`, the Ruby one as
        // `Base64.strict_encode64(OpenSSL::HMAC.digest('sha256', secret, body))`. This value
        // came from @shopify/shopify-api's own HMAC helper for this secret and body.
        const BODY: &str =
            r#"{"id":820982911946154508,"email":"jon@doe.ca","total_price":"403.00"}"#;
        const LIBRARY_HMAC: &str = "AmR0oYBeDrsIqg3GPd5+tcqdrMxlzH2VCkFyhMZfgQo=";
        let _h = Harness::with_secret(SECRET);
        assert_eq!(
            hmac::encode_base64(&hmac::sign_sha256(SECRET.as_bytes(), BODY.as_bytes())),
            LIBRARY_HMAC
        );
        let request = HttpRequest::post("/", BODY)
            .with_header("X-Shopify-Topic", "orders/create")
            .with_header("X-Shopify-Hmac-Sha256", LIBRARY_HMAC);
        let events = Shopify::handle_webhook(request).unwrap();
        // Without X-Shopify-Webhook-Id the id falls back to the topic and the order id.
        assert_eq!(events[0].id, "shopify:orders/create:820982911946154508");
    }

    #[test]
    fn wrong_secret_is_unauthorized() {
        let h = Harness::with_secret(SECRET);
        let request = delivery("orders/create", samples::ORDERS_CREATE);
        h.set_config("secret", "shpss_some_other_secret");
        let why = expect_unauthorized(Shopify::handle_webhook(request));
        assert!(why.contains("does not match"), "{why}");
    }

    #[test]
    fn tampered_body_is_unauthorized() {
        let _h = Harness::with_secret(SECRET);
        let mut request = delivery("orders/create", samples::ORDERS_CREATE);
        request.body.push(b'\n');
        assert!(expect_unauthorized(Shopify::handle_webhook(request)).contains("does not match"));
    }

    #[test]
    fn missing_or_garbled_hmac_is_unauthorized() {
        let _h = Harness::with_secret(SECRET);
        let bare = HttpRequest::post("/", "{}").with_header("X-Shopify-Topic", "orders/create");
        assert!(expect_unauthorized(Shopify::handle_webhook(bare)).contains("missing"));
        let junk = HttpRequest::post("/", "{}")
            .with_header("X-Shopify-Topic", "orders/create")
            .with_header("X-Shopify-Hmac-Sha256", "***");
        assert!(expect_unauthorized(Shopify::handle_webhook(junk)).contains("base64"));
    }

    #[test]
    fn unset_secret_fails_self_test_and_requests() {
        let _h = Harness::new();
        assert_eq!(
            Shopify::self_test(),
            Err("config key `secret` is not set".to_string())
        );
        let why = expect_unauthorized(Shopify::handle_webhook(delivery("orders/create", "{}")));
        assert!(why.contains("no `secret`"), "{why}");
        let _h = Harness::with_secret(SECRET);
        assert_eq!(Shopify::self_test(), Ok(()));
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        let _h = Harness::with_secret(SECRET);
        match Shopify::handle_webhook(delivery("orders/create", "{\"id\": 1,")) {
            Err(ConnectorError::BadRequest(why)) => assert!(why.contains("JSON"), "{why}"),
            other => panic!("expected bad-request, got {other:?}"),
        }
        match Shopify::handle_webhook(delivery("orders/create", "[1, 2]")) {
            Err(ConnectorError::BadRequest(why)) => assert!(why.contains("object"), "{why}"),
            other => panic!("expected bad-request, got {other:?}"),
        }
    }

    #[test]
    fn unknown_topic_is_acknowledged_without_events() {
        let _h = Harness::with_secret(SECRET);
        match Shopify::handle_webhook(delivery("products/update", "{\"id\": 1}")) {
            Ok(events) => assert!(events.is_empty(), "{events:?}"),
            Err(e) => panic!("expected no events, got {e:?}"),
        }
    }

    #[test]
    fn missing_topic_is_a_bad_request() {
        let _h = Harness::with_secret(SECRET);
        let mut request = delivery("orders/create", "{}");
        request.headers.retain(|(name, _)| name != TOPIC_HEADER);
        assert!(matches!(
            Shopify::handle_webhook(request),
            Err(ConnectorError::BadRequest(_))
        ));
    }

    #[test]
    fn order_naming_nobody_is_acknowledged_without_events() {
        let h = Harness::with_secret(SECRET);
        let body = r#"{"id": 450789469, "email": null, "total_price": "10.00", "currency": "USD"}"#;
        let events = Shopify::handle_webhook(delivery("orders/create", body)).unwrap();
        assert!(events.is_empty());
        assert!(h.logged("names nobody"));
    }

    #[test]
    fn polling_is_unsupported() {
        let _h = Harness::with_secret(SECRET);
        assert!(matches!(
            Shopify::poll(None),
            Err(ConnectorError::Unsupported(_))
        ));
    }
}
