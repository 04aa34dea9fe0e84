#!/usr/bin/env bash
# The README's test command: the whole test suite with the system's QEMU,
# then the end-to-end tests (guests booted, failover negotiated, migrated,
# hotplugged) again with QEMU 10.0 from bookworm-backports as the VMs'
# emulator (`scripts/vf-lab.sh emulator` installs it beside the system's
# 7.2). Every part runs even when an earlier one failed; the exit code is
# non-zero if any failed.
#
# TEAMVIRT_QEMU10=skip skips the second pass; TEAMVIRT_VF_LAB=require (CI)
# makes a missing QEMU 10.0 a failure instead of a notice.
set -uo pipefail
cd "$(dirname "$0")/.."

# A failing test's message, not a 40-line backtrace, is what a reader of
# a cut CI log needs to see.
export RUST_BACKTRACE=0

rc=0
cargo test --workspace --no-fail-fast || rc=1

# The test binaries whose guests run on the default emulator (the first
# qemu-system-x86_64 on PATH). Not here: tests that name /usr/bin's QEMU
# or reach a second host over SSH (whose PATH is its own).
e2e=(-p teamvirt --test cli_runtime_e2e --test cli_traffic_e2e --test cli_hotplug_e2e
    --test cli_migrate --test cli_concurrent_start --test cli_qemu_user
    -p teamvirt-runtime --test teaming_qemu)

if [[ ${TEAMVIRT_QEMU10:-} == skip ]]; then
    echo "test.sh: QEMU 10.0 pass skipped (TEAMVIRT_QEMU10=skip)" >&2
elif prefix=$(./scripts/vf-lab.sh emulator); then
    q=$prefix/usr/bin/qemu-system-x86_64
    echo "test.sh: end-to-end tests again with $("$q" --version | head -n1) ($q)" >&2
    PATH=$prefix/usr/bin:$PATH QEMU_MODULE_DIR=$prefix/usr/lib/x86_64-linux-gnu/qemu \
        TEAMVIRT_EXPECT_QEMU=$q cargo test --no-fail-fast "${e2e[@]}" || rc=1
elif [[ ${TEAMVIRT_VF_LAB:-} == require ]]; then
    echo "test.sh: QEMU 10.0 is required (TEAMVIRT_VF_LAB=require) but could not be installed" >&2
    rc=1
else
    echo "test.sh: skipping the QEMU 10.0 pass: scripts/vf-lab.sh emulator could not install it" >&2
fi
exit $rc
