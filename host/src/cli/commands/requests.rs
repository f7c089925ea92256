//! The admin API request each operator command sends, built from its arguments.

use super::*;

/// `/v1/plugins/{id}` and below.
pub(super) fn plugin_path(id: &str, rest: &str) -> String {
    format!("/v1/plugins/{id}{rest}")
}

/// `{"reason": ...}` when a reason is given; no body otherwise.
pub(super) fn reason_body(reason: Option<&str>) -> Option<Value> {
    reason.map(|r| json!({ "reason": r }))
}

/// `POST /v1/plugins/{id}/activate` for version `sha` with the options given.
pub(super) fn activate_call(args: &ActivateArgs, sha: &str) -> ApiCall {
    let mut body = Map::new();
    body.insert("sha256".into(), sha.into());
    if args.approve {
        body.insert("approve".into(), true.into());
    }
    if args.shadow {
        body.insert("shadow".into(), true.into());
    }
    if let Some(percent) = args.canary {
        let mut canary = json!({ "percent": percent });
        let limits = [
            ("max_error_rate", args.max_error_rate.map(Value::from)),
            ("max_p99_ms", args.max_p99_ms.map(Value::from)),
            ("min_calls", args.min_calls.map(Value::from)),
        ];
        for (key, value) in limits {
            if let Some(value) = value {
                canary[key] = value;
            }
        }
        body.insert("canary".into(), canary);
    }
    if let Some(reason) = &args.reason {
        body.insert("reason".into(), reason.as_str().into());
    }
    ApiCall::post(
        plugin_path(&args.id, "/activate"),
        Some(Value::Object(body)),
    )
}

/// `POST /v1/plugins/{id}/{verb}` (promote, abort, rollback, disable, enable).
pub(super) fn action_call(verb: &str, args: &ActionArgs) -> ApiCall {
    ApiCall::post(
        plugin_path(&args.id, &format!("/{verb}")),
        reason_body(args.reason.as_deref()),
    )
}

/// One `KEY=VALUE` (text) or `KEY:=JSON` pair.
pub(super) fn parse_pair(pair: &str) -> anyhow::Result<(String, Value)> {
    let (key, value) = pair
        .split_once('=')
        .with_context(|| format!("`{pair}` is not KEY=VALUE (or KEY:=JSON)"))?;
    let (key, value) = match key.strip_suffix(':') {
        Some(key) => {
            let value = serde_json::from_str(value)
                .with_context(|| format!("the value of `{key}:=` is not valid JSON"))?;
            (key, value)
        }
        None => (key, Value::String(value.to_string())),
    };
    anyhow::ensure!(!key.is_empty(), "`{pair}` has an empty key");
    Ok((key.to_string(), value))
}

/// `PUT /v1/plugins/{id}/config` with exactly the pairs given.
pub(super) fn config_call(id: &str, pairs: &[String]) -> anyhow::Result<ApiCall> {
    let mut config = Map::new();
    for pair in pairs {
        let (key, value) = parse_pair(pair)?;
        anyhow::ensure!(
            config.insert(key.clone(), value).is_none(),
            "`{key}` is given twice"
        );
    }
    Ok(ApiCall::put(
        plugin_path(id, "/config"),
        Value::Object(config),
    ))
}

/// `GET /v1/audit`, optionally for one plugin.
pub(super) fn audit_call(plugin: Option<&str>, limit: usize) -> ApiCall {
    let filter = plugin.map_or_else(String::new, |p| format!("&plugin={p}"));
    ApiCall::get(format!("/v1/audit?limit={limit}{filter}"))
}

/// The version `given` names (a sha256 or a unique prefix of one), or the newest upload.
pub(super) fn resolve_sha(view: &Value, given: Option<&str>) -> anyhow::Result<String> {
    let id = view["id"].as_str().unwrap_or("?");
    let versions = view["versions"].as_array().map_or(&[][..], Vec::as_slice);
    let sha = |v: &Value| v["sha256"].as_str().unwrap_or_default().to_string();
    let Some(given) = given else {
        return versions
            .iter()
            .max_by_key(|v| v["uploaded_at_ms"].as_u64().unwrap_or(0))
            .map(sha)
            .with_context(|| format!("`{id}` has no uploaded version; push one first"));
    };
    let matching: Vec<String> = versions
        .iter()
        .map(sha)
        .filter(|s| s.starts_with(&given.to_ascii_lowercase()))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("`{id}` has no version {given}; `tessera plugin list --json` shows them"),
        _ => bail!(
            "{given} matches {} versions of `{id}`; give more of the sha256",
            matching.len()
        ),
    }
}
