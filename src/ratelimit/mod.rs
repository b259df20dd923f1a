//! TEMPORARY
#![allow(missing_docs, unused)]
use std::time::Duration;
use crate::config::RateLimitSettings;
#[derive(Debug)]
pub struct Budgets;
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BudgetKey(String);
#[derive(Debug, PartialEq, Eq)]
pub enum Admission { Immediate, Delayed(Duration) }
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection { pub retry_after: Duration, pub paused: bool }
impl Rejection { pub fn retry_after_secs(&self) -> u64 { 1 } }
impl Budgets {
    pub fn new(s: &RateLimitSettings) -> Self { Self }
    pub fn key_for(&self, c: Option<&str>) -> BudgetKey { BudgetKey(c.unwrap_or_default().into()) }
    pub async fn acquire(&self, k: &BudgetKey) -> Result<Admission, Rejection> { Ok(Admission::Immediate) }
    pub fn observe_response(&self, k: &BudgetKey, s: http::StatusCode, h: &http::HeaderMap, n: std::time::SystemTime) -> Option<Duration> { None }
}
