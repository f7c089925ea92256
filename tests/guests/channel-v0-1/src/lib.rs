//! Test guest: a channel bound to the published `wit/v0.1.0` directly (no SDK), the way a
//! plugin built before contract 0.2 existed is. It accepts every message; the delivery's
//! provider id is the message id and its detail is `{content-type} {subject} {body}`, so a
//! test reads what the host handed a 0.1 channel (which has no HTML part or headers).

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    world: "tessera:cx/channel@0.1.0",
});

use exports::tessera::cx::self_test::Guest as SelfTestGuest;
use exports::tessera::cx::sender::Guest as SenderGuest;
use tessera::cx::types::{Delivery, Message, SendError};

/// The channel.
struct Echo;

impl SenderGuest for Echo {
    fn send(message: Message) -> Result<Delivery, SendError> {
        Ok(Delivery {
            provider_id: Some(message.id),
            detail: Some(format!(
                "{} {} {}",
                message.content_type,
                message.subject.unwrap_or_default(),
                message.body
            )),
        })
    }
}

impl SelfTestGuest for Echo {
    fn self_test() -> Result<(), String> {
        Ok(())
    }
}

export!(Echo);
