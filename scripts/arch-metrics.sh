#!/usr/bin/env bash
# Architecture figures of issue 20, rerunnable: raw QMP command strings
# outside the typed layer, tokio runtimes built by hand and block_on
# helpers in production code, import circles per crate (files that reach
# each other through `crate::`/`super::`/`self::` paths), lines per crate,
# functions longer than 120 lines and copied test fixtures. Test code (a trailing `#[cfg(test)]` module,
# tests/, benches/) is not production code and is left out.
# Usage: scripts/arch-metrics.sh [--circles]   (--circles lists the files
# of each circle and the long functions)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys
from pathlib import Path

verbose = "--circles" in sys.argv[1:]
crates = sorted(p for p in Path("crates").iterdir() if (p / "src").is_dir())

def production(text):
    # Production part of a source file: up to its `#[cfg(test)] mod`.
    m = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod \w+", text, re.M)
    return text[: m.start()] if m else text

srcs = {}
for c in crates:
    for f in sorted((c / "src").rglob("*.rs")):
        srcs[f] = production(f.read_text())

# 1. Raw QMP commands: `execute("...")`, `execute(cmd, ...)` (netlink's
# argument-less `.execute()` is not QMP). The typed layer is the qmp
# crate's `commands.rs` and the client's own definitions.
typed_layer = {Path("crates/qmp/src/commands.rs"), Path("crates/qmp/src/client.rs")}
raw = re.compile(r"\.execute(?:_timeout|_as)?\(\s*(?!\))", re.S)
raw_sites = {}
for f, t in srcs.items():
    if f in typed_layer:
        continue
    # Doc examples are not code.
    code = "\n".join(l for l in t.splitlines() if not l.lstrip().startswith("//"))
    n = len(raw.findall(code))
    if n:
        raw_sites[f] = n
print(f"raw QMP execute sites: {sum(raw_sites.values())} in {len(raw_sites)} files")
if verbose:
    for f, n in raw_sites.items():
        print(f"  {f}: {n}")

# 2. Runtimes built by hand and block_on in libraries.
builders = re.compile(r"Builder::new_(?:current_thread|multi_thread)|Runtime::new\(\)")
blocks = re.compile(r"\bblock_on\(")
def without_test_items(t):
    # Items under `#[cfg(feature = "test-runtime")]` (a runtime for tests
    # that have no main) are not built into the binary.
    out, skip = [], False
    for l in t.splitlines():
        if l.startswith('#[cfg(feature = "test-runtime")]'):
            skip = True
        if not skip and not l.lstrip().startswith("//"):
            out.append(l)
        if skip and l.startswith("}"):
            skip = False
    return "\n".join(out)

b_sites, bo_sites = {}, {}
for f, t in srcs.items():
    code = without_test_items(t)
    if builders.search(code):
        b_sites[f] = len(builders.findall(code))
    if f.parts[1] != "cli" and blocks.search(code):
        bo_sites[f] = len(blocks.findall(code))
print(f"tokio runtime builders in production code: {sum(b_sites.values())} in {sorted(map(str, b_sites))}")
print(f"block_on calls in library crates: {sum(bo_sites.values())} in {len(bo_sites)} files")
print(f"library files that build a runtime or block on one: {sorted(map(str, bo_sites))}" if verbose else "", end="\n" if verbose else "")

# 3. Import circles: nodes are module files, an edge is a path naming
# another module of the same crate.
def modpath(c, f):
    parts = list(f.relative_to(c / "src").with_suffix("").parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)

ident = r"[A-Za-z_][A-Za-z0-9_]*"
pathre = re.compile(r"\b(crate|super|self)((?:::(?:" + ident + r"|\{[^;]*?\}))+)")
total_cyclic = 0
all_lines = sum(len(f.read_text().splitlines()) for f in srcs)
for c in crates:
    files = {f: modpath(c, f) for f in srcs if f.parts[:2] == c.parts[:2]}
    mods = {m: f for f, m in files.items()}
    edges = {f: set() for f in files}

    def resolve(base, segs):
        # The deepest known module the path names.
        best = None
        cur = list(base)
        for s in segs:
            if s == "super":
                if not cur:
                    return best
                cur = cur[:-1]
                continue
            cur = cur + [s]
            if tuple(cur) in mods:
                best = tuple(cur)
            else:
                break
        return best

    def expand(rest):
        # `::a::b`, `::{a, b::c}` -> lists of segments (first level of braces).
        rest = rest.lstrip(":")
        if rest.startswith("{"):
            inner = rest[1:-1]
            depth, cur, items = 0, "", []
            for ch in inner:
                if ch == "," and depth == 0:
                    items.append(cur); cur = ""
                    continue
                depth += ch == "{"
                depth -= ch == "}"
                cur += ch
            items.append(cur)
            out = []
            for it in items:
                it = it.strip()
                if it:
                    out += expand("::" + it)
            return out
        segs = []
        for part in re.split(r"::", rest):
            if part.startswith("{"):
                tails = expand("::" + "::".join(rest.split("::")[len(segs):]))
                return [segs + t for t in tails] or [segs]
            m = re.match(ident, part)
            if not m:
                break
            segs.append(m.group(0))
        return [segs]

    for f, m in files.items():
        # Intra-doc links (`[x](crate::a::b)`) in comments are not imports.
        code = "\n".join(l for l in srcs[f].splitlines() if not l.lstrip().startswith("//"))
        for kw, rest in pathre.findall(code):
            for segs in expand(rest):
                if kw == "crate":
                    base, s = (), segs
                elif kw == "self":
                    base, s = m, segs
                else:
                    # A module's `super` is its parent, whether the module
                    # is a file or a directory's mod.rs.
                    base, s = m[:-1], segs
                target = resolve(base, s)
                if target is not None and target != m and target in mods:
                    edges[f].add(mods[target])

    # Tarjan's strongly connected components.
    index, low, onstack, stack, sccs, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)
    def strong(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); onstack.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in onstack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); onstack.discard(w); comp.append(w)
                if w == v:
                    break
            sccs.append(comp)
    for v in files:
        if v not in index:
            strong(v)
    cyc = [s for s in sccs if len(s) > 1]
    total_cyclic += len(cyc)
    lines = sum(len(Path(f).read_text().splitlines()) for f in files)
    nedges = sum(len(e) for e in edges.values())
    print(f"{c.name}: {lines} lines ({100 * lines / all_lines:.0f} % of all), {len(files)} files, {nedges} import edges, "
          f"{len(cyc)} circle(s) {[len(s) for s in cyc]}")
    if verbose:
        for s in cyc:
            print("   ", sorted(str(p.relative_to(c / 'src')) for p in s))
print(f"import circles in all crates: {total_cyclic}")

# 5. Long functions: lines from `fn` to the closing brace of its body, in
# production code. Literals and comments are blanked first so braces in
# them do not count.
LONG_FN = 120

def blank(text):
    out, i, n = [], 0, len(text)
    def spaces(a, b):
        return "".join(ch if ch == "\n" else " " for ch in text[a:b])
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(spaces(i, j)); i = j
            continue
        if text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth += 1; j += 2
                elif text.startswith("*/", j):
                    depth -= 1; j += 2
                else:
                    j += 1
            out.append(spaces(i, j)); i = j
            continue
        m = re.match(r'b?r(#*)"', text[i:i + 10])
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(spaces(i, j)); i = j
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(spaces(i, j)); i = j
            continue
        if c == "'":
            # A char literal, not a lifetime.
            m = re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'])'", text[i:i + 12], re.S)
            if m:
                out.append(spaces(i, i + m.end())); i += m.end()
                continue
        out.append(c); i += 1
    return "".join(out)

def long_functions(text):
    code = blank(text)
    found = []
    for m in re.finditer(r"\bfn\s+(" + ident + r")", code):
        # The body is the first `{` outside parentheses and brackets;
        # a `;` first means a declaration without body.
        j, depth = m.end(), 0
        while j < len(code):
            ch = code[j]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif depth == 0 and ch == ";":
                j = len(code)
                break
            elif depth == 0 and ch == "{":
                break
            j += 1
        if j >= len(code):
            continue
        k, braces = j, 0
        while k < len(code):
            braces += code[k] == "{"
            braces -= code[k] == "}"
            if braces == 0:
                break
            k += 1
        first = code.count("\n", 0, m.start()) + 1
        lines = code.count("\n", m.start(), k) + 1
        if lines > LONG_FN:
            found.append((lines, first, m.group(1)))
    return found

total_long = 0
for c in crates:
    longs = sorted(((n, f, line, name) for f in srcs if f.parts[:2] == c.parts[:2]
                    for n, line, name in long_functions(srcs[f])), reverse=True)
    total_long += len(longs)
    print(f"{c.name}: {len(longs)} function(s) over {LONG_FN} lines"
          + (f", longest {longs[0][3]} {longs[0][0]}" if longs else ""))
    if verbose:
        for n, f, line, name in longs:
            print(f"    {n:4} {f}:{line} {name}")
print(f"functions over {LONG_FN} lines in all crates: {total_long}")

# 4. Copied test fixtures in the tests of cli and runtime: string literals (plain or raw)
# holding a teaming domain (`<domain` with a persistent teaming half) or a
# VF pool (`<network` forwarding in hostdev mode), where testinfra's
# builders (`xml::PairDomain`, `xml::pool_xml`) should write them. Files
# whose literals are the odd XML under test stay literal on purpose.
on_purpose = {
    # validate's diagnostics: each literal is the broken domain under test,
    # its line and column included in the expected output.
    "crates/cli/tests/cli_conf.rs",
}
lit = re.compile(r'r(#*)"(.*?)"\1|"((?:[^"\\]|\\.)*)"', re.S)
def literals(t):
    t = re.sub(r"^\s*//.*$", "", t, flags=re.M)
    for m in lit.finditer(t):
        yield m.group(2) if m.group(2) is not None else m.group(3)
tests = sorted(Path("crates/cli/tests").glob("*.rs"))
# The crates whose tests and benchmarks run domains (conf's and qemu's
# test the parser and the command line on XML written for each case).
fixture_files = [t for c in ("cli", "runtime") for d in ("tests", "benches")
                 for t in sorted(Path("crates", c, d).glob("*.rs")) if str(t) not in on_purpose]
def count(files, want):
    per = {}
    for t in files:
        n = sum(1 for l in literals(t.read_text()) if want(l))
        if n:
            per[str(t)] = n
    return per
dom = count(fixture_files, lambda l: "<domain" in l and "<teaming type='persistent'/>" in l)
pools = count(fixture_files, lambda l: "<network" in l and "<forward mode='hostdev'" in l)
teaming = len(dom)
pool = sum(pools.values())
pool_files = len(pools)
incl = sum(1 for t in tests if re.search(r'#\[path = "[^"]*benches', t.read_text()))
if verbose:
    for f, n in sorted(dom.items()):
        print(f"  teaming domain XML: {f}: {n}")
    for f, n in sorted(pools.items()):
        print(f"  pool XML: {f}: {n}")
print(f"tests and benches: teaming domain XML written in {teaming} files; "
      f"pool XML {pool} times in {pool_files} files; {incl} #[path]-include a bench")
PY
