//! Tests of the requests operator commands build and the summaries they print.

use super::*;
use reqwest::Method;

fn activate_args(extra: impl FnOnce(&mut ActivateArgs)) -> ActivateArgs {
    let mut args = ActivateArgs {
        id: "acme".into(),
        sha: None,
        canary: None,
        max_error_rate: None,
        max_p99_ms: None,
        min_calls: None,
        shadow: false,
        approve: false,
        reason: None,
    };
    extra(&mut args);
    args
}

#[test]
fn a_plain_activation_sends_only_the_sha() {
    let call = activate_call(&activate_args(|_| {}), "ab12");
    assert_eq!(call.method, Method::POST);
    assert_eq!(call.path, "/v1/plugins/acme/activate");
    assert_eq!(call.body, Some(json!({"sha256": "ab12"})));
}

#[test]
fn a_canary_activation_carries_its_limits_approval_and_reason() {
    let args = activate_args(|a| {
        a.canary = Some(5.0);
        a.max_error_rate = Some(0.02);
        a.max_p99_ms = Some(50);
        a.approve = true;
        a.reason = Some("new field".into());
    });
    let call = activate_call(&args, "ab12");
    let want = json!({
        "sha256": "ab12", "approve": true, "reason": "new field",
        "canary": {"percent": 5.0, "max_error_rate": 0.02, "max_p99_ms": 50}
    });
    assert_eq!(call.body, Some(want));
    let shadow = activate_call(&activate_args(|a| a.shadow = true), "ab12");
    assert_eq!(shadow.body, Some(json!({"sha256": "ab12", "shadow": true})));
}

#[test]
fn actions_post_to_their_verb_with_an_optional_reason() {
    let args = |reason: Option<&str>| ActionArgs {
        id: "acme".into(),
        reason: reason.map(str::to_string),
    };
    for verb in ["promote", "abort", "rollback", "disable", "enable"] {
        let call = action_call(verb, &args(None));
        assert_eq!(call.path, format!("/v1/plugins/acme/{verb}"));
        assert_eq!((call.method, call.body), (Method::POST, None));
    }
    let call = action_call("rollback", &args(Some("bad deploy")));
    assert_eq!(call.body, Some(json!({"reason": "bad deploy"})));
}

#[test]
fn config_sets_exactly_the_pairs_given() {
    let pairs = ["secret=a=b", "retries:=3", "dry_run:=true", "empty="].map(String::from);
    let call = config_call("acme", &pairs).unwrap();
    assert_eq!(
        (call.method, call.path.as_str()),
        (Method::PUT, "/v1/plugins/acme/config")
    );
    let want = json!({"secret": "a=b", "retries": 3, "dry_run": true, "empty": ""});
    assert_eq!(call.body, Some(want));
    for bad in ["novalue", "=x", "n:=nope"] {
        assert!(config_call("acme", &[bad.to_string()]).is_err(), "{bad}");
    }
    let twice = ["a=1", "a=2"].map(String::from);
    assert!(
        config_call("acme", &twice)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
}

#[test]
fn reads_go_to_their_routes() {
    assert_eq!(audit_call(None, 20).path, "/v1/audit?limit=20");
    assert_eq!(
        audit_call(Some("acme"), 5).path,
        "/v1/audit?limit=5&plugin=acme"
    );
    assert_eq!(
        plugin_path("acme", "/failures/7"),
        "/v1/plugins/acme/failures/7"
    );
}

#[test]
fn the_default_version_is_the_newest_upload_and_prefixes_resolve() {
    let view = json!({"id": "acme", "versions": [
        {"sha256": "aaaa1111", "uploaded_at_ms": 2},
        {"sha256": "aaaa2222", "uploaded_at_ms": 3},
        {"sha256": "bbbb3333", "uploaded_at_ms": 1}
    ]});
    assert_eq!(resolve_sha(&view, None).unwrap(), "aaaa2222");
    assert_eq!(resolve_sha(&view, Some("BBBB")).unwrap(), "bbbb3333");
    assert!(
        resolve_sha(&view, Some("aaaa"))
            .unwrap_err()
            .to_string()
            .contains("matches 2")
    );
    assert!(resolve_sha(&view, Some("cc")).is_err());
    let empty = json!({"id": "acme", "versions": []});
    assert!(
        resolve_sha(&empty, None)
            .unwrap_err()
            .to_string()
            .contains("push one")
    );
}

#[test]
fn timestamps_are_utc() {
    assert_eq!(timestamp(0), "1970-01-01 00:00:00");
    assert_eq!(timestamp(1_700_000_000_123), "2023-11-14 22:13:20");
}
