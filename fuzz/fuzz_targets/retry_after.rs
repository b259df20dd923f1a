//! Fuzz target: see `itwin_proxy_fuzz::retry_after`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| itwin_proxy_fuzz::retry_after(data));
