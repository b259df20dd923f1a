//! The JSON body rewriter: one pass over the bytes that validates the whole document and
//! replaces the upstream origin in `_links` hrefs, copying everything else verbatim.

mod lex;

use lex::StrLit;

use super::LinkRewriter;

/// The deepest nesting of arrays and objects accepted: the same limit as `serde_json`, which
/// keeps the recursion shallow and lets `serde_json` read every body rewritten here (numbers
/// beyond `f64` aside).
const MAX_DEPTH: usize = 127;

/// The body is not valid JSON (or nests deeper than [`MAX_DEPTH`]).
#[derive(Debug, thiserror::Error)]
#[error("the body is not valid JSON")]
pub(super) struct InvalidJson;

/// The rewritten document, `Ok(None)` when it has nothing to rewrite.
pub(super) fn rewrite(rw: &LinkRewriter, body: &[u8]) -> Result<Option<Vec<u8>>, InvalidJson> {
    let mut scanner = Scanner {
        rw,
        buf: body,
        pos: lex::skip_ws(body, 0),
        out: None,
        copied: 0,
    };
    scanner.value(0, false)?;
    if lex::skip_ws(body, scanner.pos) != body.len() {
        return Err(InvalidJson);
    }
    Ok(scanner.out.map(|mut out| {
        out.extend_from_slice(body.get(scanner.copied..).unwrap_or_default());
        out
    }))
}

/// What an object member's key means to the rewriter.
enum Key {
    Links,
    Href,
    Other,
}

/// A recursive-descent reader that writes its output lazily: nothing is allocated until the
/// first href to rewrite, and then everything before it is copied at once.
struct Scanner<'a> {
    rw: &'a LinkRewriter,
    buf: &'a [u8],
    pos: usize,
    out: Option<Vec<u8>>,
    /// Input up to here is already in `out`.
    copied: usize,
}

impl Scanner<'_> {
    /// Reads the value at `pos`, inside `depth` containers; `in_links` when it lies within
    /// the value of a `_links` member.
    fn value(&mut self, depth: usize, in_links: bool) -> Result<(), InvalidJson> {
        self.pos = match self.buf.get(self.pos) {
            Some(b'{') => return self.object(depth + 1, in_links),
            Some(b'[') => return self.array(depth + 1, in_links),
            Some(b'"') => lex::string(self.buf, self.pos)?.end + 1,
            Some(b't') => lex::literal(self.buf, self.pos, b"true")?,
            Some(b'f') => lex::literal(self.buf, self.pos, b"false")?,
            Some(b'n') => lex::literal(self.buf, self.pos, b"null")?,
            Some(b'-' | b'0'..=b'9') => lex::number(self.buf, self.pos)?,
            _ => return Err(InvalidJson),
        };
        Ok(())
    }

    fn object(&mut self, depth: usize, in_links: bool) -> Result<(), InvalidJson> {
        if depth > MAX_DEPTH {
            return Err(InvalidJson);
        }
        self.pos = lex::skip_ws(self.buf, self.pos + 1);
        if self.buf.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if self.buf.get(self.pos) != Some(&b'"') {
                return Err(InvalidJson);
            }
            let key = lex::string(self.buf, self.pos)?;
            self.pos = lex::skip_ws(self.buf, key.end + 1);
            if self.buf.get(self.pos) != Some(&b':') {
                return Err(InvalidJson);
            }
            self.pos = lex::skip_ws(self.buf, self.pos + 1);
            match self.key(key) {
                Key::Href if in_links && self.buf.get(self.pos) == Some(&b'"') => self.href()?,
                Key::Links => self.value(depth, true)?,
                Key::Href | Key::Other => self.value(depth, in_links)?,
            }
            self.pos = lex::skip_ws(self.buf, self.pos);
            match self.buf.get(self.pos) {
                Some(b',') => self.pos = lex::skip_ws(self.buf, self.pos + 1),
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(InvalidJson),
            }
        }
    }

    fn array(&mut self, depth: usize, in_links: bool) -> Result<(), InvalidJson> {
        if depth > MAX_DEPTH {
            return Err(InvalidJson);
        }
        self.pos = lex::skip_ws(self.buf, self.pos + 1);
        if self.buf.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value(depth, in_links)?;
            self.pos = lex::skip_ws(self.buf, self.pos);
            match self.buf.get(self.pos) {
                Some(b',') => self.pos = lex::skip_ws(self.buf, self.pos + 1),
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(InvalidJson),
            }
        }
    }

    fn key(&self, key: StrLit) -> Key {
        let raw = self.buf.get(key.start..key.end).unwrap_or_default();
        let is = |name: &[u8]| match key.first_escape {
            None => raw == name,
            Some(_) => lex::escaped_eq(raw, name),
        };
        if is(b"href") {
            Key::Href
        } else if is(b"_links") {
            Key::Links
        } else {
            Key::Other
        }
    }

    /// Reads the string value of an `href` under `_links`, rewriting it when it starts with
    /// an upstream origin.
    fn href(&mut self) -> Result<(), InvalidJson> {
        let lit = lex::string(self.buf, self.pos)?;
        self.pos = lit.end + 1;
        let raw = self.buf.get(lit.start..lit.end).ok_or(InvalidJson)?;
        if let Some(n) = self.rw.match_len(raw)
            && lit.first_escape.is_none_or(|e| e >= lit.start + n)
        {
            // The origin is plain text: replace just it, keeping the rest's escapes.
            let rw = self.rw;
            self.replace(lit.start, lit.start + n, rw.public_json.as_bytes());
        } else if lit.first_escape.is_some() {
            let quoted = self.buf.get(lit.start - 1..self.pos).ok_or(InvalidJson)?;
            let decoded: String = serde_json::from_slice(quoted).map_err(|_| InvalidJson)?;
            if let Some(rewritten) = self.rw.rewrite_href(&decoded) {
                let encoded = serde_json::Value::String(rewritten).to_string();
                self.replace(lit.start - 1, self.pos, encoded.as_bytes());
            }
        }
        Ok(())
    }

    /// Emits the input up to `from`, then `with` in place of the input's `from..to`.
    fn replace(&mut self, from: usize, to: usize, with: &[u8]) {
        let buf = self.buf;
        let out = self
            .out
            .get_or_insert_with(|| Vec::with_capacity(buf.len() + buf.len() / 8));
        out.extend_from_slice(buf.get(self.copied..from).unwrap_or_default());
        out.extend_from_slice(with);
        self.copied = to;
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
