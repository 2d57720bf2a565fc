//! The committed fuzz corpus (`fuzz/corpus/<target>/*`), replayed through the fuzz targets'
//! own bodies (`glia_tests::fuzzing`) on stable Rust: every input that once passed must pass
//! still, without cargo-fuzz or a nightly compiler. Fuzzing itself: docs/fuzzing.md.

use std::path::Path;

#[test]
fn the_fuzz_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, target) in glia_tests::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for target {name} at {}: {e}", dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .collect();
        inputs.sort();
        assert!(
            inputs.len() >= 10,
            "the corpus of {name} has {} inputs; it should seed every shape the target takes",
            inputs.len()
        );
        for input in inputs {
            let data = std::fs::read(&input).expect("read a corpus input");
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                panic!("fuzz target {name} fails on {}", input.display());
            }
        }
    }
}
