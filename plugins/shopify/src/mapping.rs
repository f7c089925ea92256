//! Maps one Shopify topic's payload onto a Segment e-commerce event.
//!
//! | topic | event |
//! | --- | --- |
//! | `checkouts/create` | track `Checkout Started` |
//! | `orders/create` | track `Order Completed` |
//! | `orders/paid` | track `Order Paid` (outside Segment's spec: payment is its own fact) |
//! | `customers/create`, `customers/update` | identify |
//!
//! Any other topic is acknowledged with no event.
//!
//! Orders and checkouts carry Segment's order properties: `order_id` (orders),
//! `checkout_id`, `total`, `subtotal`, `tax`, `discount`, `shipping`, `currency`, `coupon`,
//! `affiliation` (the shop's domain) and `products` (`product_id`, `sku`, `name`, `price`,
//! `quantity`, `variant`, `variant_id`, `brand`, `position`). Shopify's decimal strings
//! become numbers. Customers become traits: `email`, `phone`, `firstName`, `lastName`,
//! `accepts_marketing`, `tags` (a list) and `createdAt`.
//!
//! The contact is the Shopify customer id (`shopify:customer`), the email and the phone.
//! The event id is `shopify:<X-Shopify-Webhook-Id>`; without that header it is derived from
//! the topic and the resource id (plus `updated_at` for `customers/update`, whose deliveries
//! are distinct facts about one resource), so a redelivery still maps to the same id.

use tessera_sdk::json::{self, Map, Value, text_field};
use tessera_sdk::types::{ConnectorError, ContactRef, Event};
use tessera_sdk::{hash, log};

/// What the headers say about one delivery.
pub struct Delivery<'a> {
    /// `X-Shopify-Topic`.
    pub topic: &'a str,
    /// `X-Shopify-Webhook-Id`, when sent.
    pub webhook_id: Option<&'a str>,
    /// `X-Shopify-Shop-Domain`, when sent.
    pub shop: Option<&'a str>,
}

/// The topics this connector maps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Topic {
    CheckoutCreate,
    OrderCreate,
    OrderPaid,
    CustomerCreate,
    CustomerUpdate,
}

impl Topic {
    fn parse(topic: &str) -> Option<Self> {
        Some(match topic {
            "checkouts/create" => Self::CheckoutCreate,
            "orders/create" => Self::OrderCreate,
            "orders/paid" => Self::OrderPaid,
            "customers/create" => Self::CustomerCreate,
            "customers/update" => Self::CustomerUpdate,
            _ => return None,
        })
    }

    /// The track event's name; `None` for the identify topics.
    fn event_name(self) -> Option<&'static str> {
        match self {
            Self::CheckoutCreate => Some("Checkout Started"),
            Self::OrderCreate => Some("Order Completed"),
            Self::OrderPaid => Some("Order Paid"),
            Self::CustomerCreate | Self::CustomerUpdate => None,
        }
    }

    /// The payload fields that say when it happened, first present wins.
    fn time_fields(self) -> &'static [&'static str] {
        match self {
            Self::CheckoutCreate => &["created_at"],
            Self::OrderCreate => &["processed_at", "created_at"],
            Self::OrderPaid => &["updated_at", "processed_at", "created_at"],
            Self::CustomerCreate => &["created_at", "updated_at"],
            Self::CustomerUpdate => &["updated_at", "created_at"],
        }
    }
}

/// The events for one delivery: one, or none when the payload names nobody or the topic is
/// not one this connector maps (acknowledged, so Shopify does not retry it for days).
pub fn events(delivery: &Delivery<'_>, body: &[u8]) -> Result<Vec<Event>, ConnectorError> {
    let Some(topic) = Topic::parse(delivery.topic) else {
        log::info(
            "topic not handled (expected checkouts/create, orders/create, orders/paid, \
             customers/create or customers/update); acknowledged without an event",
            &[("topic", &delivery.topic)],
        );
        return Ok(Vec::new());
    };
    let payload =
        json::parse_object(body).map_err(|e| ConnectorError::BadRequest(e.to_string()))?;
    let contact = contact(&payload, topic);
    if contact.is_empty() {
        log::warn(
            "payload names nobody (no customer, email or phone); acknowledged without an event",
            &[("topic", &delivery.topic)],
        );
        return Ok(Vec::new());
    }
    let id = event_id(delivery, topic, &payload, body);
    let mut event = match topic.event_name() {
        Some(name) => Event::track(id, name, contact).with_properties(order_properties(
            &payload,
            topic,
            delivery.shop,
        )),
        None => Event::identify(id, contact, customer_traits(&payload)),
    };
    event.timestamp = topic
        .time_fields()
        .iter()
        .find_map(|field| text_field(&payload, field));
    Ok(vec![event])
}

fn event_id(
    delivery: &Delivery<'_>,
    topic: Topic,
    payload: &Map<String, Value>,
    body: &[u8],
) -> String {
    if let Some(webhook_id) = delivery.webhook_id {
        return format!("shopify:{webhook_id}");
    }
    let resource = match id_text(payload.get("id")) {
        Some(id) => id,
        // Nothing names the resource: the exact bytes are what a redelivery repeats.
        None => {
            return format!(
                "shopify:{}:{}",
                delivery.topic,
                &hash::sha256_hex(body)[..32]
            );
        }
    };
    match (topic, text_field(payload, "updated_at")) {
        (Topic::CustomerUpdate, Some(updated_at)) => {
            format!("shopify:{}:{resource}@{updated_at}", delivery.topic)
        }
        _ => format!("shopify:{}:{resource}", delivery.topic),
    }
}

/// The customer id, email and phone, from the customer itself or from an order's fields.
fn contact(payload: &Map<String, Value>, topic: Topic) -> ContactRef {
    let customer = match topic {
        Topic::CustomerCreate | Topic::CustomerUpdate => Some(payload),
        _ => payload.get("customer").and_then(Value::as_object),
    };
    let mut contact = ContactRef::default();
    if let Some(id) = customer.and_then(|c| id_text(c.get("id"))) {
        contact = contact.with_identity("shopify:customer", id);
    }
    let from_order_then_customer = |fields: &[&str]| {
        fields
            .iter()
            .find_map(|field| text_field(payload, field))
            .or_else(|| customer.and_then(|c| text_field(c, fields[0])))
    };
    if let Some(email) = from_order_then_customer(&["email", "contact_email"]) {
        contact = contact.with_email(email);
    }
    if let Some(phone) = from_order_then_customer(&["phone"]) {
        contact = contact.with_phone(phone);
    }
    contact
}

/// Segment's order properties for an order or a checkout.
fn order_properties(payload: &Map<String, Value>, topic: Topic, shop: Option<&str>) -> Value {
    let mut properties = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            properties.insert(key.to_string(), value);
        }
    };
    if topic == Topic::CheckoutCreate {
        put("checkout_id", id_text(payload.get("id")).map(Value::String));
    } else {
        put("order_id", id_text(payload.get("id")).map(Value::String));
        put(
            "checkout_id",
            id_text(payload.get("checkout_id")).map(Value::String),
        );
    }
    put("affiliation", shop.map(|s| Value::String(s.to_string())));
    put("total", money(payload.get("total_price")));
    put("subtotal", money(payload.get("subtotal_price")));
    put("tax", money(payload.get("total_tax")));
    put("discount", money(payload.get("total_discounts")));
    put("shipping", shipping(payload));
    put(
        "currency",
        text_field(payload, "currency")
            .or_else(|| text_field(payload, "presentment_currency"))
            .map(Value::String),
    );
    put("coupon", coupon(payload).map(Value::String));
    let products = payload
        .get("line_items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_object)
                .enumerate()
                .map(|(index, item)| product(item, index))
                .collect()
        });
    put("products", products.map(Value::Array));
    Value::Object(properties)
}

/// The shipping total: the order's shop-currency amount, else the sum of the shipping lines.
fn shipping(payload: &Map<String, Value>) -> Option<Value> {
    let set = payload
        .get("total_shipping_price_set")
        .and_then(|set| set.get("shop_money"))
        .and_then(|money| money.get("amount"));
    if let Some(amount) = money(set) {
        return Some(amount);
    }
    let lines = payload.get("shipping_lines")?.as_array()?;
    let sum: f64 = lines
        .iter()
        .filter_map(|line| money(line.get("price")))
        .filter_map(|amount| amount.as_f64())
        .sum();
    Some(Value::from(sum))
}

/// The discount codes used, comma-separated.
fn coupon(payload: &Map<String, Value>) -> Option<String> {
    let codes: Vec<&str> = payload
        .get("discount_codes")?
        .as_array()?
        .iter()
        .filter_map(|code| code.get("code").and_then(Value::as_str))
        .filter(|code| !code.is_empty())
        .collect();
    (!codes.is_empty()).then(|| codes.join(","))
}

/// One line item as a Segment product.
fn product(item: &Map<String, Value>, index: usize) -> Value {
    let mut product = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            product.insert(key.to_string(), value);
        }
    };
    put(
        "product_id",
        id_text(item.get("product_id")).map(Value::String),
    );
    put("sku", text_field(item, "sku").map(Value::String));
    put(
        "name",
        text_field(item, "name")
            .or_else(|| text_field(item, "title"))
            .map(Value::String),
    );
    put("price", money(item.get("price")));
    put(
        "quantity",
        item.get("quantity").filter(|q| q.is_number()).cloned(),
    );
    put(
        "variant",
        text_field(item, "variant_title").map(Value::String),
    );
    put(
        "variant_id",
        id_text(item.get("variant_id")).map(Value::String),
    );
    put("brand", text_field(item, "vendor").map(Value::String));
    put("position", Some(Value::from(index + 1)));
    Value::Object(product)
}

/// A customer's traits, named after Segment's reserved traits where there is one.
fn customer_traits(customer: &Map<String, Value>) -> Value {
    let mut traits = Map::new();
    let mut put = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            traits.insert(key.to_string(), value);
        }
    };
    put("email", text_field(customer, "email").map(Value::String));
    put("phone", text_field(customer, "phone").map(Value::String));
    put(
        "firstName",
        text_field(customer, "first_name").map(Value::String),
    );
    put(
        "lastName",
        text_field(customer, "last_name").map(Value::String),
    );
    // `accepts_marketing` is gone from newer API versions; the email consent replaces it.
    let accepts_marketing = customer
        .get("accepts_marketing")
        .and_then(Value::as_bool)
        .or_else(|| {
            let state = customer.get("email_marketing_consent")?.get("state")?;
            Some(state.as_str()? == "subscribed")
        });
    put("accepts_marketing", accepts_marketing.map(Value::Bool));
    put("tags", customer.get("tags").and_then(tags));
    put(
        "createdAt",
        text_field(customer, "created_at").map(Value::String),
    );
    Value::Object(traits)
}

/// Shopify's tags (`"vip, wholesale"`) as a list; a list is taken as it is.
fn tags(value: &Value) -> Option<Value> {
    match value {
        Value::String(list) => Some(Value::Array(
            list.split(',')
                .map(str::trim)
                .filter(|tag| !tag.is_empty())
                .map(|tag| Value::String(tag.to_string()))
                .collect(),
        )),
        Value::Array(_) => Some(value.clone()),
        _ => None,
    }
}

/// An id, which Shopify sends as a number (and some tools as a string), as text.
fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// A money amount, which Shopify sends as a decimal string (`"403.00"`), as a JSON number.
fn money(value: Option<&Value>) -> Option<Value> {
    let amount = match value? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    amount.is_finite().then(|| Value::from(amount))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_sdk::json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn money_accepts_decimal_strings_and_numbers() {
        assert_eq!(money(Some(&json!("403.00"))), Some(json!(403.0)));
        assert_eq!(money(Some(&json!(12.5))), Some(json!(12.5)));
        assert_eq!(money(Some(&json!("free"))), None);
        assert_eq!(money(Some(&Value::Null)), None);
    }

    #[test]
    fn shipping_falls_back_to_the_sum_of_shipping_lines() {
        let payload = object(json!({"shipping_lines": [{"price": "4.50"}, {"price": "1.50"}]}));
        assert_eq!(shipping(&payload), Some(json!(6.0)));
        assert_eq!(shipping(&object(json!({}))), None);
    }

    #[test]
    fn id_without_webhook_id_is_stable_and_distinguishes_customer_updates() {
        let delivery = Delivery {
            topic: "customers/update",
            webhook_id: None,
            shop: None,
        };
        let first = object(json!({"id": 7, "updated_at": "2024-01-01T00:00:00Z"}));
        let second = object(json!({"id": 7, "updated_at": "2024-01-02T00:00:00Z"}));
        let a = event_id(&delivery, Topic::CustomerUpdate, &first, b"a");
        assert_eq!(a, "shopify:customers/update:7@2024-01-01T00:00:00Z");
        assert_ne!(a, event_id(&delivery, Topic::CustomerUpdate, &second, b"b"));
        let anonymous = event_id(&delivery, Topic::CustomerUpdate, &object(json!({})), b"{}");
        assert_eq!(
            anonymous,
            event_id(&delivery, Topic::CustomerUpdate, &object(json!({})), b"{}")
        );
        assert!(anonymous.starts_with("shopify:customers/update:"));
    }

    #[test]
    fn discount_codes_become_the_coupon() {
        let payload = object(json!({"discount_codes": [
            {"code": "SUMMER", "amount": "5.00", "type": "fixed_amount"},
            {"code": "VIP", "amount": "1.00", "type": "fixed_amount"}
        ]}));
        assert_eq!(coupon(&payload).as_deref(), Some("SUMMER,VIP"));
        assert_eq!(coupon(&object(json!({"discount_codes": []}))), None);
    }

    #[test]
    fn tags_split_on_commas() {
        assert_eq!(tags(&json!(" a, b ,,c")), Some(json!(["a", "b", "c"])));
        assert_eq!(tags(&json!(["x"])), Some(json!(["x"])));
        assert_eq!(tags(&json!(3)), None);
    }
}
