//! Bounds-checked reading and big-endian writing of OpenFlow bytes.
//!
//! [`Reader`] is the only way the codec looks at untrusted bytes: every read checks the
//! remaining length first and returns [`Short`] instead of panicking, so no decoder can
//! index out of range. [`Put`] appends big-endian integers to a `Vec<u8>`. This module
//! knows nothing about message meanings and never allocates on the read side.

/// The input ended before a field did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Short;

/// A cursor over a byte slice whose reads never panic.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Takes the next `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Short> {
        if n > self.buf.len() {
            return Err(Short);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), Short> {
        self.bytes(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Short> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Short> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Short> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Short> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn mac(&mut self) -> Result<crate::flow::Mac, Short> {
        Ok(crate::flow::Mac(self.array()?))
    }
}

/// Big-endian appends.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_zeros(&mut self, n: usize);
    /// Overwrites a 16-bit length written earlier at `at` (saturating at `u16::MAX`;
    /// the caller rejects whole messages over 65535 bytes).
    fn patch_u16(&mut self, at: usize, v: usize);
    /// Pads with zeros to a multiple of 8 bytes counted from `start`.
    fn pad8(&mut self, start: usize);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
    fn patch_u16(&mut self, at: usize, v: usize) {
        let v = u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes();
        if let Some(slot) = self.get_mut(at..at + 2) {
            slot.copy_from_slice(&v);
        }
    }
    fn pad8(&mut self, start: usize) {
        let len = self.len().saturating_sub(start);
        self.put_zeros((8 - len % 8) % 8);
    }
}

/// A fixed-size, NUL-padded string field (port names, descriptions). Decoding stops
/// at the first NUL; bytes that are not UTF-8 become `?`, so the length never grows.
pub(crate) fn get_str(r: &mut Reader<'_>, n: usize) -> Result<String, Short> {
    let b = r.bytes(n)?;
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    let b = &b[..end];
    Ok(match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => b
            .iter()
            .map(|c| if c.is_ascii() { char::from(*c) } else { '?' })
            .collect(),
    })
}

/// Writes `s` into an `n`-byte NUL-padded field, cut at a character boundary.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str, n: usize) {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&s.as_bytes()[..end]);
    out.put_zeros(n - end);
}
