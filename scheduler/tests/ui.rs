//! Compile-time behaviour of `#[task]`: what compiles (`ui/pass`) and the error
//! each mistake gives (`ui/fail`, one mistake per file, named for it).
//!
//! After changing a message, regenerate the expected output with
//! `TRYBUILD=overwrite cargo test -p scheduler --test ui`, then read every
//! changed `.stderr`: the message must be the intended one, on the intended token.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
