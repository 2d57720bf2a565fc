//! `glia_tests::fuzzing::http_antispam` under libFuzzer (see that function for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| glia_tests::fuzzing::http_antispam(data));
