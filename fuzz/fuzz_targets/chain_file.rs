#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| keyd::fuzzing::chain_file(data));
