//! Each misuse of `#[component]` fails to compile with a message that says
//! what to write; `tests/ui/fail/*.stderr` holds the expected messages
//! (regenerate with `TRYBUILD=overwrite`, then read them).

#[test]
fn component_attribute() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
