//! The WIT diff on pairs of real components, made here from WIT text (a
//! dummy core module with the world's metadata, encoded by wit-component).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use airssys_wasm_deploy::diff::{Class, diff};

fn component(world: &str) -> Vec<u8> {
    let wit = format!(
        "package test:app@1.0.0;
         interface host {{ log: func(msg: string); now: func() -> u64; }}
         interface api {{
             record point {{ x: s32, y: s32 }}
             enum color {{ red, green }}
             flags perms {{ read, write }}
             area: func(p: point) -> u32;
             paint: func(c: color) -> perms;
         }}
         interface extra {{ ping: func() -> string; }}
         {world}"
    );
    encode(&wit)
}

/// The component of the only world in `wit`: a dummy core module with the
/// world's metadata, encoded by wit-component.
fn encode(wit: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve.push_str("test.wit", wit).unwrap();
    let world = resolve.select_world(&[pkg], None).unwrap();
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

/// The classes of the changes from `old` to `new`, with their words.
fn classes(old: &str, new: &str) -> Vec<(Class, String)> {
    diff(&component(old), &component(new))
        .unwrap()
        .into_iter()
        .map(|c| (c.class, c.what))
        .collect()
}

const BASE: &str =
    "world app { import host; export api; export hello: func(name: string) -> string; }";

/// What a pair is, the new world, and the changes expected.
type Case = (&'static str, &'static str, &'static [(Class, &'static str)]);

#[test]
fn pairs_of_versions_are_classified() {
    let cases: &[Case] = &[
        ("the same world", BASE, &[]),
        (
            "an exported function added",
            "world app { import host; export api; export hello: func(name: string) -> string; export bye: func(); }",
            &[(Class::Compatible, "exported function `bye` added")],
        ),
        (
            "an exported function removed",
            "world app { import host; export api; }",
            &[(Class::Breaking, "exported function `hello` removed")],
        ),
        (
            "a parameter's type changed",
            "world app { import host; export api; export hello: func(name: u32) -> string; }",
            &[(Class::Breaking, "exported function `hello` changed")],
        ),
        (
            "an export interface added",
            "world app { import host; export api; export extra; export hello: func(name: string) -> string; }",
            &[(Class::Compatible, "export `test:app/extra@1.0.0` added")],
        ),
        (
            "an export interface removed",
            "world app { import host; export hello: func(name: string) -> string; }",
            &[(Class::Breaking, "export `test:app/api@1.0.0` removed")],
        ),
        (
            "an import added",
            "world app { import host; import extra; export api; export hello: func(name: string) -> string; }",
            &[(Class::NeedsGrant, "import `test:app/extra@1.0.0` added")],
        ),
        (
            "an import removed",
            "world app { export api; export hello: func(name: string) -> string; }",
            &[(Class::Compatible, "import `test:app/host@1.0.0` removed")],
        ),
        (
            "a function renamed",
            "world app { import host; export api; export greet: func(name: string) -> string; }",
            &[
                (Class::Breaking, "exported function `hello` removed"),
                (Class::Compatible, "exported function `greet` added"),
            ],
        ),
    ];
    for (what, new, wanted) in cases {
        let got = classes(BASE, new);
        assert_eq!(got.len(), wanted.len(), "{what}: {got:?}");
        for ((class, words), (wc, ww)) in got.iter().zip(wanted.iter()) {
            assert_eq!(class, wc, "{what}: {got:?}");
            assert!(
                words.starts_with(ww),
                "{what}: `{words}` does not start with `{ww}`"
            );
        }
    }
}

/// Widening a type an export uses is breaking: no width subtyping.
#[test]
fn type_changes_under_an_export_are_breaking() {
    let world = "world app { export api; }";
    for (what, from, to) in [
        (
            "a record field added",
            "record point { x: s32, y: s32 }",
            "record point { x: s32, y: s32, z: s32 }",
        ),
        (
            "an enum case added",
            "enum color { red, green }",
            "enum color { red, green, blue }",
        ),
        (
            "a flag added",
            "flags perms { read, write }",
            "flags perms { read, write, exec }",
        ),
    ] {
        let old = component(world);
        let wit_new = world.to_string();
        // The same world over an interface whose type changed.
        let new = component_with(&wit_new, from, to);
        let changes = diff(&old, &new).unwrap();
        assert!(
            changes
                .iter()
                .any(|c| c.class == Class::Breaking && c.what.contains("changed")),
            "{what}: {changes:?}"
        );
    }
}

fn component_with(world: &str, from: &str, to: &str) -> Vec<u8> {
    let wit = format!(
        "package test:app@1.0.0;
         interface api {{
             record point {{ x: s32, y: s32 }}
             enum color {{ red, green }}
             flags perms {{ read, write }}
             area: func(p: point) -> u32;
             paint: func(c: color) -> perms;
         }}
         {world}"
    )
    .replace(from, to);
    encode(&wit)
}

#[test]
fn what_is_not_a_component_says_so() {
    let err = diff(b"not wasm", &component(BASE)).unwrap_err().to_string();
    assert!(err.contains("the old version"), "{err}");
}

#[test]
fn our_contract_moving_to_its_next_version_is_compatible() {
    // A component built against 0.1.0, then one built against 0.2.0 (the
    // SDK's): the host links both, so the move breaks no caller.
    let old = std::fs::read(airssys_wasm_test_guests::LEGACY).unwrap();
    let new = std::fs::read(airssys_wasm_test_guests::ACTOR).unwrap();
    let changes = diff(&old, &new).unwrap();
    assert!(
        !airssys_wasm_deploy::diff::breaking(&changes),
        "{changes:?}"
    );
    for iface in ["handler", "lifecycle"] {
        let moved = format!(
            "`airssys:component/{iface}@0.1.0` moves to `airssys:component/{iface}@0.2.0`: the host links every version of its contract"
        );
        assert!(
            changes
                .iter()
                .any(|c| c.class == Class::Compatible && c.what == moved),
            "{changes:?}"
        );
    }
}
