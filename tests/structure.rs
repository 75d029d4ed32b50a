//! Properties of the source that the compiler does not check: every export
//! runs inside the panic boundary; code that touches guest memory does so
//! only through the accessors that are sound for memory another party
//! writes concurrently, and no safe function dereferences an integer
//! address; modules depend only on lower layers, as documented; errors are
//! typed; the Rust tests share one driver model.

use std::path::Path;

fn rust_files(dir: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out
}

/// The text of each `#[no_mangle]` function's body, by name.
fn exports(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (at, _) in src.match_indices("#[no_mangle]") {
        let rest = &src[at..];
        let name_at = rest.find("fn ").expect("fn after #[no_mangle]") + 3;
        let name: String = rest[name_at..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        // The body starts at the first `{` after the parameter list.
        let mut depth = 0;
        let mut close = 0;
        for (i, c) in rest[name_at..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = name_at + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let open = close + rest[close..].find('{').unwrap();
        out.push((name, rest[open + 1..].trim_start().to_owned()));
    }
    out
}

#[test]
fn every_export_runs_inside_the_panic_boundary() {
    let mut count = 0;
    let mut outside = Vec::new();
    for (path, src) in rust_files("src") {
        for (name, body) in exports(&src) {
            count += 1;
            if !body.starts_with("boundary!(") {
                outside.push(format!("{name} ({path})"));
            }
        }
    }
    // Every ABI's exports, once: 22.11's 81, and 24.11's 83 of which 80 are
    // the same functions (set_max_queue_num, notify_guest, backend_config_change
    // are new; slave_config_change is gone).
    let mut in_maps: Vec<String> = ["version.map", "version-24.11.map"]
        .iter()
        .flat_map(|map| {
            let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(map)).unwrap();
            text.lines().filter_map(|l| l.trim().strip_suffix(';').map(str::to_owned)).collect::<Vec<_>>()
        })
        .filter(|s| s.starts_with("rte_"))
        .collect();
    in_maps.sort();
    in_maps.dedup();
    assert_eq!(in_maps.len(), 84);
    assert_eq!(count, in_maps.len(), "one export per function of the version maps");
    assert!(outside.is_empty(), "exports whose body is not `boundary!(...)`: {outside:#?}");
}

#[test]
fn guest_memory_is_touched_only_through_race_tolerant_accesses() {
    // Plain, unaligned or bulk Rust accesses are data races on memory the
    // guest writes concurrently; guest memory goes through guest::raw
    // (asm and an opaque copy), atomics and volatile words.
    let forbidden =
        ["read_unaligned", "write_unaligned", "copy_nonoverlapping", "ptr::copy(", "from_raw_parts"];
    let mut found = Vec::new();
    for dir in ["src/guest", "src/net", "src/virtqueue"] {
        for (path, src) in rust_files(dir) {
            if path.ends_with("virtqueue/mock.rs") {
                continue; // the test driver, in memory the test owns
            }
            // Unit tests work on their own buffers.
            let src = src.split("#[cfg(test)]").next().unwrap();
            for f in forbidden {
                if src.contains(f) {
                    found.push(format!("{path}: {f}"));
                }
            }
        }
    }
    assert!(found.is_empty(), "non-volatile guest accesses: {found:#?}");
}

/// One driver model for every Rust test: rings are played by
/// `virtqueue::mock` (through the `testing` feature), so no test keeps a
/// ring model of its own, seen as a struct named for a ring or descriptor
/// flags defined by name.
#[test]
fn tests_play_the_guest_driver_only_through_the_mock() {
    let flags = ["_NEXT", "_WRITE", "_INDIRECT", "_AVAIL", "_USED"];
    let mut found = Vec::new();
    for (path, src) in rust_files("tests") {
        if path.ends_with("tests/structure.rs") {
            continue;
        }
        for (n, line) in code_only(&src).lines().enumerate() {
            let words: Vec<&str> = line.split(|c: char| !c.is_alphanumeric() && c != '_').collect();
            let named_after = |keyword: &str| words.windows(2).find(|w| w[0] == keyword).map(|w| w[1]);
            let ring_struct = named_after("struct").is_some_and(|name| name.ends_with("Ring"));
            let flag = named_after("const").is_some_and(|name| flags.iter().any(|f| name.ends_with(f)))
                && line.contains(": u16");
            if ring_struct || flag {
                found.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "a ring model outside virtqueue::mock: {found:#?}");
}

/// The top-level modules in layer order, as `docs/architecture.md` lists
/// them (its first code block: lines `src/NAME/`, lowest layer first).
fn documented_layers() -> Vec<String> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md")).unwrap();
    let block = doc.split("```").nth(1).expect("a code block in docs/architecture.md");
    block
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("src/"))
        .map(|l| l.split('/').next().unwrap().to_owned())
        .collect()
}

/// `crate::NAME` paths written in each top-level module's files (comments
/// stripped): the module graph.
fn module_edges() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mods: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut edges = std::collections::BTreeMap::new();
    for m in &mods {
        let mut to = std::collections::BTreeSet::new();
        for (_, text) in rust_files(&format!("src/{m}")) {
            let code: String =
                text.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n");
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + 7..];
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    group
                        .split('}')
                        .next()
                        .unwrap()
                        .split(',')
                        .map(|p| p.trim().split("::").next().unwrap())
                        .collect()
                } else {
                    vec![rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap()]
                };
                for n in names {
                    if n != m && mods.iter().any(|x| x == n) {
                        to.insert(n.to_owned());
                    }
                }
            }
        }
        edges.insert(m.clone(), to);
    }
    edges
}

#[test]
fn modules_depend_only_on_lower_layers_as_documented() {
    let layers = documented_layers();
    let edges = module_edges();
    let mut undocumented: Vec<&String> = edges.keys().filter(|m| !layers.contains(m)).collect();
    undocumented.sort();
    assert!(
        undocumented.is_empty(),
        "modules missing from docs/architecture.md's layer list: {undocumented:?}"
    );
    let rank = |m: &str| layers.iter().position(|l| l == m).unwrap();
    let mut outward = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if rank(to) >= rank(from) {
                outward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        outward.is_empty(),
        "use crate:: edges that point up or sideways (layers {layers:?}): {outward:?}"
    );
}

/// `src` with comments and the insides of string and char literals blanked
/// (lengths kept), so that braces and words in them are not read as code.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            blank(&mut out, i, end);
            i = end;
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let open = i + 2 + hashes;
            let end = src[open..].find(&close).map_or(b.len(), |n| open + n);
            blank(&mut out, open, end);
            i = end + close.len();
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'), or a lifetime ('a).
            let end = if rest.get(1) == Some(&b'\\') {
                src[i + 3..].find('\'').map(|n| i + 3 + n)
            } else {
                src[i + 1..]
                    .chars()
                    .next()
                    .map(|c| i + 1 + c.len_utf8())
                    .filter(|&e| b.get(e) == Some(&b'\''))
            };
            match end {
                Some(e) => {
                    blank(&mut out, i + 1, e);
                    i = e + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// The index just past the bracket that closes the one at `open`.
fn closing(code: &str, open: usize) -> usize {
    let b = code.as_bytes();
    let (o, c) = (
        b[open],
        match b[open] {
            b'(' => b')',
            b'[' => b']',
            _ => b'}',
        },
    );
    let mut depth = 0;
    for (k, &x) in b[open..].iter().enumerate() {
        if x == o {
            depth += 1;
        } else if x == c {
            depth -= 1;
            if depth == 0 {
                return open + k + 1;
            }
        }
    }
    b.len()
}

/// The first identifier of an expression (`(addr + 8)` -> `addr`).
fn root(expr: &str) -> &str {
    let e = expr.trim_start_matches(|c: char| c == '(' || c == '&' || c == '*' || c.is_whitespace());
    let e = e.strip_prefix("mut ").unwrap_or(e);
    &e[..e.find(|c: char| !c.is_alphanumeric() && c != '_').unwrap_or(e.len())]
}

/// Splits `list` (the inside of a bracket) at its top-level commas.
fn top_level_split(list: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    let b = list.as_bytes();
    for (k, &c) in b.iter().enumerate() {
        match c {
            b'(' | b'[' | b'{' | b'<' => depth += 1,
            b'>' if k > 0 && b[k - 1] == b'-' => {}
            b')' | b']' | b'}' | b'>' => depth -= 1,
            b',' if depth == 0 => {
                parts.push(&list[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// A function of the crate: its name, whether it is `unsafe fn`, its
/// parameters (position, name, whether an integer: `u64`/`usize`, which may
/// be an address) not counting `self`, and its body.
struct Function {
    name: String,
    path: String,
    is_unsafe: bool,
    params: Vec<(usize, String, bool)>,
    body: String,
}

fn functions(path: &str, code: &str) -> Vec<Function> {
    let mut out = Vec::new();
    for (at, _) in code.match_indices("fn ") {
        if at > 0 && (code.as_bytes()[at - 1].is_ascii_alphanumeric() || code.as_bytes()[at - 1] == b'_') {
            continue;
        }
        let after = &code[at + 3..];
        let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if name.is_empty() {
            continue; // a fn pointer type
        }
        let item_start = code[..at].rfind([';', '{', '}', ']']).map_or(0, |k| k + 1);
        let is_unsafe = code[item_start..at].split_whitespace().any(|w| w == "unsafe");
        // Generic parameters may hold parentheses (`F: Fn(u16)`): skip them.
        let mut k = at + 3 + name.len();
        if code.as_bytes()[k] == b'<' {
            let mut depth = 0;
            for (j, c) in code[k..].char_indices() {
                match c {
                    '<' => depth += 1,
                    '>' if code.as_bytes()[k + j - 1] != b'-' => {
                        depth -= 1;
                        if depth == 0 {
                            k += j + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        let Some(open) = code[k..].find('(').map(|j| k + j) else { continue };
        let close = closing(code, open);
        let Some(body_open) = code[close..].find(['{', ';']).map(|j| close + j) else { continue };
        if code.as_bytes()[body_open] == b';' {
            continue; // a declaration
        }
        let body = code[body_open..closing(code, body_open)].to_owned();
        let params = top_level_split(&code[open + 1..close - 1])
            .into_iter()
            .filter(|p| !p.trim().ends_with("self"))
            .enumerate()
            .map(|(i, p)| {
                let (pat, ty) = p.split_once(':').unwrap_or((p, ""));
                let pat = pat.trim();
                let pat = pat.strip_prefix("mut ").unwrap_or(pat);
                (i, pat.to_owned(), matches!(ty.trim(), "u64" | "usize"))
            })
            .collect();
        out.push(Function { name, path: path.to_owned(), is_unsafe, params, body });
    }
    out
}

/// The roots of the operands cast to raw pointers in `body`
/// (`(addr + 8) as *mut u32` -> `addr`).
fn pointer_cast_roots(body: &str) -> Vec<&str> {
    let b = body.as_bytes();
    let mut roots = Vec::new();
    for pat in [" as *const ", " as *mut "] {
        for (at, _) in body.match_indices(pat) {
            // Back over one postfix expression: names, paths, fields, calls.
            let mut start = at;
            while start > 0 {
                let c = b[start - 1];
                if c == b')' || c == b']' {
                    let open = if c == b')' { b'(' } else { b'[' };
                    let mut depth = 0;
                    let mut j = start;
                    while j > 0 {
                        j -= 1;
                        if b[j] == c {
                            depth += 1;
                        } else if b[j] == open {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                    }
                    start = j;
                } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b':' {
                    start -= 1;
                } else {
                    break;
                }
            }
            roots.push(root(&body[start..at]));
        }
    }
    roots
}

/// The argument lists (top-level arguments) of each call of `callee` in
/// `code`.
fn calls<'a>(code: &'a str, callee: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let call = format!("{callee}(");
    for (at, _) in code.match_indices(&call) {
        if code[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let open = at + callee.len();
        out.push(top_level_split(&code[open + 1..closing(code, open) - 1]));
    }
    out
}

/// The insides of the `unsafe { ... }` blocks of `body`.
fn unsafe_blocks(body: &str) -> String {
    body.match_indices("unsafe {").map(|(at, _)| &body[at..closing(body, at + 7)]).collect()
}

#[test]
fn no_safe_function_dereferences_an_integer_address() {
    // A safe function that takes an address as an integer and reads or
    // writes memory there lets safe code touch any address: guest memory
    // is reached through views that borrow their mapping (`RingMem`,
    // `DescTable`, `GuestSlice`), and a function taking a bare address is
    // an `unsafe fn` that states what its callers promise.
    // An address parameter is a `u64`/`usize` one that the function casts
    // to a raw pointer, or passes where another function takes an address
    // (a safe one anywhere, an unsafe one in an `unsafe` block), found
    // through any number of calls; a safe function may have none.
    const HARMLESS: [(&str, &str); 3] = [
        ("prefetch", "a prefetch hint reads nothing and never faults"),
        ("virt2iova", "asks the EAL for an address's IOVA (a page-map lookup); reads nothing there"),
        ("register", "hands a range to userfaultfd, which the kernel checks; reads nothing"),
    ];
    let mut all = Vec::new();
    for (path, src) in rust_files("src") {
        all.extend(functions(&path, &code_only(&src)));
    }
    // Positions of address parameters, by function name.
    let mut takes_address: std::collections::BTreeMap<String, std::collections::BTreeSet<usize>> =
        Default::default();
    let mut found = std::collections::BTreeSet::new();
    loop {
        let mut new = Vec::new();
        for f in all.iter().filter(|f| !HARMLESS.iter().any(|(h, _)| *h == f.name)) {
            let address = |name: &str| {
                let cast = pointer_cast_roots(&f.body).contains(&name);
                let passed = takes_address.iter().any(|(callee, positions)| {
                    let unsafe_callee = all.iter().any(|g| g.is_unsafe && &g.name == callee);
                    let code = if unsafe_callee { unsafe_blocks(&f.body) } else { f.body.clone() };
                    calls(&code, callee)
                        .iter()
                        .any(|args| positions.iter().any(|&i| args.get(i).is_some_and(|a| root(a) == name)))
                });
                cast || passed
            };
            for (i, name, _) in f.params.iter().filter(|(_, name, int)| *int && address(name)) {
                if !takes_address.get(&f.name).is_some_and(|known| known.contains(i)) {
                    new.push((f.name.clone(), *i));
                }
                if !f.is_unsafe {
                    found.insert(format!("{}({name}) in {}", f.name, f.path));
                }
            }
        }
        if new.is_empty() {
            break;
        }
        for (name, i) in new {
            takes_address.entry(name).or_default().insert(i);
        }
    }
    assert!(found.is_empty(), "safe functions that dereference an integer address: {found:#?}");
}

/// The fields of `struct name` in `code`, each with whether it is declared
/// with a visibility (`pub`, `pub(crate)`, ...).
fn struct_fields(code: &str, name: &str) -> Vec<(String, bool)> {
    let at = code.find(&format!("pub struct {name} {{")).unwrap_or_else(|| panic!("struct {name}"));
    let open = at + code[at..].find('{').unwrap();
    let body = &code[open + 1..closing(code, open) - 1];
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (decl, _) = l.split_once(':')?;
            let public = decl.starts_with("pub");
            let field = decl.rsplit(|c: char| c.is_whitespace() || c == ')').next()?;
            Some((field.to_owned(), public))
        })
        .collect()
}

/// Writes to `fields` of a value bound to one of `receivers` in `code`
/// (assignments, compound ones, destructuring, `&mut` borrows), as
/// (line, text).
fn field_writes(code: &str, receivers: &[&str], fields: &[String]) -> Vec<(usize, String)> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        for r in receivers {
            for f in fields {
                let place = format!("{r}.{f}");
                for (at, _) in line.match_indices(&place) {
                    let (before, after) = (&line[..at], &line[at + place.len()..]);
                    let bounded = !before.ends_with(|c: char| ident(c) || c == '.')
                        && !after.starts_with(|c: char| ident(c) || c == '(');
                    if !bounded {
                        continue;
                    }
                    let rest = after.trim_start();
                    let assigned = ["=", "+=", "-=", "*=", "/=", "%=", "|=", "&=", "^=", "<<=", ">>="]
                        .iter()
                        .any(|op| rest.starts_with(op) && !rest[op.len()..].starts_with('='))
                        && !rest.starts_with("=>");
                    let borrowed = before.trim_end().ends_with("&mut");
                    let destructured = line.trim_start().starts_with('(')
                        && after.split_once(')').is_some_and(|(inner, tail)| {
                            !inner.contains(['=', ';'])
                                && tail.trim_start().starts_with('=')
                                && !tail.trim_start().starts_with("==")
                        });
                    if assigned || borrowed || destructured {
                        out.push((n + 1, line.trim().to_owned()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn ring_state_changes_only_through_its_methods() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vq_src = code_only(&std::fs::read_to_string(root.join("src/virtqueue/mod.rs")).unwrap());
    let fields = struct_fields(&vq_src, "VqState");
    assert!(fields.len() > 20, "VqState's fields found: {fields:?}");
    let public: Vec<&String> = fields.iter().filter(|(_, p)| *p).map(|(f, _)| f).collect();
    assert!(public.is_empty(), "VqState fields reachable outside virtqueue: {public:?}");
    // The compiler enforces the privacy; this also covers code it does not
    // see (configured out, in macros): the names a `VqState` is bound to
    // outside `virtqueue` never have a ring field written through them.
    let names: Vec<String> = fields.into_iter().map(|(f, _)| f).collect();
    let receivers = ["vq", "s", "g", "b.vq", "self.vq"];
    let mut writes = Vec::new();
    for (path, src) in rust_files("src") {
        if path.contains("/src/virtqueue/") {
            continue;
        }
        let code = code_only(&src);
        for (line, text) in field_writes(&code, &receivers, &names) {
            writes.push(format!("{path}:{line}: {text}"));
        }
        // Nor is one built field by field (`VqState::new`, `reset`); a
        // function returning one or an `impl` is no literal.
        let literal = |l: &str| {
            l.split_once("VqState {")
                .is_some_and(|(before, _)| !before.contains("->") && !before.trim_start().starts_with("impl"))
        };
        for (n, text) in code.lines().enumerate().filter(|(_, l)| literal(l)) {
            writes.push(format!("{path}:{}: {}", n + 1, text.trim()));
        }
    }
    assert!(writes.is_empty(), "ring fields written outside virtqueue: {writes:#?}");
    // The scan itself finds each kind of write.
    let planted = "vq.num = 1;\ns.last_avail_idx += n;\n(b.vq.kick, x) = (k, 0);\nf(&mut g.ring);";
    assert_eq!(field_writes(planted, &receivers, &names).len(), 4);
    assert!(field_writes("vq.num == 1; s.index => 0; vq.num(); vqs.num = 1;", &receivers, &names).is_empty());
}

/// The error types of the `Result`s written in `code` (the last of two
/// top-level generic arguments, blanks made single spaces).
fn result_error_types(code: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for (at, _) in code.match_indices("Result<") {
        if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // another type's name ending in Result
        }
        let open = at + "Result<".len();
        let (mut depth, mut end) = (1, open);
        let b = code.as_bytes();
        while end < b.len() && depth > 0 {
            match b[end] {
                b'<' => depth += 1,
                b'>' if b[end - 1] != b'-' => depth -= 1,
                _ => {}
            }
            end += 1;
        }
        if let [_, error] = top_level_split(&code[open..end - 1])[..] {
            errors.push(error.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    errors
}

#[test]
fn errors_are_typed() {
    // An error says what went wrong as a type the caller can match and
    // `std::error::Error` can carry, not as a unit, a string or a number.
    const UNTYPED: [&str; 4] = ["()", "&'static str", "&str", "String"];
    let mut found = Vec::new();
    for (path, src) in rust_files("src") {
        if path.ends_with("/tests.rs") {
            continue;
        }
        let code = code_only(&src);
        let code = code.split("#[cfg(test)]").next().unwrap();
        for error in result_error_types(code) {
            if UNTYPED.contains(&error.as_str()) {
                found.push(format!("{path}: Result<_, {error}>"));
            }
        }
    }
    assert!(found.is_empty(), "untyped errors: {found:#?}");
}

/// What only the ring engines (`virtqueue::avail`, `split`, `packed`) may
/// do: read an avail slot or a descriptor, walk a chain from the ring, and
/// move or read the avail position.
const ENGINE_ONLY: &[&str] = &[
    "read_split_desc",
    "read_packed_desc",
    "split_avail_ring",
    "packed_flags",
    "packed_flags_run",
    "packed_line",
    "prefetch_packed_run",
    "walk_split",
    "walk_packed",
    "visit_split",
    "is_available",
    "avail_pos",
    "set_avail_pos",
    "advance_avail",
    "last_avail_idx",
];

/// Uses in `code` of the names in `names` as a call (`name(`, `name::<`)
/// or through a value (`.name`): (line, name).
fn engine_only_uses(code: &str, names: &[&str]) -> Vec<(usize, String)> {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let b = line.as_bytes();
        for name in names {
            for (at, _) in line.match_indices(name) {
                let end = at + name.len();
                if (at > 0 && word(b[at - 1])) || b.get(end).is_some_and(|&c| word(c)) {
                    continue;
                }
                let rest = line[end..].trim_start();
                let through_value = line[..at].trim_end().ends_with('.');
                if through_value || rest.starts_with('(') || rest.starts_with("::<") {
                    out.push((n + 1, name.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn only_the_ring_engines_read_slots_and_move_indices() {
    let mut uses = Vec::new();
    for (path, src) in rust_files("src") {
        if path.contains("/src/virtqueue/") {
            continue;
        }
        for (line, name) in engine_only_uses(&code_only(&src), ENGINE_ONLY) {
            uses.push(format!("{path}:{line}: {name}"));
        }
    }
    assert!(uses.is_empty(), "ring slots, descriptors or indices touched outside the engines: {uses:#?}");
    // The scan finds each form, and not a parameter or a longer name.
    let planted = "let h = ring.split_avail_ring(i);\nb.vq.set_avail_pos(p);\nwalk_split(m, s, h, r, o)\nlet i = vq\n    .last_avail_idx;";
    assert_eq!(engine_only_uses(planted, ENGINE_ONLY).len(), 4);
    let innocent =
        "fn f(last_avail_idx: u16) { *last_avail_idx = 0; x.avail_positions(); packed_flags_addr(1) }";
    assert!(engine_only_uses(innocent, ENGINE_ONLY).is_empty());
}

/// The calls into the device written in `code`: methods called on a `dev`
/// and functions called through `device::`, by name.
fn device_calls(code: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for prefix in ["dev.", "device::"] {
        for (at, _) in code.match_indices(prefix) {
            if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue; // `undev.`, `my_device::`
            }
            let rest = &code[at + prefix.len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if rest[name.len()..].starts_with('(') {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn the_connection_calls_the_device_through_its_entry_points() {
    // Per message, one call at each of DPDK's points around the hooks:
    // `admit` the ring the request names before the pre-hook, `handle` a
    // request routed to the device (what comes first, the handler, the
    // events), `after_message` for what is due once it is answered.
    // Everything else a request needs is in its row or its `Message`.
    const PER_MESSAGE: [&str; 3] = ["admit", "handle", "after_message"];
    // A request routed to the connection hands the device the back-end
    // channel it made; a postcopy table goes in use once the front-end
    // acked the reply.
    const AFTER_THE_CONNECTION: [&str; 2] = ["set_backend", "install_postcopy_table"];
    // The connection's own lifecycle.
    const LIFECYCLE: [&str; 7] = ["allocate", "get", "free", "setup", "set_crypto", "vid", "stop"];
    let expected: std::collections::BTreeSet<String> =
        PER_MESSAGE.iter().chain(&AFTER_THE_CONNECTION).chain(&LIFECYCLE).map(|s| s.to_string()).collect();
    let mut found = std::collections::BTreeSet::new();
    for (path, src) in rust_files("src/socket") {
        let code = code_only(&src);
        let code = code.split("#[cfg(test)]").next().unwrap();
        found.extend(device_calls(code).into_iter().map(|name| (name, path.clone())));
    }
    let names: std::collections::BTreeSet<String> = found.iter().map(|(n, _)| n.clone()).collect();
    let unexpected: Vec<&(String, String)> = found.iter().filter(|(n, _)| !expected.contains(n)).collect();
    assert!(
        unexpected.is_empty(),
        "the socket calls into the device outside its entry points: {unexpected:#?}"
    );
    assert_eq!(names, expected, "an entry point is no longer used: update the list");
    // The scan itself finds each kind of call, and only calls.
    let planted = "dev.ensure_vring(idx); device::before(dev, &m); self.dev.nr_vring(); device::MAX_VRING;";
    assert_eq!(device_calls(planted).len(), 3);
    assert!(device_calls("undev.x(); my_device::y(); dev.field; device::Due::NewDevice").is_empty());
}

/// The types `code` declares `Copy` or `Clone`, derived or implemented.
fn copyable_types(code: &str) -> Vec<String> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    for trait_for in [" Copy for ", " Clone for "] {
        for (at, _) in code.match_indices(trait_for) {
            out.push(code[at + trait_for.len()..].chars().take_while(|&c| ident(c)).collect());
        }
    }
    for (at, _) in code.match_indices("#[derive(") {
        let close = closing(code, at + "#[derive".len());
        let derives = &code[at + "#[derive(".len()..close - 1];
        if !derives.split(',').any(|d| matches!(d.trim(), "Copy" | "Clone")) {
            continue;
        }
        let rest = &code[close..];
        let Some((kw, len)) =
            ["struct ", "enum ", "union "].iter().filter_map(|k| rest.find(k).map(|p| (p, k.len()))).min()
        else {
            continue;
        };
        out.push(rest[kw + len..].chars().take_while(|&c| ident(c)).collect());
    }
    out
}

/// The signatures (from `fn` to the body) of the methods that `impl` blocks
/// in `code` give type `name`, inherent or of a trait.
fn method_signatures(code: &str, name: &str) -> Vec<String> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    for (at, _) in code.match_indices("impl") {
        if code[..at].ends_with(ident) || !code[at + 4..].starts_with([' ', '<']) {
            continue; // `simpl`, `impls`
        }
        let Some(open) = code[at..].find('{').map(|o| at + o) else { continue };
        let header = &code[at + 4..open];
        let ty = header.rsplit(" for ").next().unwrap();
        // `impl<T> Name<T>`: the type's name follows the generics.
        let ty = if ty.trim_start().starts_with('<') { &ty[ty.find('>').unwrap() + 1..] } else { ty };
        let ty: String = ty.trim_start().chars().take_while(|&c| ident(c)).collect();
        if ty != name {
            continue;
        }
        let body = &code[open + 1..closing(code, open) - 1];
        for (f, _) in body.match_indices("fn ") {
            if body[..f].ends_with(ident) {
                continue;
            }
            let end = body[f..].find(['{', ';']).map_or(body.len(), |e| f + e);
            out.push(body[f..end].split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    out
}

/// Methods of a copyable type in `code` that write through it or hand out
/// `&mut` (two copies would be two writers of one mbuf), by type.
fn copyable_writers(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for ty in copyable_types(code) {
        for sig in method_signatures(code, &ty) {
            if sig.contains("&mut") || sig.contains("mut self") {
                out.push(format!("{ty}: {sig}"));
            }
        }
    }
    out
}

#[test]
fn no_copyable_mbuf_handle_writes_or_hands_out_mut() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dpdk/mbuf.rs");
    let code = code_only(&std::fs::read_to_string(path).unwrap());
    let writers = copyable_writers(&code);
    assert!(writers.is_empty(), "copyable mbuf handles that write or hand out &mut: {writers:#?}");
    // The handle C shares arrays of: an `Option<Mbuf>` is a `struct rte_mbuf *`.
    assert!(code.contains("#[repr(transparent)]\npub struct Mbuf(std::ptr::NonNull<RteMbuf>);"));
    // Planted: `Mbuf` made `Copy` again is found, for each writer it has.
    let planted = code.replace(
        "#[derive(Debug, PartialEq, Eq)]\n#[repr(transparent)]\npub struct Mbuf(",
        "#[derive(Clone, Copy, Debug, PartialEq, Eq)]\n#[repr(transparent)]\npub struct Mbuf(",
    );
    assert_ne!(planted, code, "the declaration of Mbuf moved: update the plant");
    let found = copyable_writers(&planted);
    assert!(found.iter().any(|w| w.starts_with("Mbuf: fn data_mut(&mut self) -> &mut [u8]")), "{found:#?}");
    assert!(found.iter().any(|w| w.starts_with("Mbuf: fn set_ol_flags(&mut self")), "{found:#?}");
    // And only methods of copyable types, inherent or of a trait.
    let sample = "#[derive(Clone)]\nstruct A(u8);\nimpl<T> Write for A { fn write(&mut self) {} }\n\
                  #[derive(Debug)]\nstruct B(u8);\nimpl B { fn b(&mut self) -> &mut u8 { &mut self.0 } }\n\
                  #[derive(Clone, Copy)]\nenum C { X }\nimpl C { fn c(self) -> u8 { 0 } }\n\
                  struct D(u8);\nimpl Clone for D { fn clone(&self) -> D { D(self.0) } }\n\
                  impl D { pub fn d(&mut self) {} }";
    assert_eq!(copyable_writers(sample), ["D: fn d(&mut self)", "A: fn write(&mut self)"]);
}
