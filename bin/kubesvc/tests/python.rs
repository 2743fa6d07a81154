//! The official Python client (pip package `kubernetes`) against kubesvc.
#![allow(clippy::unwrap_used)] // Tests: a failed step is a failed test.

mod common;

#[test]
fn python_client() {
    let c = common::cluster();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");
    let out = c
        .command("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", dir])
        .output()
        .expect("python3 with pytest and kubernetes (the test command installs them)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "the Python client tests failed:\n{text}");
    assert!(text.contains(" passed"), "pytest ran no test:\n{text}");
}
