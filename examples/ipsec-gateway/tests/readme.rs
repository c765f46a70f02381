//! The README's "Build your own appliance" code is `examples/appliance.rs` (compiled by `cargo
//! test`): the two copies must not drift, and the README copy stays within 40 lines.

#[test]
fn readme_appliance_is_the_compiled_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../../README.md")).unwrap();
    let section = readme.split("## Build your own appliance").nth(1).expect("README section");
    let block = section.split("```rust,ignore\n").nth(1).unwrap().split("```").next().unwrap();
    let example = std::fs::read_to_string(root.join("examples/appliance.rs")).unwrap();
    let code = example.split("// README-BEGIN\n").nth(1).unwrap().split("// README-END").next().unwrap();
    assert_eq!(block, code, "README and examples/appliance.rs differ");
    assert!(block.lines().count() <= 40, "{} lines", block.lines().count());
}
