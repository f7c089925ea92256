//! The human-readable summaries operator commands print of the API's answers.

use super::*;

/// `2026-11-24 12:58:16` (UTC) for Unix milliseconds.
pub(super) fn timestamp(ms: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// The first 12 hex digits of a sha256, enough to tell versions apart and to pass back.
pub(super) fn short(sha: &Value) -> &str {
    let sha = sha.as_str().unwrap_or("-");
    &sha[..sha.len().min(12)]
}

pub(super) fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

/// A plugin's state after an action: live version and any rollout.
pub(super) fn print_plugin(view: &Value) {
    let live = match view["live_version"].as_str() {
        Some(version) => format!("{version} ({})", short(&view["live"])),
        None => "none".to_string(),
    };
    println!(
        "{}: {}, live version {live}",
        text(&view["id"]),
        text(&view["state"])
    );
    let rollout = &view["rollout"];
    if rollout.is_object() {
        let share = rollout["canary"]["percent"]
            .as_f64()
            .map_or_else(String::new, |p| format!(" on {p}% of calls"));
        println!(
            "  {}{share}: candidate {} ({}); end it with `tessera plugin promote` or `abort`",
            text(&rollout["mode"]),
            text(&rollout["candidate_version"]),
            short(&rollout["candidate"])
        );
    }
}

/// Microseconds as milliseconds with two decimals.
pub(super) fn millis(micros: &Value) -> String {
    micros
        .as_u64()
        .map_or_else(|| "-".into(), |m| format!("{:.2}", m as f64 / 1000.0))
}

/// One row of call figures: a version's stats or a rollout arm.
pub(super) fn print_figures(label: &str, figures: &Value) {
    if !figures.is_object() {
        println!("  {label:<22} not loaded in this process");
        return;
    }
    let errors = figures["errors"]
        .as_u64()
        .or_else(|| figures["failures"].as_u64())
        .unwrap_or(0);
    let fuel = figures["fuel_consumed"]
        .as_u64()
        .map_or_else(String::new, |f| format!(" fuel {f}"));
    println!(
        "  {label:<22} calls {:>8} errors {errors:>6} p50 {:>8} ms p99 {:>8} ms peak {:>6} KiB{fuel}",
        figures["calls"].as_u64().unwrap_or(0),
        millis(&figures["p50_micros"]),
        millis(&figures["p99_micros"]),
        figures["peak_memory_bytes"].as_u64().unwrap_or(0) / 1024,
    );
}

/// Both arms of a rollout.
pub(super) fn print_arms(rollout: &Value) {
    print_figures("live (during rollout)", &rollout["live"]);
    print_figures("candidate", &rollout["candidate_calls"]);
}

/// What a version asks for beyond the live one.
pub(super) fn print_review(review: &Value) {
    let changes = review["changes"].as_array().map_or(&[][..], Vec::as_slice);
    let baseline = if review["against"].is_null() {
        "the defaults (first version)"
    } else {
        "the live version"
    };
    if changes.is_empty() {
        println!("  review     nothing beyond {baseline}");
        return;
    }
    let approval = if review["needs_approval"].as_bool() == Some(true) {
        " (activate with --approve once you have read it)"
    } else {
        ""
    };
    println!("  review     asks for more than {baseline}{approval}:");
    for change in changes {
        println!("    - {}", text(change));
    }
}

/// Prints a call report under `label`.
pub(super) fn print_report(label: String) -> impl FnOnce(&Value) {
    move |report| println!("{}", sandbox::format_report(&label, report))
}
