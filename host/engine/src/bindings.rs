#![allow(missing_docs)]
//! Host bindings generated from `wit/` (the one source of truth for the rule contract), and
//! the host types behind the `message` and `context` resources.
//!
//! Two tracks are loaded side by side: `0.1` (generated from the frozen
//! `wit/released/sluice-rules-0.1.5.wit`; a rule built against any 0.1.x links to it by
//! semver) at the top of this module, and `0.2` (today's `wit/rules.wit`) in [`v0_2`]. The
//! host works with the 0.1 Rust types everywhere: the 0.2 world keeps every record and
//! variant shape of 0.1.5, and the component model checks those types structurally, so a 0.2
//! rule's `evaluate` answer lifts straight into the 0.1 `Action` (see
//! [`RuleInstance::call_evaluate`]) and the 0.2 imports only convert a few small records.
//! 0.2.1 appended `replace-part` to `action`: a 0.2.1 rule's answer lifts into the 0.2.1 type
//! and is split into those same actions plus its replacements (`track02::split_actions`),
//! and a rule built against 0.2.0 is type-checked against the frozen 0.2.0 world
//! ([`v0_2_0`]).

use std::sync::Arc;

/// The host-side representation of a `message` resource handle (both tracks). (Spelled out:
/// the generated code defines its own `Message`.)
pub struct MessageRef(pub(crate) Arc<sluice_mail::Message>);

/// The host-side representation of a 0.2 `context` resource handle: the step's facts, shared
/// with the caller so a call copies nothing until the rule asks for a field.
pub struct ContextRef(pub(crate) Arc<sluice::rules::types::Context>);

wasmtime::component::bindgen!({
    world: "rule",
    path: "../../wit/released/sluice-rules-0.1.5.wit",
    with: {
        "sluice:rules/types.message": MessageRef,
    },
    imports: { default: trappable },
    additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
});

/// The `sluice:rules@0.2.x` world: the `context` record became a resource.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        world: "rule",
        path: "../../wit/rules.wit",
        with: {
            "sluice:rules/types.message": super::MessageRef,
            "sluice:rules/types.context": super::ContextRef,
        },
        imports: { default: trappable },
    });
}

/// The `sluice:rules@0.2.0` world, frozen: only to type-check the exports of rules built
/// against 0.2.0, whose `action` has no `replace-part` case (added in 0.2.1). Their imports
/// are served by [`v0_2`]'s (the linker serves an `@0.2.0` import with `@0.2.1` by semver).
pub mod v0_2_0 {
    wasmtime::component::bindgen!({
        world: "rule",
        path: "../../wit/released/sluice-rules-0.2.0.wit",
        with: {
            "sluice:rules/types.message": super::MessageRef,
            "sluice:rules/types.context": super::ContextRef,
        },
        imports: { default: trappable },
    });
}

/// Which version of the rule world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum WitTrack {
    /// `sluice:rules@0.1.x`: `evaluate` takes the context as a record.
    V0_1,
    /// `sluice:rules@0.2.x`: `evaluate` borrows a `context` resource.
    V0_2,
}

impl WitTrack {
    /// The track of a component with these import names. A 0.2 rule always imports
    /// `sluice:rules/types@0.2.*` (its `evaluate` names `message` and `context` from there).
    pub fn of_imports<'a>(mut imports: impl Iterator<Item = &'a str>) -> WitTrack {
        if imports.any(|name| name.starts_with("sluice:rules/types@0.2.")) {
            WitTrack::V0_2
        } else {
            WitTrack::V0_1
        }
    }

    /// `0.1` or `0.2`, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            WitTrack::V0_1 => "0.1",
            WitTrack::V0_2 => "0.2",
        }
    }
}

/// An instantiated rule, as far as a message needs it: its `evaluate` export.
///
/// The generated `RulePre::instantiate` looks up and type-checks both exports again for
/// every instance (about 5% of a fresh step). [`crate::RulePlugin`] checks the component
/// against its world once, when it is loaded, and `evaluate` against the Rust types here on
/// its first instance; it keeps the export's index, so an instance only fetches the function.
pub(crate) struct RuleInstance {
    evaluate: wasmtime::component::Func,
    track: WitTrack,
    /// The rule's `action` has the `replace-part` case (built against 0.2.1 or later).
    replace_part: bool,
}

/// A rule's valid-shaped answer in the host's types.
#[derive(Debug, Default)]
pub(crate) struct Answered {
    /// Every action but `replace-part`, in order.
    pub(crate) actions: Vec<Action>,
    /// Each `replace-part`, with its index in the rule's list.
    pub(crate) replacements: Vec<(usize, sluice_mail::PartReplacement)>,
}

impl From<Vec<Action>> for Answered {
    fn from(actions: Vec<Action>) -> Answered {
        Answered {
            actions,
            replacements: Vec::new(),
        }
    }
}

type Answer = wasmtime::Result<Result<Answered, RuleError>>;

/// What `evaluate` returns, as the 0.2.1 Rust types lift it.
type Answer021 = Result<Vec<v0_2::sluice::rules::types::Action>, RuleError>;

impl RuleInstance {
    /// `func` is the `evaluate` export of an instance of a component of `track`, whose
    /// `action` has the 0.2.1 `replace-part` case when `replace_part`; call
    /// [`RuleInstance::check_type`] before the first call for each component.
    pub(crate) fn new(
        func: wasmtime::component::Func,
        track: WitTrack,
        replace_part: bool,
    ) -> RuleInstance {
        RuleInstance {
            evaluate: func,
            track,
            replace_part,
        }
    }

    /// Calls `evaluate`. A 0.1 rule gets `ctx` lowered as a record; a 0.2 rule gets a borrowed
    /// `context` handle, pushed into the store's table for the call and removed after it.
    pub(crate) fn call_evaluate(
        &self,
        store: &mut wasmtime::Store<crate::state::StoreState>,
        message: wasmtime::component::Resource<MessageRef>,
        ctx: &Arc<Context>,
    ) -> Answer {
        match self.track {
            WitTrack::V0_1 => Ok(self.call_v0_1(store, message, ctx)?.map(Answered::from)),
            WitTrack::V0_2 => {
                let handle = store.data_mut().table.push(ContextRef(Arc::clone(ctx)))?;
                let borrowed =
                    wasmtime::component::Resource::<ContextRef>::new_borrow(handle.rep());
                let answer = if self.replace_part {
                    self.call_v0_2_1(&mut *store, message, borrowed)
                } else {
                    self.call_v0_2(&mut *store, message, borrowed)
                        .map(|a| a.map(Answered::from))
                };
                store.data_mut().table.delete(handle)?;
                answer
            }
        }
    }

    /// Type-checks the export against the Rust types [`RuleInstance::call_evaluate`] uses for
    /// its track. [`crate::RulePlugin`] does it on its first instance (a component's export
    /// type is the same in every instance), which is what makes the unchecked calls sound.
    pub(crate) fn check_type(&self, store: impl wasmtime::AsContext) -> wasmtime::Result<()> {
        use wasmtime::component::Resource;
        match self.track {
            WitTrack::V0_1 => {
                self.evaluate
                    .typed::<(Resource<MessageRef>, &Context), (Result<Vec<Action>, RuleError>,)>(
                        store,
                    )?;
            }
            WitTrack::V0_2 if self.replace_part => {
                self.evaluate
                    .typed::<(Resource<MessageRef>, Resource<ContextRef>), (Answer021,)>(store)?;
            }
            WitTrack::V0_2 => {
                self.evaluate.typed::<
                    (Resource<MessageRef>, Resource<ContextRef>),
                    (Result<Vec<Action>, RuleError>,),
                >(store)?;
            }
        }
        Ok(())
    }

    #[allow(unsafe_code)] // See the SAFETY note.
    fn call_v0_1<S: wasmtime::AsContextMut>(
        &self,
        store: S,
        message: wasmtime::component::Resource<MessageRef>,
        ctx: &Context,
    ) -> wasmtime::Result<Result<Vec<Action>, RuleError>> {
        // SAFETY: `check_type` checked the export against exactly these types on the
        // plugin's first instance (see `RulePlugin::instantiate`).
        let typed = unsafe {
            wasmtime::component::TypedFunc::<
                (wasmtime::component::Resource<MessageRef>, &Context),
                (Result<Vec<Action>, RuleError>,),
            >::new_unchecked(self.evaluate)
        };
        let (answer,) = typed.call(store, (message, ctx))?;
        Ok(answer)
    }

    #[allow(unsafe_code)] // See the SAFETY note.
    fn call_v0_2<S: wasmtime::AsContextMut>(
        &self,
        store: S,
        message: wasmtime::component::Resource<MessageRef>,
        ctx: wasmtime::component::Resource<ContextRef>,
    ) -> wasmtime::Result<Result<Vec<Action>, RuleError>> {
        // SAFETY: `check_type` checked the export against exactly these types on the
        // plugin's first instance (see `RulePlugin::instantiate`). The result names 0.2's
        // `action` and `rule-error`; they have the cases, fields and payloads of 0.1.5's, and
        // component types are structural, so the 0.1 Rust types lift them.
        let typed = unsafe {
            wasmtime::component::TypedFunc::<
                (
                    wasmtime::component::Resource<MessageRef>,
                    wasmtime::component::Resource<ContextRef>,
                ),
                (Result<Vec<Action>, RuleError>,),
            >::new_unchecked(self.evaluate)
        };
        let (answer,) = typed.call(store, (message, ctx))?;
        Ok(answer)
    }

    #[allow(unsafe_code)] // See the SAFETY note.
    fn call_v0_2_1<S: wasmtime::AsContextMut>(
        &self,
        store: S,
        message: wasmtime::component::Resource<MessageRef>,
        ctx: wasmtime::component::Resource<ContextRef>,
    ) -> Answer {
        // SAFETY: `check_type` checked the export against exactly these types on the
        // plugin's first instance (see `RulePlugin::instantiate`). The 0.2.1 `action` has
        // one case more than 0.1.5's, so it lifts into its own Rust type and is split here.
        let typed = unsafe {
            wasmtime::component::TypedFunc::<
                (
                    wasmtime::component::Resource<MessageRef>,
                    wasmtime::component::Resource<ContextRef>,
                ),
                (Answer021,),
            >::new_unchecked(self.evaluate)
        };
        let (answer,) = typed.call(store, (message, ctx))?;
        Ok(answer.map(crate::track02::split_actions))
    }
}
