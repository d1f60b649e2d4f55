#![allow(missing_docs)]
//! Host bindings generated from `wit/` (the one source of truth for the rule contract).

wasmtime::component::bindgen!({
    world: "rule",
    path: "../../wit",
    with: {
        "sluice:rules/types.message": crate::state::MessageRef,
    },
    imports: { default: trappable },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});
