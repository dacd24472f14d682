#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyd::fuzzing::csr(data));
