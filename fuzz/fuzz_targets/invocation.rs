//! `glia_tests::fuzzing::invocation` under libFuzzer (see that function for what it checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| glia_tests::fuzzing::invocation(data));
