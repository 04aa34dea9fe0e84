//! A closed stdout (`teamvirt ... | head`) does not make teamvirt panic or
//! die of SIGPIPE: the rest of the output is dropped and the command ends
//! normally. Any other write error (a full disk) is reported and fails it.

use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn closed_stdout_is_not_a_panic() {
    let example = teamvirt_testinfra::workspace_root().join("examples/teaming-q35.xml");
    // About 200 bytes of JSON per file: 400 files are more than a 64 KiB
    // pipe buffer, so teamvirt blocks until the read end is gone and its
    // next write must hit the closed pipe. (2000 took over 10 min of a
    // loaded debug run: each file is checked against libvirt's schemas,
    // whose XSD patterns the schema crate compiles for every document.)
    let files = vec![example; 400];
    let mut child = Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .arg("validate")
        .arg("--json")
        .args(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is dropped here; the rest of the output has nowhere to go.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "teamvirt panicked: {stderr}");
    assert!(!stderr.contains("cannot write"), "{stderr}");
    // The files are valid: the verdict, not the lost output, sets the code.
    assert_eq!(
        out.status.code(),
        Some(0),
        "status {:?}: {stderr}",
        out.status
    );
}

#[test]
fn full_disk_fails_the_command() {
    let example = teamvirt_testinfra::workspace_root().join("examples/teaming-q35.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .arg("format")
        .arg(&example)
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
}

/// `capabilities` talks to QEMU, so it keeps SIGPIPE ignored: a closed
/// stdout must still end it quietly, not in a panic.
#[test]
fn capabilities_into_closed_pipe_is_not_a_panic() {
    let Some(corpus) = teamvirt_testinfra::corpus_or_skip("capabilities_into_closed_pipe") else {
        return;
    };
    let caps = corpus.join("qemucapabilitiesdata/caps_9.1.0_x86_64.xml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_teamvirt"))
        .args(["capabilities", "--json", "--caps"])
        .arg(&caps)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end before teamvirt writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "teamvirt panicked: {stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}
