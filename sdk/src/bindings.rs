//! Generated bindings for contract `tessera:cx@0.2.0`, one module per plugin kind, plus the
//! 0.1 segment-rule export that [`crate::SegmentRule`] keeps building.
//!
//! The WIT comes from `sdk/wit/`, a copy of the repository's `wit/` folders that travels with
//! this crate (so it can be packaged and vendored); a host test keeps the two identical.
//!
//! Each kind's exports are generated from a small world that holds the kind's interface
//! alone, and `self-test` has a world of its own. The reason is the export macros:
//! `wit-bindgen` names an interface's export macro after the interface, so generating
//! `self-test` in three worlds of one crate would define the same `#[macro_export]` macro
//! three times. An `export_*!` macro of this crate combines the kind's export with the
//! shared `self-test` export, which yields exactly the exports of the contract's
//! `connector`, `segment-rule` or `channel` world.
//!
//! The connector module generates the shared types and the host imports; the others reuse
//! them through `with`, so every kind speaks the same Rust types.

#![allow(missing_docs, clippy::all)]

/// The `connector` interface plus the shared types and host imports.
pub mod connector {
    wit_bindgen::generate!({
        path: "wit/v0.2.0",
        inline: "
            package tessera:sdk;
            world connector-kind {
                include tessera:cx/host-imports@0.2.0;
                export tessera:cx/source@0.2.0;
            }
        ",
        world: "tessera:sdk/connector-kind",
        generate_all,
        generate_unused_types: true,
        additional_derives: [PartialEq],
        pub_export_macro: true,
        export_macro_name: "export_connector_kind",
        default_bindings_module: "tessera_sdk::bindings::connector",
        runtime_path: "tessera_sdk::__private::wit_bindgen::rt",
    });
}

/// The `segment-rule` interface (`rule`: `describe` and `evaluate`).
pub mod segment_rule {
    wit_bindgen::generate!({
        path: "wit/v0.2.0",
        inline: "
            package tessera:sdk;
            world segment-rule-kind {
                include tessera:cx/host-imports@0.2.0;
                export tessera:cx/rule@0.2.0;
            }
        ",
        world: "tessera:sdk/segment-rule-kind",
        with: {
            "tessera:cx/types@0.2.0": crate::bindings::connector::tessera::cx::types,
            "tessera:cx/log@0.2.0": crate::bindings::connector::tessera::cx::log,
            "tessera:cx/config@0.2.0": crate::bindings::connector::tessera::cx::config,
            "tessera:cx/kv@0.2.0": crate::bindings::connector::tessera::cx::kv,
        },
        pub_export_macro: true,
        export_macro_name: "export_segment_rule_kind",
        default_bindings_module: "tessera_sdk::bindings::segment_rule",
        runtime_path: "tessera_sdk::__private::wit_bindgen::rt",
    });
}

/// The `channel` interfaces (`sender` and `status`).
pub mod channel {
    wit_bindgen::generate!({
        path: "wit/v0.2.0",
        inline: "
            package tessera:sdk;
            world channel-kind {
                include tessera:cx/host-imports@0.2.0;
                export tessera:cx/sender@0.2.0;
                export tessera:cx/status@0.2.0;
            }
        ",
        world: "tessera:sdk/channel-kind",
        with: {
            "tessera:cx/types@0.2.0": crate::bindings::connector::tessera::cx::types,
            "tessera:cx/log@0.2.0": crate::bindings::connector::tessera::cx::log,
            "tessera:cx/config@0.2.0": crate::bindings::connector::tessera::cx::config,
            "tessera:cx/kv@0.2.0": crate::bindings::connector::tessera::cx::kv,
        },
        pub_export_macro: true,
        export_macro_name: "export_channel_kind",
        default_bindings_module: "tessera_sdk::bindings::channel",
        runtime_path: "tessera_sdk::__private::wit_bindgen::rt",
    });
}

/// The `self-test` interface every kind exports.
pub mod self_test {
    wit_bindgen::generate!({
        path: "wit/v0.2.0",
        inline: "
            package tessera:sdk;
            world self-test-kind {
                export tessera:cx/self-test@0.2.0;
            }
        ",
        world: "tessera:sdk/self-test-kind",
        pub_export_macro: true,
        export_macro_name: "export_self_test_kind",
        default_bindings_module: "tessera_sdk::bindings::self_test",
        runtime_path: "tessera_sdk::__private::wit_bindgen::rt",
    });
}

/// Contract 0.1's `rule` interface (`evaluate` answering bools), for rules written against
/// [`crate::SegmentRule`]. Its types are 0.1's own; the export converts them into this
/// crate's (0.2) types before the rule sees them.
pub mod rule_v0_1 {
    // WIT names cannot have a segment starting with a digit, hence `first` for 0.1.
    wit_bindgen::generate!({
        path: "wit/v0.1.0",
        inline: "
            package tessera:sdk;
            world segment-rule-first-kind {
                export tessera:cx/rule@0.1.0;
            }
        ",
        world: "tessera:sdk/segment-rule-first-kind",
        with: { "tessera:cx/types@0.1.0": generate },
        pub_export_macro: true,
        export_macro_name: "export_segment_rule_v0_1_kind",
        default_bindings_module: "tessera_sdk::bindings::rule_v0_1",
        runtime_path: "tessera_sdk::__private::wit_bindgen::rt",
    });
}

/// Contract 0.1's `self-test` interface, exported beside [`rule_v0_1`].
pub mod self_test_v0_1 {
    wit_bindgen::generate!({
        path: "wit/v0.1.0",
        inline: "
            package tessera:sdk;
            world self-test-first-kind {
                export tessera:cx/self-test@0.1.0;
            }
        ",
        world: "tessera:sdk/self-test-first-kind",
        pub_export_macro: true,
        export_macro_name: "export_self_test_v0_1_kind",
        default_bindings_module: "tessera_sdk::bindings::self_test_v0_1",
        runtime_path: "tessera_sdk::__private::wit_bindgen::rt",
    });
}
