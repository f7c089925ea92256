//! Test guest: a connector whose exports name `tessera:cx@0.9.0`, a contract version the host
//! does not serve, while its plugin.toml claims `0.1`. The host reads the version from the
//! exports and refuses the upload (`400 contract_mismatch`).

wit_bindgen::generate!({
    inline: "
        package tessera:cx@0.9.0;

        interface source {
            handle-webhook: func(body: list<u8>) -> result<list<string>, string>;
        }

        world connector {
            export source;
        }
    ",
    world: "tessera:cx/connector@0.9.0",
});

/// The connector.
struct Next;

impl exports::tessera::cx::source::Guest for Next {
    fn handle_webhook(body: Vec<u8>) -> Result<Vec<String>, String> {
        Ok(vec![String::from_utf8_lossy(&body).into_owned()])
    }
}

export!(Next);
