//! Fuzz target: see `itwin_proxy_fuzz::rewrite_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| itwin_proxy_fuzz::rewrite_json(data));
