//! Maps one Stripe event onto a Segment e-commerce event.
//!
//! | Stripe type | event | main properties |
//! | --- | --- | --- |
//! | `checkout.session.completed` | `Order Completed` | `order_id` (the session), `total`, `subtotal`, `tax`, `discount`, `shipping`, `currency`, `products` (when line items are expanded) |
//! | `invoice.paid` | `Invoice Paid` | `invoice_id`, `total` (amount paid), `subtotal`, `currency`, `subscription_id` |
//! | `invoice.payment_failed` | `Invoice Payment Failed` | `invoice_id`, `total` (amount due), `attempt_count`, `next_payment_attempt` |
//! | `customer.subscription.created` | `Subscription Started` | `subscription_id`, `status`, `total` per interval, `items` |
//! | `customer.subscription.deleted` | `Subscription Ended` | `subscription_id`, `status`, `canceled_at`, `ended_at`, `cancellation_reason` |
//! | `charge.refunded` | `Order Refunded` | `order_id` (the payment intent, else the charge), `total` (amount refunded), `currency` |
//!
//! Amounts come in the currency's smallest unit and leave as decimal numbers: divided by
//! 100, by 1 for zero-decimal currencies (JPY, KRW, ...) and by 1000 for three-decimal ones
//! (KWD, BHD, ...). Currencies leave upper-case. The event id is `stripe:<evt_...>`, the
//! timestamp the event's `created`, and the contact the Stripe customer
//! (`stripe:customer`) with whatever email and phone the object carries.

use tessera_sdk::json::{self, Map, Value, text_field};
use tessera_sdk::log;
use tessera_sdk::types::{ConnectorError, ContactRef, Event};

/// Currencies Stripe counts in whole units.
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
/// Currencies Stripe counts in thousandths.
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// The event types this connector maps, with their event names.
const TYPES: &[(&str, &str)] = &[
    ("checkout.session.completed", "Order Completed"),
    ("invoice.paid", "Invoice Paid"),
    ("invoice.payment_failed", "Invoice Payment Failed"),
    ("customer.subscription.created", "Subscription Started"),
    ("customer.subscription.deleted", "Subscription Ended"),
    ("charge.refunded", "Order Refunded"),
];

/// The events for one Stripe event: one, or none when it names no customer, email or phone
/// or its type is not one of [`TYPES`].
pub fn events(body: &[u8]) -> Result<Vec<Event>, ConnectorError> {
    let bad = |why: String| ConnectorError::BadRequest(why);
    let envelope = json::parse_object(body).map_err(|e| bad(e.to_string()))?;
    let kind =
        text_field(&envelope, "type").ok_or_else(|| bad("the event has no `type`".into()))?;
    let Some(&(_, name)) = TYPES.iter().find(|(t, _)| *t == kind) else {
        // Acknowledged, so Stripe does not retry it for days.
        let handled: Vec<&str> = TYPES.iter().map(|(t, _)| *t).collect();
        log::info(
            "event type not handled; acknowledged without an event",
            &[("type", &kind), ("handled", &handled.join(", "))],
        );
        return Ok(Vec::new());
    };
    let id = text_field(&envelope, "id").ok_or_else(|| bad("the event has no `id`".into()))?;
    let object = envelope
        .get("data")
        .and_then(|data| data.get("object"))
        .and_then(Value::as_object)
        .ok_or_else(|| bad("the event has no `data.object`".into()))?;

    let contact = contact(&kind, object);
    if contact.is_empty() {
        log::warn(
            "event names no customer, email or phone; acknowledged without an event",
            &[("type", &kind), ("id", &id)],
        );
        return Ok(Vec::new());
    }
    let properties = match kind.as_str() {
        "checkout.session.completed" => checkout_properties(object),
        "invoice.paid" | "invoice.payment_failed" => invoice_properties(&kind, object),
        "customer.subscription.created" | "customer.subscription.deleted" => {
            subscription_properties(object)
        }
        _ => refund_properties(object),
    };
    let mut event = Event::track(format!("stripe:{id}"), name, contact).with_properties(properties);
    event.timestamp = unix_time(envelope.get("created"));
    Ok(vec![event])
}

/// The customer id, email and phone, from wherever this object type keeps them.
fn contact(kind: &str, object: &Map<String, Value>) -> ContactRef {
    let mut contact = ContactRef::default();
    if let Some(customer) = object.get("customer").and_then(object_id) {
        contact = contact.with_identity("stripe:customer", customer);
    }
    let details = match kind {
        "checkout.session.completed" => object.get("customer_details"),
        "charge.refunded" => object.get("billing_details"),
        _ => None,
    }
    .and_then(Value::as_object);
    let email = details
        .and_then(|d| text_field(d, "email"))
        .or_else(|| text_field(object, "customer_email"))
        .or_else(|| text_field(object, "receipt_email"));
    let phone = details
        .and_then(|d| text_field(d, "phone"))
        .or_else(|| text_field(object, "customer_phone"));
    if let Some(email) = email {
        contact = contact.with_email(email);
    }
    if let Some(phone) = phone {
        contact = contact.with_phone(phone);
    }
    contact
}

/// Builds a properties object, skipping absent values.
struct Properties(Map<String, Value>);

impl Properties {
    fn new() -> Self {
        Self(Map::new())
    }

    fn put(&mut self, key: &str, value: Option<Value>) -> &mut Self {
        if let Some(value) = value {
            self.0.insert(key.to_string(), value);
        }
        self
    }

    fn text(&mut self, key: &str, value: Option<String>) -> &mut Self {
        self.put(key, value.map(Value::String))
    }

    fn done(&mut self) -> Value {
        Value::Object(std::mem::take(&mut self.0))
    }
}

fn checkout_properties(session: &Map<String, Value>) -> Value {
    let currency = currency(session);
    let totals = session.get("total_details");
    let total = |key: &str| amount(totals.and_then(|t| t.get(key)), currency.as_deref());
    let products = session
        .get("line_items")
        .and_then(|items| items.get("data"))
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .enumerate()
                .map(|(index, item)| line_item(item, index, currency.as_deref()))
                .collect()
        });
    Properties::new()
        .text("order_id", text_field(session, "id"))
        .put(
            "total",
            amount(session.get("amount_total"), currency.as_deref()),
        )
        .put(
            "subtotal",
            amount(session.get("amount_subtotal"), currency.as_deref()),
        )
        .put("tax", total("amount_tax"))
        .put("discount", total("amount_discount"))
        .put("shipping", total("amount_shipping"))
        .text("currency", currency.as_ref().map(|c| c.to_uppercase()))
        .put("products", products.map(Value::Array))
        .text(
            "payment_intent",
            session.get("payment_intent").and_then(object_id),
        )
        .text(
            "subscription_id",
            session.get("subscription").and_then(object_id),
        )
        .text(
            "client_reference_id",
            text_field(session, "client_reference_id"),
        )
        .text("mode", text_field(session, "mode"))
        .text("payment_status", text_field(session, "payment_status"))
        .done()
}

/// An expanded Checkout line item as a Segment product.
fn line_item(item: &Value, index: usize, currency: Option<&str>) -> Value {
    let price = item.get("price");
    Properties::new()
        .text(
            "product_id",
            price.and_then(|p| p.get("product")).and_then(object_id),
        )
        .text("name", item.get("description").and_then(json::text))
        .put(
            "price",
            amount(price.and_then(|p| p.get("unit_amount")), currency),
        )
        .put(
            "quantity",
            item.get("quantity").filter(|q| q.is_number()).cloned(),
        )
        .text(
            "variant",
            price.and_then(|p| p.get("id")).and_then(json::text),
        )
        .put("position", Some(Value::from(index + 1)))
        .done()
}

fn invoice_properties(kind: &str, invoice: &Map<String, Value>) -> Value {
    let currency = currency(invoice);
    let paid = kind == "invoice.paid";
    let total_key = if paid { "amount_paid" } else { "amount_due" };
    // Newer API versions moved the subscription under `parent.subscription_details`.
    let subscription = invoice.get("subscription").and_then(object_id).or_else(|| {
        invoice
            .get("parent")?
            .get("subscription_details")?
            .get("subscription")
            .and_then(object_id)
    });
    let mut properties = Properties::new();
    properties
        .text("invoice_id", text_field(invoice, "id"))
        .text("number", text_field(invoice, "number"))
        .put("total", amount(invoice.get(total_key), currency.as_deref()))
        .put(
            "subtotal",
            amount(invoice.get("subtotal"), currency.as_deref()),
        )
        .text("currency", currency.as_ref().map(|c| c.to_uppercase()))
        .text("subscription_id", subscription)
        .text("billing_reason", text_field(invoice, "billing_reason"))
        .text("status", text_field(invoice, "status"));
    if !paid {
        properties
            .put(
                "amount_remaining",
                amount(invoice.get("amount_remaining"), currency.as_deref()),
            )
            .put(
                "attempt_count",
                invoice.get("attempt_count").filter(|n| n.is_u64()).cloned(),
            )
            .text(
                "next_payment_attempt",
                unix_time(invoice.get("next_payment_attempt")),
            );
    }
    properties.done()
}

fn subscription_properties(subscription: &Map<String, Value>) -> Value {
    let currency = currency(subscription);
    let items: Vec<&Value> = subscription
        .get("items")
        .and_then(|items| items.get("data"))
        .and_then(Value::as_array)
        .map(|items| items.iter().collect())
        .unwrap_or_default();
    let mut total = Some(0i64);
    let mapped: Vec<Value> = items
        .iter()
        .map(|item| {
            let price = item.get("price").or_else(|| item.get("plan"));
            let unit = price
                .and_then(|p| p.get("unit_amount").or_else(|| p.get("amount")))
                .and_then(Value::as_i64);
            let quantity = item.get("quantity").and_then(Value::as_i64).unwrap_or(1);
            total = match (total, unit) {
                (Some(sum), Some(unit)) => sum.checked_add(unit.saturating_mul(quantity)),
                _ => None,
            };
            let interval = price
                .and_then(|p| p.get("recurring").or(Some(p)))
                .and_then(|r| r.get("interval"))
                .and_then(json::text);
            Properties::new()
                .text(
                    "price_id",
                    price.and_then(|p| p.get("id")).and_then(json::text),
                )
                .text(
                    "product_id",
                    price.and_then(|p| p.get("product")).and_then(object_id),
                )
                .put("quantity", Some(Value::from(quantity)))
                .put(
                    "price",
                    amount(unit.map(Value::from).as_ref(), currency.as_deref()),
                )
                .text("interval", interval)
                .done()
        })
        .collect();
    let cancellation = subscription.get("cancellation_details");
    Properties::new()
        .text("subscription_id", text_field(subscription, "id"))
        .text("status", text_field(subscription, "status"))
        .put(
            "total",
            total
                .filter(|_| !items.is_empty())
                .and_then(|t| amount(Some(&Value::from(t)), currency.as_deref())),
        )
        .text("currency", currency.as_ref().map(|c| c.to_uppercase()))
        .put("items", Some(Value::Array(mapped)))
        .text("trial_end", unix_time(subscription.get("trial_end")))
        .text("canceled_at", unix_time(subscription.get("canceled_at")))
        .text("ended_at", unix_time(subscription.get("ended_at")))
        .text(
            "cancellation_reason",
            cancellation
                .and_then(|c| c.get("reason"))
                .and_then(json::text),
        )
        .text(
            "cancellation_feedback",
            cancellation
                .and_then(|c| c.get("feedback"))
                .and_then(json::text),
        )
        .done()
}

fn refund_properties(charge: &Map<String, Value>) -> Value {
    let currency = currency(charge);
    let payment_intent = charge.get("payment_intent").and_then(object_id);
    Properties::new()
        .text(
            "order_id",
            payment_intent.clone().or_else(|| text_field(charge, "id")),
        )
        .text("charge_id", text_field(charge, "id"))
        .text("payment_intent", payment_intent)
        .put(
            "total",
            amount(charge.get("amount_refunded"), currency.as_deref()),
        )
        .put("amount", amount(charge.get("amount"), currency.as_deref()))
        .text("currency", currency.as_ref().map(|c| c.to_uppercase()))
        .put(
            "refunded",
            charge.get("refunded").filter(|r| r.is_boolean()).cloned(),
        )
        .done()
}

/// The object's currency, lower-case as Stripe sends it.
fn currency(object: &Map<String, Value>) -> Option<String> {
    text_field(object, "currency").map(|c| c.to_ascii_lowercase())
}

/// An amount in the currency's smallest unit as a decimal number.
fn amount(value: Option<&Value>, currency: Option<&str>) -> Option<Value> {
    let minor = value?.as_i64()?;
    let currency = currency.unwrap_or_default();
    Some(if ZERO_DECIMAL.contains(&currency) {
        Value::from(minor)
    } else if THREE_DECIMAL.contains(&currency) {
        Value::from(minor as f64 / 1000.0)
    } else {
        Value::from(minor as f64 / 100.0)
    })
}

/// A unix time in seconds as RFC 3339 (UTC).
fn unix_time(value: Option<&Value>) -> Option<String> {
    let seconds = value?.as_i64()?;
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    ))
}

/// A reference to another object: its id, or the `id` of the object when it is expanded.
fn object_id(value: &Value) -> Option<String> {
    match value {
        Value::Object(object) => text_field(object, "id"),
        other => json::text(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::json::json;
    use tessera_sdk::types::Identity;

    fn one(event: Value) -> Event {
        let mut events = events(event.to_string().as_bytes()).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    fn envelope(kind: &str, object: Value) -> Value {
        json!({
            "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy", "object": "event", "api_version": "2023-10-16",
            "created": 1686089970, "livemode": false, "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "type": kind, "data": {"object": object}
        })
    }

    #[test]
    fn amounts_follow_the_currency_exponent() {
        assert_eq!(amount(Some(&json!(2198)), Some("usd")), Some(json!(21.98)));
        assert_eq!(amount(Some(&json!(1500)), Some("jpy")), Some(json!(1500)));
        assert_eq!(amount(Some(&json!(52000)), Some("krw")), Some(json!(52000)));
        assert_eq!(amount(Some(&json!(5124)), Some("kwd")), Some(json!(5.124)));
        assert_eq!(amount(Some(&json!(-250)), Some("eur")), Some(json!(-2.5)));
        assert_eq!(amount(Some(&Value::Null), Some("usd")), None);
    }

    #[test]
    fn unix_times_become_rfc_3339() {
        for (seconds, want) in [
            (0_i64, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_561_420_781, "2019-06-24T23:59:41Z"),
            (1_686_089_970, "2023-06-06T22:19:30Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
        ] {
            assert_eq!(unix_time(Some(&json!(seconds))).as_deref(), Some(want));
        }
        assert_eq!(unix_time(Some(&Value::Null)), None);
    }

    #[test]
    fn invoice_paid_and_failed() {
        let invoice = json!({
            "id": "in_1MtHbELkdIwHu7ixl4OzzPMv", "object": "invoice", "number": "9545A614-0001",
            "customer": "cus_NeZwdNtLEOXuvB", "customer_email": "jennyrosen@example.com",
            "customer_phone": null, "currency": "usd", "amount_due": 1500, "amount_paid": 1500,
            "amount_remaining": 0, "subtotal": 1500, "attempt_count": 1,
            "billing_reason": "subscription_create", "status": "paid",
            "subscription": "sub_1MowQVLkdIwHu7ixeRlqHVzs", "next_payment_attempt": null
        });
        let paid = one(envelope("invoice.paid", invoice.clone()));
        assert_eq!(paid.id, "stripe:evt_1NG8Du2eZvKYlo2CUI79vXWy");
        assert_eq!(paid.name.as_deref(), Some("Invoice Paid"));
        assert_eq!(paid.timestamp.as_deref(), Some("2023-06-06T22:19:30Z"));
        assert_eq!(
            paid.contact.identities,
            vec![
                Identity::new("stripe:customer", "cus_NeZwdNtLEOXuvB"),
                Identity::new("email", "jennyrosen@example.com"),
            ]
        );
        assert_eq!(
            paid.properties_value(),
            json!({
                "invoice_id": "in_1MtHbELkdIwHu7ixl4OzzPMv", "number": "9545A614-0001",
                "total": 15.0, "subtotal": 15.0, "currency": "USD",
                "subscription_id": "sub_1MowQVLkdIwHu7ixeRlqHVzs",
                "billing_reason": "subscription_create", "status": "paid"
            })
        );

        let mut failing = invoice;
        failing["status"] = json!("open");
        failing["amount_paid"] = json!(0);
        failing["amount_remaining"] = json!(1500);
        failing["attempt_count"] = json!(2);
        failing["next_payment_attempt"] = json!(1_686_176_370);
        let failed = one(envelope("invoice.payment_failed", failing));
        assert_eq!(failed.name.as_deref(), Some("Invoice Payment Failed"));
        let properties = failed.properties_value();
        assert_eq!(properties["total"], 15.0);
        assert_eq!(properties["amount_remaining"], 15.0);
        assert_eq!(properties["attempt_count"], 2);
        assert_eq!(properties["next_payment_attempt"], "2023-06-07T22:19:30Z");
    }

    #[test]
    fn subscription_started_and_ended() {
        let subscription = json!({
            "id": "sub_1MowQVLkdIwHu7ixeRlqHVzs", "object": "subscription",
            "customer": "cus_Na6dX7aXxi11N4", "currency": "jpy", "status": "active",
            "canceled_at": null, "ended_at": null, "trial_end": null,
            "cancellation_details": {"comment": null, "feedback": null, "reason": null},
            "items": {"object": "list", "data": [{
                "id": "si_Na6dzxczY5fwHx", "object": "subscription_item", "quantity": 2,
                "price": {
                    "id": "price_1MowQULkdIwHu7ixraBm864M", "object": "price",
                    "product": "prod_Na6dGcTsmU0I4R", "unit_amount": 1000, "currency": "jpy",
                    "recurring": {"interval": "month", "interval_count": 1}
                }
            }]}
        });
        let started = one(envelope(
            "customer.subscription.created",
            subscription.clone(),
        ));
        assert_eq!(started.name.as_deref(), Some("Subscription Started"));
        assert_eq!(
            started.contact.identities,
            vec![Identity::new("stripe:customer", "cus_Na6dX7aXxi11N4")]
        );
        let properties = started.properties_value();
        assert_eq!(properties["total"], 2000);
        assert_eq!(properties["currency"], "JPY");
        assert_eq!(
            properties["items"],
            json!([{
                "price_id": "price_1MowQULkdIwHu7ixraBm864M", "product_id": "prod_Na6dGcTsmU0I4R",
                "quantity": 2, "price": 1000, "interval": "month"
            }])
        );

        let mut ended = subscription;
        ended["status"] = json!("canceled");
        ended["canceled_at"] = json!(1_686_089_970);
        ended["ended_at"] = json!(1_686_089_970);
        ended["cancellation_details"]["reason"] = json!("cancellation_requested");
        let ended = one(envelope("customer.subscription.deleted", ended));
        assert_eq!(ended.name.as_deref(), Some("Subscription Ended"));
        let properties = ended.properties_value();
        assert_eq!(properties["status"], "canceled");
        assert_eq!(properties["ended_at"], "2023-06-06T22:19:30Z");
        assert_eq!(properties["cancellation_reason"], "cancellation_requested");
    }

    #[test]
    fn charge_refunded_maps_to_order_refunded() {
        let event = one(envelope(
            "charge.refunded",
            json!({
                "id": "ch_3MmlLrLkdIwHu7ix0snN0B15", "object": "charge", "amount": 1099,
                "amount_refunded": 1099, "currency": "usd", "customer": null,
                "payment_intent": "pi_3MmlLrLkdIwHu7ix0uke3Ezy", "refunded": true,
                "receipt_email": null,
                "billing_details": {"email": "jenny.rosen@example.com", "name": "Jenny Rosen",
                                    "phone": null, "address": null}
            }),
        ));
        assert_eq!(event.name.as_deref(), Some("Order Refunded"));
        assert_eq!(
            event.contact.identities,
            vec![Identity::new("email", "jenny.rosen@example.com")]
        );
        assert_eq!(
            event.properties_value(),
            json!({
                "order_id": "pi_3MmlLrLkdIwHu7ix0uke3Ezy", "charge_id": "ch_3MmlLrLkdIwHu7ix0snN0B15",
                "payment_intent": "pi_3MmlLrLkdIwHu7ix0uke3Ezy", "total": 10.99, "amount": 10.99,
                "currency": "USD", "refunded": true
            })
        );
    }

    #[test]
    fn expanded_customer_and_line_items_are_read() {
        let event = one(envelope(
            "checkout.session.completed",
            json!({
                "id": "cs_test_1", "object": "checkout.session", "currency": "eur",
                "amount_total": 4000, "customer": {"id": "cus_X", "object": "customer"},
                "line_items": {"object": "list", "data": [{
                    "id": "li_1", "description": "T-shirt", "quantity": 2,
                    "price": {"id": "price_1", "product": "prod_1", "unit_amount": 2000}
                }]}
            }),
        ));
        assert_eq!(
            event.contact.identities,
            vec![Identity::new("stripe:customer", "cus_X")]
        );
        assert_eq!(
            event.properties_value()["products"],
            json!([{"product_id": "prod_1", "name": "T-shirt", "price": 20.0, "quantity": 2,
                    "variant": "price_1", "position": 1}])
        );
    }

    #[test]
    fn events_naming_nobody_are_acknowledged_without_events() {
        let body = envelope("charge.refunded", json!({"id": "ch_1", "customer": null}));
        assert!(events(body.to_string().as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn malformed_envelopes_are_bad_requests() {
        let bad = |body: Value| match events(body.to_string().as_bytes()) {
            Err(ConnectorError::BadRequest(why)) => why,
            other => panic!("expected bad-request, got {other:?}"),
        };
        assert!(bad(json!({"id": "evt_1"})).contains("`type`"));
        assert!(bad(json!({"type": "invoice.paid", "data": {"object": {}}})).contains("`id`"));
        assert!(bad(json!({"id": "evt_1", "type": "invoice.paid"})).contains("data.object"));
    }
}
