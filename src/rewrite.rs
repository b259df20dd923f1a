//! TEMPORARY
#![allow(missing_docs, unused)]
#[derive(Debug, Clone)]
pub struct LinkRewriter { from: String, to: String }
impl LinkRewriter {
    pub fn new(o: &[url::Url], p: &url::Url) -> Self { Self { from: o[0].as_str().trim_end_matches('/').into(), to: p.as_str().trim_end_matches('/').into() } }
    pub fn rewrite_href(&self, h: &str) -> Option<String> { h.strip_prefix(&self.from).map(|r| format!("{}{}", self.to, r)) }
    pub fn rewrite_link_header(&self, v: &str) -> Option<String> { None }
    pub fn rewrite_json(&self, b: &[u8]) -> Option<Vec<u8>> { let s = std::str::from_utf8(b).ok()?; Some(s.replace(&format!("\"{}", self.from), &format!("\"{}", self.to)).into_bytes()) }
}
