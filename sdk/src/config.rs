//! This plugin's operator-set configuration and secrets (read-only).

use serde_json::Value;

/// The value of `key`, or `None` when the operator did not set it. JSON strings come back
/// without quotes; other values come back as JSON text.
pub fn get(key: &str) -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::connector::tessera::cx::config::get(key)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::config_get(key)
    }
}

/// The whole configuration as a JSON object (an empty one if the host sent something else).
pub fn get_all() -> Value {
    #[cfg(target_arch = "wasm32")]
    let text = crate::bindings::connector::tessera::cx::config::get_all();
    #[cfg(not(target_arch = "wasm32"))]
    let text = crate::testing::config_get_all();
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Value::Object(map),
        _ => Value::Object(Default::default()),
    }
}

/// The value of `key`, or an error saying it is not set; an empty string counts as unset.
/// Made for `self_test`: `config::require("secret")?;`.
pub fn require(key: &str) -> Result<String, String> {
    match get(key) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("config key `{key}` is not set")),
    }
}

/// The value of `key` parsed as `T` (`None` when unset), or an error naming the key.
pub fn parse<T>(key: &str) -> Result<Option<T>, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match get(key) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| format!("config key `{key}` is invalid: {e}")),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::testing::Harness;

    #[test]
    fn require_treats_empty_as_unset() {
        let harness = Harness::new();
        harness.set_config("secret", "");
        assert_eq!(
            require("secret"),
            Err("config key `secret` is not set".to_string())
        );
        harness.set_config("secret", "x");
        assert_eq!(require("secret").as_deref(), Ok("x"));
    }

    #[test]
    fn parse_names_the_bad_key() {
        let harness = Harness::new();
        harness.set_config("timeout_ms", "soon");
        assert!(
            parse::<u64>("timeout_ms")
                .unwrap_err()
                .contains("timeout_ms")
        );
        harness.set_config("timeout_ms", 250);
        assert_eq!(parse::<u64>("timeout_ms"), Ok(Some(250)));
        assert_eq!(parse::<u64>("other"), Ok(None));
    }
}
