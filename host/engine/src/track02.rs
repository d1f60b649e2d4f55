//! The host side of the `sluice:rules@0.2` world: the `context` resource, and the 0.2 imports,
//! which do what their 0.1 twins in `state`, `flow`, `lookup` and `http` do (the records have
//! the same shapes; only the Rust types differ, because each track has its own bindings).

use wasmtime::component::Resource;

use crate::bindings::sluice::rules as v1;
use crate::bindings::v0_2::sluice::rules as v2;
use crate::bindings::{ContextRef, MessageRef};
use crate::state::StoreState;

impl StoreState {
    fn context_of(&self, ctx: &Resource<ContextRef>) -> wasmtime::Result<&v1::types::Context> {
        Ok(&self.table.get(ctx)?.0)
    }
}

impl v2::types::HostContext for StoreState {
    fn domain(&mut self, ctx: Resource<ContextRef>) -> wasmtime::Result<String> {
        self.context_reads.domain += 1;
        Ok(self.context_of(&ctx)?.domain.clone())
    }

    fn recipients(&mut self, ctx: Resource<ContextRef>) -> wasmtime::Result<Vec<String>> {
        self.context_reads.recipients += 1;
        Ok(self.context_of(&ctx)?.recipients.clone())
    }

    fn mail_from(&mut self, ctx: Resource<ContextRef>) -> wasmtime::Result<String> {
        self.context_reads.mail_from += 1;
        Ok(self.context_of(&ctx)?.mail_from.clone())
    }

    fn verdicts(&mut self, ctx: Resource<ContextRef>) -> wasmtime::Result<v2::types::Verdicts> {
        self.context_reads.verdicts += 1;
        let v = &self.context_of(&ctx)?.verdicts;
        Ok(v2::types::Verdicts {
            spf: verdict(v.spf),
            dkim: verdict(v.dkim),
            dmarc: verdict(v.dmarc),
            spam: verdict(v.spam),
            virus: verdict(v.virus),
            dmarc_policy: v.dmarc_policy.clone(),
        })
    }

    fn received_at(&mut self, ctx: Resource<ContextRef>) -> wasmtime::Result<u64> {
        self.context_reads.received_at += 1;
        Ok(self.context_of(&ctx)?.received_at)
    }

    fn message_id(&mut self, ctx: Resource<ContextRef>) -> wasmtime::Result<String> {
        self.context_reads.message_id += 1;
        Ok(self.context_of(&ctx)?.message_id.clone())
    }

    fn config(&mut self, ctx: Resource<ContextRef>) -> wasmtime::Result<String> {
        self.context_reads.config += 1;
        Ok(self.context_of(&ctx)?.config.clone())
    }

    fn drop(&mut self, ctx: Resource<ContextRef>) -> wasmtime::Result<()> {
        // Only borrowed handles are ever given out; the host removes the entry after the call.
        let _ = ctx;
        Ok(())
    }
}

fn verdict(v: v1::types::Verdict) -> v2::types::Verdict {
    use v1::types::Verdict as A;
    use v2::types::Verdict as B;
    match v {
        A::Pass => B::Pass,
        A::Fail => B::Fail,
        A::Gray => B::Gray,
        A::ProcessingFailed => B::ProcessingFailed,
        A::Disabled => B::Disabled,
        A::Unknown => B::Unknown,
    }
}

fn rule_error(e: v1::types::RuleError) -> v2::types::RuleError {
    v2::types::RuleError {
        message: e.message,
        temporary: e.temporary,
    }
}

fn bounce(b: v2::types::Bounce) -> v1::types::Bounce {
    v1::types::Bounce {
        code: b.code,
        status: b.status,
        text: b.text,
    }
}

impl v2::types::HostMessage for StoreState {
    fn header(&mut self, msg: Resource<MessageRef>, name: String) -> wasmtime::Result<Vec<String>> {
        v1::types::HostMessage::header(self, msg, name)
    }

    fn headers(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Vec<(String, String)>> {
        v1::types::HostMessage::headers(self, msg)
    }

    fn header_names(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Vec<String>> {
        v1::types::HostMessage::header_names(self, msg)
    }

    fn subject(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Option<String>> {
        v1::types::HostMessage::subject(self, msg)
    }

    fn from(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Option<String>> {
        v1::types::HostMessage::from(self, msg)
    }

    fn from_name(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Option<String>> {
        v1::types::HostMessage::from_name(self, msg)
    }

    fn size(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<u64> {
        v1::types::HostMessage::size(self, msg)
    }

    fn text_body(
        &mut self,
        msg: Resource<MessageRef>,
        max_bytes: u32,
    ) -> wasmtime::Result<Option<String>> {
        v1::types::HostMessage::text_body(self, msg, max_bytes)
    }

    fn html_body(
        &mut self,
        msg: Resource<MessageRef>,
        max_bytes: u32,
    ) -> wasmtime::Result<Option<String>> {
        v1::types::HostMessage::html_body(self, msg, max_bytes)
    }

    fn attachments(
        &mut self,
        msg: Resource<MessageRef>,
    ) -> wasmtime::Result<Vec<v2::types::AttachmentInfo>> {
        Ok(v1::types::HostMessage::attachments(self, msg)?
            .into_iter()
            .map(|a| v2::types::AttachmentInfo {
                name: a.name,
                content_type: a.content_type,
                size: a.size,
            })
            .collect())
    }

    fn parts(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Vec<v2::types::PartInfo>> {
        Ok(self
            .table
            .get(&msg)?
            .0
            .parts()
            .into_iter()
            .map(|p| v2::types::PartInfo {
                id: p.id,
                name: p.name,
                content_type: p.content_type,
                size: p.size,
                disposition: p.disposition,
                sniffed: p.sniffed.map(str::to_owned),
                archive: p.archive.map(|a| v2::types::ArchiveInfo {
                    names: a.names,
                    encrypted: a.encrypted,
                    complete: a.complete,
                }),
            })
            .collect())
    }

    fn raw(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<Vec<u8>> {
        v1::types::HostMessage::raw(self, msg)
    }

    fn drop(&mut self, msg: Resource<MessageRef>) -> wasmtime::Result<()> {
        v1::types::HostMessage::drop(self, msg)
    }
}

impl v2::types::Host for StoreState {}

impl v2::host::Host for StoreState {
    fn log(&mut self, level: v2::types::Level, msg: String) -> wasmtime::Result<()> {
        use v1::types::Level as A;
        use v2::types::Level as B;
        let level = match level {
            B::Trace => A::Trace,
            B::Debug => A::Debug,
            B::Info => A::Info,
            B::Warn => A::Warn,
            B::Error => A::Error,
        };
        v1::host::Host::log(self, level, msg)
    }
}

impl v2::recipients::Host for StoreState {
    fn refuse(&mut self, recipient: String, b: v2::types::Bounce) -> wasmtime::Result<()> {
        v1::recipients::Host::refuse(self, recipient, bounce(b))
    }

    fn discard(&mut self, recipient: String) -> wasmtime::Result<()> {
        v1::recipients::Host::discard(self, recipient)
    }

    fn forward(&mut self, r: v2::recipients::ForwardRequest) -> wasmtime::Result<()> {
        let request = v1::recipients::ForwardRequest {
            to: r.to,
            from: r.from,
            subject_prefix: r.subject_prefix,
            redirect: r.redirect,
        };
        v1::recipients::Host::forward(self, request)
    }
}

impl v2::lookup::Host for StoreState {
    fn get(
        &mut self,
        table: String,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, v2::types::RuleError>> {
        Ok(v1::lookup::Host::get(self, table, key)?.map_err(rule_error))
    }
}

impl v2::http::Host for StoreState {
    fn send(
        &mut self,
        req: v2::http::Request,
    ) -> wasmtime::Result<Result<v2::http::Response, v2::types::RuleError>> {
        let req = v1::http::Request {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
        };
        Ok(v1::http::Host::send(self, req)?
            .map(|r| v2::http::Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
            .map_err(rule_error))
    }
}

impl v2::flow::Host for StoreState {
    fn message_direction(&mut self) -> wasmtime::Result<v2::flow::Direction> {
        Ok(match v1::flow::Host::message_direction(self)? {
            v1::flow::Direction::Inbound => v2::flow::Direction::Inbound,
            v1::flow::Direction::Outbound => v2::flow::Direction::Outbound,
        })
    }

    fn authenticated_sender(&mut self) -> wasmtime::Result<Option<String>> {
        v1::flow::Host::authenticated_sender(self)
    }
}

/// A 0.2.1 rule's answer in the host's types: the actions 0.1.5 has as [`v1::types::Action`],
/// and each `replace-part` (0.2.1 only) with its position in the rule's list, so an invalid
/// one is reported by the index the rule used.
pub(crate) fn split_actions(list: Vec<v2::types::Action>) -> crate::bindings::Answered {
    use v1::types::Action as B;
    use v2::types::Action as A;
    let header = |h: v2::types::Header| v1::types::Header {
        name: h.name,
        value: h.value,
    };
    let mut answered = crate::bindings::Answered {
        actions: Vec::with_capacity(list.len()),
        replacements: Vec::new(),
    };
    for (index, action) in list.into_iter().enumerate() {
        answered.actions.push(match action {
            A::AddHeader(h) => B::AddHeader(header(h)),
            A::SetHeader(h) => B::SetHeader(header(h)),
            A::RemoveHeader(name) => B::RemoveHeader(name),
            A::PrefixSubject(prefix) => B::PrefixSubject(prefix),
            A::AddBanner(b) => B::AddBanner(v1::types::Banner {
                text: b.text,
                html: b.html,
                position: match b.position {
                    v2::types::Position::Top => v1::types::Position::Top,
                    v2::types::Position::Bottom => v1::types::Position::Bottom,
                },
            }),
            A::SetRecipients(list) => B::SetRecipients(list),
            A::AddRecipients(list) => B::AddRecipients(list),
            A::FileInto(folder) => B::FileInto(folder),
            A::Bounce(b) => B::Bounce(bounce(b)),
            A::Drop => B::Drop,
            A::Stop => B::Stop,
            A::ReplacePart(r) => {
                answered.replacements.push((
                    index,
                    sluice_mail::PartReplacement {
                        id: r.id,
                        text: r.text,
                    },
                ));
                continue;
            }
        });
    }
    answered
}

impl v2::reply::Host for StoreState {
    fn send(
        &mut self,
        req: v2::reply::ReplyRequest,
    ) -> wasmtime::Result<Result<(), v2::types::RuleError>> {
        let asked = crate::reply::ReplyRequest {
            recipient: req.recipient,
            text: req.text,
            subject: req.subject,
            once_per_days: req.once_per_days,
        };
        Ok(self.reply(asked)?.map_err(rule_error))
    }
}
