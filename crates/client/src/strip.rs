//! Executables are shipped without names (P6.3): before an executable element leaves the
//! client, every custom section (the `name` section, `producers`, `target_features`, DWARF
//! `.debug_*`, anything else) is removed, so that the engines that run it learn nothing about
//! the client's project from function names, source paths or tool versions. What remains is
//! the module's code and data, section by section as they were.

use wasm_encoder::RawSection;
use wasmparser::{Encoding, Parser, Payload, Validator, WasmFeatures};

/// Bytes that are not a WebAssembly module the client can ship.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidModule(String);

/// `bytes` without any custom section, every other section kept in order and byte for byte
/// (only the section sizes are re-encoded in their shortest form, so stripping twice gives the
/// same bytes as stripping once). Refuses what is not a valid core WebAssembly module (with
/// every proposal allowed: the engine decides which it supports), including components.
pub fn strip_executable(bytes: &[u8]) -> Result<Vec<u8>, InvalidModule> {
    let mut module = wasm_encoder::Module::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| InvalidModule(format!("not a valid WebAssembly module: {e}")))?;
        match payload {
            Payload::Version { encoding: Encoding::Component, .. } => {
                return Err(InvalidModule("a WebAssembly component, not a core module".into()));
            }
            Payload::CustomSection(_) => {}
            Payload::End(_) => break,
            other => {
                if let Some((id, range)) = other.as_section() {
                    module.section(&RawSection { id, data: &bytes[range] });
                }
            }
        }
    }
    let stripped = module.finish();
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(&stripped)
        .map_err(|e| InvalidModule(format!("not a valid WebAssembly module: {e}")))?;
    Ok(stripped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;
    use wasm_encoder::{
        CodeSection, ConstExpr, CustomSection, DataSection, ExportKind, ExportSection, Function, FunctionSection,
        MemorySection, MemoryType, Module, NameMap, NameSection, TypeSection,
    };

    fn custom(name: &str, data: &[u8]) -> CustomSection<'static> {
        CustomSection { name: Cow::Owned(name.to_string()), data: Cow::Owned(data.to_vec()) }
    }

    /// A small module with a custom section between its sections and more at the end,
    /// as toolchains emit them.
    fn module_with_custom_sections() -> Vec<u8> {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        module.section(&types);
        module.section(&custom("secret-in-the-middle", b"project alpha"));
        let mut functions = FunctionSection::new();
        functions.function(0);
        module.section(&functions);
        let mut memories = MemorySection::new();
        memories.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
        module.section(&memories);
        let mut exports = ExportSection::new();
        exports.export("_start", ExportKind::Func, 0).export("memory", ExportKind::Memory, 0);
        module.section(&exports);
        let mut code = CodeSection::new();
        let mut body = Function::new([]);
        body.instructions().end();
        code.function(&body);
        module.section(&code);
        let mut data = DataSection::new();
        data.active(0, &ConstExpr::i32_const(16), b"task data".iter().copied());
        module.section(&data);
        let mut names = NameSection::new();
        names.module("secret_module");
        let mut functions = NameMap::new();
        functions.append(0, "secret_function_name");
        names.functions(&functions);
        module.section(&names);
        module.section(&custom("producers", b"\x01\x0cprocessed-by\x01\x05rustc\x061.95.0"));
        module.section(&custom("target_features", b"\x01\x2b\x0bbulk-memory"));
        module.section(&custom(".debug_info", b"/home/alice/secret-project/src/main.rs"));
        module.finish()
    }

    /// (id, contents) of every section, custom sections named.
    fn sections(bytes: &[u8]) -> Vec<(u8, Vec<u8>, Option<String>)> {
        Parser::new(0)
            .parse_all(bytes)
            .map(|p| p.unwrap())
            .filter_map(|p| {
                let name = match &p {
                    Payload::CustomSection(c) => Some(c.name().to_string()),
                    _ => None,
                };
                p.as_section().map(|(id, range)| (id, bytes[range].to_vec(), name))
            })
            .collect()
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn custom_sections_go_and_everything_else_stays() {
        let original = module_with_custom_sections();
        Validator::new().validate_all(&original).expect("the test module is valid");
        let before = sections(&original);
        let custom_names: Vec<_> = before.iter().filter_map(|(_, _, n)| n.clone()).collect();
        assert_eq!(custom_names, ["secret-in-the-middle", "name", "producers", "target_features", ".debug_info"]);

        let stripped = strip_executable(&original).unwrap();
        assert!(stripped.starts_with(b"\0asm\x01\0\0\0"), "the header and version are kept");
        Validator::new().validate_all(&stripped).expect("the stripped module still validates");
        let after = sections(&stripped);
        assert!(after.iter().all(|(id, _, name)| *id != 0 && name.is_none()), "{after:?}");
        let kept: Vec<_> = before.into_iter().filter(|(id, _, _)| *id != 0).collect();
        assert_eq!(after, kept, "every other section, in order, with the same contents");
        for secret in [
            &b"secret_function_name"[..],
            b"secret_module",
            b"secret-project",
            b"project alpha",
            b"rustc",
            b"bulk-memory",
        ] {
            assert!(!contains(&stripped, secret), "{} survived", String::from_utf8_lossy(secret));
        }
        assert!(
            contains(&stripped, b"task data") && contains(&stripped, b"_start"),
            "data and exports are not custom sections"
        );
    }

    #[test]
    fn names_from_text_format_go_too() {
        let original = wat::parse_str(
            r#"(module $secret_module
                 (import "wasi_snapshot_preview1" "proc_exit" (func $secret_exit (param i32)))
                 (memory (export "memory") 1)
                 (func $secret_entry (export "_start") (local $secret_local i32)
                   (call $secret_exit (local.get $secret_local))))"#,
        )
        .unwrap();
        assert!(
            sections(&original).iter().any(|(_, _, name)| name.as_deref() == Some("name")),
            "wat emits a name section"
        );
        let stripped = strip_executable(&original).unwrap();
        assert!(!contains(&stripped, b"secret"), "no name of the text survives");
        assert!(
            contains(&stripped, b"proc_exit") && contains(&stripped, b"_start"),
            "imports and exports are needed to run"
        );
        Validator::new().validate_all(&stripped).unwrap();
    }

    #[test]
    fn stripping_is_idempotent() {
        let once = strip_executable(&module_with_custom_sections()).unwrap();
        assert_eq!(strip_executable(&once).unwrap(), once);
        let plain = wat::parse_str("(module (func (export \"_start\")))").unwrap();
        assert_eq!(strip_executable(&plain).unwrap(), plain, "a module without custom sections is unchanged");
    }

    #[test]
    fn what_is_not_a_module_is_refused() {
        let module = module_with_custom_sections();
        let refused = |bytes: &[u8]| strip_executable(bytes).expect_err("refused").to_string();
        assert!(refused(b"#!/bin/sh\necho hello\n").contains("not a valid WebAssembly module"));
        assert!(refused(b"").contains("not a valid WebAssembly module"));
        assert!(refused(&module[..module.len() / 2]).contains("not a valid WebAssembly module"), "truncated");
        let mut wrong_version = module.clone();
        wrong_version[4] = 2;
        assert!(refused(&wrong_version).contains("not a valid WebAssembly module"));
        // Well framed but wrong inside: a function declared to return an i32 returns nothing.
        let ill_typed = wat::parse_str("(module (func (result i32)))").unwrap();
        assert!(refused(&ill_typed).contains("not a valid WebAssembly module"));
        let component = wat::parse_str("(component)").unwrap();
        assert!(refused(&component).contains("component"));
    }

    #[test]
    fn a_real_example_task_strips_and_still_validates() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/tasks/target/wasm32-wasip1/release/pi.wasm");
        let Ok(original) = std::fs::read(&path) else {
            eprintln!("skipped: {} is not built (cargo xtask build-tasks)", path.display());
            return;
        };
        // The examples are built with `strip = true`; add what an unstripped build carries.
        let mut unstripped = original.clone();
        wasm_encoder::Section::append_to(&custom("producers", b"\x01\x08language\x01\x04Rust\x00"), &mut unstripped);
        wasm_encoder::Section::append_to(
            &custom(".debug_str", b"/home/alice/secret-project/src/main.rs"),
            &mut unstripped,
        );
        let stripped = strip_executable(&unstripped).unwrap();
        assert!(sections(&stripped).iter().all(|(id, _, _)| *id != 0));
        let expected: Vec<_> = sections(&original).into_iter().filter(|(id, _, _)| *id != 0).collect();
        assert_eq!(sections(&stripped), expected);
        Validator::new().validate_all(&stripped).unwrap();
        assert!(!contains(&stripped, b"secret-project"));
    }
}
