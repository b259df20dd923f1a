//! Cost of taking an upstream permit: one budget uncontended, and spread over many clients.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use itwin_proxy::config::{RateLimitKey, RateLimitSettings};
use itwin_proxy::ratelimit::{BudgetKey, Budgets, Caller};

const CLIENTS: usize = 10_000;

/// A rate no benchmark loop can spend.
fn unlimited() -> RateLimitSettings {
    RateLimitSettings {
        requests_per_second: 1e9,
        burst: u32::MAX,
        requests_per_hour: None,
        max_wait: Duration::from_secs(1),
        max_pause: Duration::from_secs(60),
        key: RateLimitKey::ClientId,
        unverified_per_second: 1e9,
        unverified_burst: u32::MAX,
    }
}

fn one_key(c: &mut Criterion) {
    let budgets = Budgets::new(&unlimited());
    let key = budgets.key_for(Caller::Trusted(Some("app")));
    c.bench_function("try_acquire/one_key", |b| {
        b.iter(|| black_box(budgets.try_acquire(black_box(&key)).now_or_never()));
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build();
    let Ok(runtime) = runtime else {
        return;
    };
    c.bench_function("acquire/one_key", |b| {
        b.to_async(&runtime)
            .iter(|| async { black_box(budgets.acquire(black_box(&key)).await) });
    });
}

fn many_keys(c: &mut Criterion) {
    let budgets = Budgets::new(&unlimited());
    let keys: Vec<BudgetKey> = (0..CLIENTS)
        .map(|id| budgets.key_for(Caller::Trusted(Some(&format!("client-{id}")))))
        .collect();
    for key in &keys {
        let _ = budgets.try_acquire(key).now_or_never();
    }
    assert_eq!(budgets.len(), CLIENTS);
    let mut next = keys.iter().cycle();
    c.bench_function("try_acquire/10k_clients", |b| {
        b.iter(|| {
            black_box(
                next.next()
                    .map(|key| budgets.try_acquire(key).now_or_never()),
            )
        });
    });
    c.bench_function("key_for_and_try_acquire/10k_clients", |b| {
        let mut id = 0;
        b.iter(|| {
            id = (id + 1) % CLIENTS;
            let key = budgets.key_for(Caller::Trusted(Some(&format!("client-{id}"))));
            black_box(budgets.try_acquire(&key).now_or_never())
        });
    });
}

criterion_group!(benches, one_key, many_keys);
criterion_main!(benches);
