//! Reading the outcome of a daemon run from moto: what SES "sent" (envelope destinations,
//! the message each send carried), what a bucket holds, how deep a queue is. Shared by the
//! crash and fault tests.

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use sluice_aws::{Sqs, S3};

/// The message id of a relayed copy: the `<ID@sender.example>` of its Message-ID header.
pub fn sent_message_id(raw: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("message-id") {
            return None;
        }
        let value = value.trim().strip_prefix('<')?;
        let (local, domain) = value.split_once('@')?;
        (domain.trim_end_matches('>') == "sender.example").then(|| local.to_string())
    })
}

/// The addresses of a message's To, Cc and Bcc headers (lower-cased), in order.
pub fn header_addresses(raw: &str) -> Vec<String> {
    let head = raw.split("\r\n\r\n").next().unwrap_or(raw);
    // Unfold, then take each field.
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let mut out = Vec::new();
    for name in ["to", "cc", "bcc"] {
        for line in unfolded.lines() {
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            if !field.trim().eq_ignore_ascii_case(name) {
                continue;
            }
            out.extend(value.split(',').filter_map(address_of));
        }
    }
    out
}

/// `Name <a@b>` or `a@b` -> `a@b`, lower-cased.
pub fn address_of(text: &str) -> Option<String> {
    let text = text.trim();
    let addr = match (text.rfind('<'), text.rfind('>')) {
        (Some(open), Some(close)) if open < close => &text[open + 1..close],
        _ => text,
    };
    addr.contains('@').then(|| addr.trim().to_lowercase())
}

/// The envelope destinations of one of moto's `RawMessage`s. moto appends the addresses of
/// the raw message's To, Cc and Bcc headers to the destinations it was given; those are cut
/// off here (checked, not assumed), so only real sends are counted.
pub fn envelope_destinations(m: &serde_json::Value) -> Result<Vec<String>, String> {
    let raw = m["raw_data"].as_str().unwrap_or_default();
    let dests: Vec<String> = m["destinations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().and_then(address_of))
                .collect()
        })
        .unwrap_or_default();
    let headers = header_addresses(raw);
    let cut = dests.len().checked_sub(headers.len());
    match cut {
        Some(cut) if dests[cut..] == headers[..] => Ok(dests[..cut].to_vec()),
        _ => Err(format!(
            "moto's destinations {dests:?} do not end with the header addresses {headers:?}"
        )),
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Depth {
    pub visible: usize,
    pub in_flight: usize,
    pub delayed: usize,
}

impl Depth {
    pub fn total(&self) -> usize {
        self.visible + self.in_flight + self.delayed
    }
}

pub fn depth(rt: &tokio::runtime::Runtime, sqs: &Sqs, queue: &str) -> Depth {
    let out = rt
        .block_on(
            sqs.client()
                .get_queue_attributes()
                .queue_url(queue)
                .attribute_names(Attr::ApproximateNumberOfMessages)
                .attribute_names(Attr::ApproximateNumberOfMessagesNotVisible)
                .attribute_names(Attr::ApproximateNumberOfMessagesDelayed)
                .send(),
        )
        .unwrap();
    let attrs = out.attributes.unwrap_or_default();
    let get = |k: Attr| {
        attrs
            .get(&k)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    Depth {
        visible: get(Attr::ApproximateNumberOfMessages),
        in_flight: get(Attr::ApproximateNumberOfMessagesNotVisible),
        delayed: get(Attr::ApproximateNumberOfMessagesDelayed),
    }
}

/// Every key in a bucket.
pub fn list_keys(rt: &tokio::runtime::Runtime, s3: &S3, bucket: &str) -> Vec<String> {
    rt.block_on(async {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = s3
                .client()
                .list_objects_v2()
                .bucket(bucket)
                .set_continuation_token(token.take())
                .send()
                .await
                .unwrap_or_else(|e| panic!("listing s3://{bucket}: {e:?}"));
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys
    })
}
