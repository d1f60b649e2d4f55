#![allow(missing_docs)]
//! Host bindings generated from `wit/` (the one source of truth for the rule contract), and
//! the host type behind the `message` resource.

use std::sync::Arc;

/// The host-side representation of a `message` resource handle. (Spelled out: the generated
/// code defines its own `Message`.)
pub struct MessageRef(pub(crate) Arc<sluice_mail::Message>);

wasmtime::component::bindgen!({
    world: "rule",
    path: "../../wit",
    with: {
        "sluice:rules/types.message": MessageRef,
    },
    imports: { default: trappable },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});
