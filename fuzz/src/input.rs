//! Turning the first bytes of a fuzz input into parameters (which edit, which header, which
//! text), leaving the rest as the message or document under test.

/// Reads parameter bytes from the front of an input; the rest is the payload.
pub struct Params<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Params<'a> {
    /// The first `n` bytes of `data` are parameters; `None` when the input is shorter.
    pub fn split(data: &'a [u8], n: usize) -> Option<(Params<'a>, &'a [u8])> {
        (data.len() >= n).then(|| (Params { bytes: &data[..n], at: 0 }, &data[n..]))
    }

    /// The next parameter byte (0 once they are used up).
    pub fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// One of `choices`, picked by the next byte.
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.byte()) % choices.len()]
    }
}

/// A string taken from the payload (for parameters the fuzzer should shape itself): up to
/// `max` bytes starting at `from`, lossily decoded.
pub fn text_from(payload: &[u8], from: usize, max: usize) -> String {
    let start = from.min(payload.len());
    let end = (start + max).min(payload.len());
    String::from_utf8_lossy(&payload[start..end]).into_owned()
}
