//! Counts of the work whose growth the limits tests check (issue 19): the
//! tests compare the count for N and 2N items, which parallel load cannot
//! change, instead of the time. Per thread (a test's parse runs on its own
//! thread) and a plain `Cell` add: nothing measurable next to the work
//! counted.

use std::cell::Cell;

thread_local! {
    static POS_BYTES: Cell<u64> = const { Cell::new(0) };
    static ALIAS_READS: Cell<u64> = const { Cell::new(0) };
    static ATTR_READS: Cell<u64> = const { Cell::new(0) };
}

/// What this thread has done so far; subtract two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Bytes of the document looked at to turn byte offsets into
    /// line:column positions (index building included).
    pub pos_bytes: u64,
    /// Device aliases read (each comparison in a lookup by alias).
    pub alias_reads: u64,
    /// Attributes looked at to place a schema error on its attribute.
    pub attr_reads: u64,
}

impl std::ops::Sub for Work {
    type Output = Work;
    fn sub(self, o: Work) -> Work {
        Work {
            pos_bytes: self.pos_bytes - o.pos_bytes,
            alias_reads: self.alias_reads - o.alias_reads,
            attr_reads: self.attr_reads - o.attr_reads,
        }
    }
}

pub fn snapshot() -> Work {
    Work {
        pos_bytes: POS_BYTES.with(Cell::get),
        alias_reads: ALIAS_READS.with(Cell::get),
        attr_reads: ATTR_READS.with(Cell::get),
    }
}

pub(crate) fn pos_bytes(n: usize) {
    POS_BYTES.with(|c| c.set(c.get() + n as u64));
}

pub(crate) fn alias_read() {
    ALIAS_READS.with(|c| c.set(c.get() + 1));
}

pub(crate) fn attr_read() {
    ATTR_READS.with(|c| c.set(c.get() + 1));
}
