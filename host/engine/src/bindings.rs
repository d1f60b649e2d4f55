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

/// An instantiated rule, as far as a message needs it: its `evaluate` export.
///
/// The generated `RulePre::instantiate` looks up and type-checks both exports again for
/// every instance (about 5% of a fresh step). [`crate::RulePlugin`] checked the component
/// against the world once, when it was loaded (`RulePre::new` type-checks the exports), and
/// keeps the export's index, so an instance only fetches the function.
pub(crate) struct RuleInstance {
    evaluate: wasmtime::component::Func,
}

impl RuleInstance {
    /// `func` must be the `evaluate` export of an instance of a component that
    /// `RulePre::new` accepted, which type-checked it against the world.
    pub(crate) fn new(func: wasmtime::component::Func) -> RuleInstance {
        RuleInstance { evaluate: func }
    }

    /// Calls `evaluate`.
    #[allow(unsafe_code)] // The one unsafe block of the host; see the SAFETY note.
    pub(crate) fn call_evaluate<S: wasmtime::AsContextMut>(
        &self,
        store: S,
        message: wasmtime::component::Resource<MessageRef>,
        ctx: &sluice::rules::types::Context,
    ) -> wasmtime::Result<Result<Vec<sluice::rules::types::Action>, sluice::rules::types::RuleError>>
    {
        // SAFETY: the signature is the world's `evaluate`, which `RulePre::new` checked the
        // component's export against (see `RuleInstance::new`).
        let typed = unsafe {
            wasmtime::component::TypedFunc::<
                (
                    wasmtime::component::Resource<MessageRef>,
                    &sluice::rules::types::Context,
                ),
                (Result<Vec<sluice::rules::types::Action>, sluice::rules::types::RuleError>,),
            >::new_unchecked(self.evaluate)
        };
        let (answer,) = typed.call(store, (message, ctx))?;
        Ok(answer)
    }
}
