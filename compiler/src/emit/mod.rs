//! The checked model as a Lua chunk: the frame comes from `templates/spec.lua.j2` (minijinja),
//! the statements from here. Every statement that can fail carries a `-- file:LINE` marker;
//! the runtime maps the chunk's lines back to the spec through them.
//!
//! Consecutive independent cases run in one `vm:batch`, so a table of 1,000 rows costs one round
//! trip, not 1,000; each case then checks its own outcome.

use crate::model::{Body, Call, Case, Creds, LuaBlock, Model, Requires, Step, StepKind};
use minijinja::{context, Environment};
use values::{call_table, creds_table, requires_table};

pub(crate) mod lua;
mod values;

/// An expectation as the Lua table `expect(outcome, …)` takes (what compiled specs pass): the
/// runtime reads it back into a [`crate::verdict::Expectation`].
pub fn expectation_table(e: &crate::model::Expect) -> String {
    values::expect_table(e)
}

const TEMPLATE: &str = include_str!("../../templates/spec.lua.j2");

/// Calls per `vm:batch` round trip.
const BATCH_LIMIT: usize = 2000;

/// Lines of generated Lua with their spec lines.
struct Out {
    file: String,
    text: String,
}

impl Out {
    fn new(file: &str) -> Out {
        Out {
            file: file.to_string(),
            text: String::new(),
        }
    }

    /// A statement with its marker.
    fn line(&mut self, indent: usize, code: &str, spec_line: u32) {
        self.text.push_str(&"  ".repeat(indent));
        self.text.push_str(code);
        if spec_line > 0 {
            self.text
                .push_str(&format!("  -- {}:{spec_line}", self.file));
        }
        self.text.push('\n');
    }

    /// Raw text (a Lua block's code): no markers may go inside a string literal.
    fn raw(&mut self, text: &str) {
        self.text.push_str(text);
    }
}

/// The chunk and its source map.
pub fn emit(model: &Model) -> Result<(String, crate::SourceMap), String> {
    // The file's name goes into comments and marks: a newline in it must not end them.
    let file = &lua::comment(&model.file);
    let mut setup = Out::new(file);
    for s in &model.setup {
        step(&mut setup, 1, s, "setup");
    }
    let mut teardown = Out::new(file);
    for s in &model.teardown {
        step(&mut teardown, 1, s, "teardown");
    }
    let mut cases = Out::new(file);
    emit_cases(&mut cases, model);

    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| format!("template syntax: {e}"))?;
    env.set_syntax(syntax);
    let marker_file = file.clone();
    env.add_function("marker", move |line: u32| {
        if line == 0 {
            String::new()
        } else {
            format!("  -- {marker_file}:{line}")
        }
    });
    env.add_template("spec.lua", TEMPLATE)
        .map_err(|e| format!("the Lua template is broken: {e}"))?;
    let tmpl = env
        .get_template("spec.lua")
        .map_err(|e| format!("the Lua template is missing: {e}"))?;
    let chunk = tmpl
        .render(context! {
            version => env!("CARGO_PKG_VERSION"),
            file => file,
            profile => lua::str(&model.profile),
            fixture => model.fixture.as_deref().map(lua::str),
            timeout => model.timeout.map(|t| format!("{t}")),
            share_vm => model.share_vm && model.fork_isolated,
            requires => requires_expr(model.skip.as_deref(), model.requires.as_ref(), model.abi),
            requires_line => model.requires.as_ref().map(|r| r.line).unwrap_or(0),
            setup => setup.text,
            teardown => teardown.text,
            cases => cases.text,
        })
        .map_err(|e| format!("rendering the Lua chunk: {e}"))?;
    let map = crate::SourceMap::from_marks(&chunk, &format!("-- {file}:"));
    Ok((chunk, map))
}

/// The spec's conditions; under another ABI than x86_64 the kernel must also have that ABI
/// (a kernel without `CONFIG_IA32_EMULATION` skips the i386 half of a run).
fn requires_expr(skip: Option<&str>, r: Option<&Requires>, abi: crate::linux::Abi) -> String {
    let table = |r: &Requires| requires_table(r, abi);
    match (skip, r) {
        // A header the kernel lacks: every case skips, before any condition is asked.
        (Some(why), _) => lua::str(why),
        (None, Some(r)) => format!("provium.requires(vm, {})", table(r)),
        (None, None) if abi != crate::linux::Abi::X86_64 => {
            format!("provium.requires(vm, {})", table(&Requires::default()))
        }
        (None, None) => "nil".into(),
    }
}

/// Whether the call runs wrapped, on its own: it must raise signals (`raises:`) or repeats
/// (`repeat:`).
fn raises(call: &Call) -> bool {
    call.repeat.is_some() || call.expect.as_ref().is_some_and(|e| !e.raises().is_empty())
}

/// The Lua that runs `call` on `target` and yields its outcome: `target:call{...}`, or
/// `provium.raising(target, {...}, {signals})` when it must raise signals.
fn invoke(target: &str, call: &Call) -> String {
    if let Some((until, at_most)) = call.repeat.as_deref() {
        // A call that reads `$repeat` (the repetition's count, from 0) is made anew each time.
        let call_lua = if call.reads.iter().any(|r| r == "repeat") {
            format!(
                "function(i) local saved = setmetatable({{[\"repeat\"] = i}}, {{__index = saved}}) return {} end",
                call_table(call)
            )
        } else {
            call_table(call)
        };
        return format!(
            "provium.repeating({target}, {call_lua}, {}, {at_most})",
            values::strings(until)
        );
    }
    match call.expect.as_ref().filter(|e| !e.raises().is_empty()) {
        Some(e) => format!(
            "provium.raising({target}, {}, {})",
            call_table(call),
            values::numbers(e.raises())
        ),
        None => format!("{target}:call{}", call_table(call)),
    }
}

/// The call of a case that is one plain call: not wrapped (`raises:`, `repeat:`), without a
/// condition of its own, not skipped. Such cases can be gathered into one round trip.
fn plain_call(case: &Case) -> Option<&Call> {
    match &case.body {
        Body::Call(c)
            if !raises(c)
                && case.requires.is_none()
                && case.skip.is_none()
                && case.finally.is_empty()
                && c.skip_if.is_none() =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// A case can join a batch when it is one plain call in the shared executor whose inputs are
/// known before the batch.
fn batchable(case: &Case, saved_in_segment: &[String]) -> bool {
    plain_call(case).is_some_and(|c| {
        case.creds.is_none() && !c.reads.iter().any(|r| saved_in_segment.contains(r))
    })
}

/// A case can run isolated with others in one round trip (`vm:isolated`) when it is one plain
/// call in a worker with its own credentials (`as:`) that saves nothing: each runs in its own
/// child process, at the cost of a fork instead of a new worker.
fn isolatable(model: &Model, case: &Case) -> bool {
    model.fork_isolated
        && plain_call(case).is_some_and(|c| case.creds.is_some() && c.saves.is_empty())
}

/// Opens a segment of cases gathered into one `vm:METHOD{...}` round trip, stored in `var`.
fn open_segment(out: &mut Out, var: &str, cases: &[Case], method: &str, how: &str) {
    let first = cases.first().map_or(0, |c| c.line);
    let last = cases.last().map_or(0, |c| c.line);
    out.line(1, &format!("-- cases at lines {first}-{last} {how}"), 0);
    out.line(
        1,
        &format!("local {var} = SKIP and {{}} or vm:{method}{{"),
        first,
    );
}

/// Emits the tests of a gathered segment, each checking its outcome `{var}[k]…`.
fn segment_tests(out: &mut Out, var: &str, cases: &[Case], outcome_suffix: &str) {
    for (k, c) in cases.iter().enumerate() {
        let outcome = format!("{var}[{}]{outcome_suffix}", k + 1);
        test_open(out, c);
        if let Body::Call(call) = &c.body {
            check(out, 2, call, &outcome, c.xfail.as_deref());
        }
        out.line(1, "end)", 0);
    }
}

fn emit_cases(out: &mut Out, model: &Model) {
    let mut i = 0;
    let mut batch_no = 0;
    let cases = &model.cases;
    while i < cases.len() {
        // Gather a segment of batchable cases.
        let mut saved_in_segment: Vec<String> = Vec::new();
        let mut j = i;
        while j < cases.len() && j - i < BATCH_LIMIT && batchable(&cases[j], &saved_in_segment) {
            if let Body::Call(c) = &cases[j].body {
                saved_in_segment.extend(c.saves.iter().map(|s| s.name.clone()));
            }
            j += 1;
        }
        if j - i >= 2 {
            batch_no += 1;
            let var = format!("B{batch_no}");
            open_segment(out, &var, &cases[i..j], "batch", "run in one round trip");
            for c in &cases[i..j] {
                if let Body::Call(call) = &c.body {
                    out.line(2, &format!("{},", call_table(call)), call.line);
                }
            }
            out.line(1, "}", 0);
            for (k, c) in cases[i..j].iter().enumerate() {
                if let Body::Call(call) = &c.body {
                    if !call.saves.is_empty() {
                        let assigns: Vec<String> = call
                            .saves
                            .iter()
                            .map(|s| format!("saved.{} = {}", s.name, values::saved_value(&s.from)))
                            .collect();
                        out.line(
                            1,
                            &format!(
                                "do local r = {var}[{}] or {{}}; {} end",
                                k + 1,
                                assigns.join("; ")
                            ),
                            call.line,
                        );
                    }
                }
            }
            segment_tests(out, &var, &cases[i..j], "");
            i = j;
            continue;
        }
        // Or a segment of cases that run isolated, each in its own child process.
        let mut j = i;
        while j < cases.len() && j - i < BATCH_LIMIT && isolatable(model, &cases[j]) {
            j += 1;
        }
        // Even one case: isolated costs a fork, a worker costs a process and round trips.
        if j > i {
            batch_no += 1;
            let var = format!("I{batch_no}");
            open_segment(
                out,
                &var,
                &cases[i..j],
                "isolated",
                "run isolated, in one round trip",
            );
            for c in &cases[i..j] {
                if let (Body::Call(call), Some(cr)) = (&c.body, &c.creds) {
                    let timeout = call
                        .timeout
                        .map(|t| format!(", timeout = {t}"))
                        .unwrap_or_default();
                    out.line(
                        2,
                        &format!(
                            "{{as = {}{timeout}, calls = {{{}}}}},",
                            creds_table(cr),
                            call_table(call)
                        ),
                        call.line,
                    );
                }
            }
            out.line(1, "}", 0);
            segment_tests(out, &var, &cases[i..j], "[1]");
            i = j;
            continue;
        }
        single_case(out, &cases[i]);
        i += 1;
    }
}

fn test_open(out: &mut Out, c: &Case) {
    out.line(
        1,
        &format!("test({}, function()", lua::str(&c.name)),
        c.line,
    );
    out.line(2, "if SKIP then skip(SKIP) end", 0);
}

fn single_case(out: &mut Out, c: &Case) {
    test_open(out, c);
    if let Some(reason) = &c.skip {
        out.line(2, &format!("skip({})", lua::str(reason)), c.line);
    }
    if let Some(r) = &c.requires {
        out.line(
            2,
            &format!(
                "local unmet = provium.requires(vm, {})",
                requires_table(r, c.abi)
            ),
            r.line,
        );
        out.line(2, "if unmet then skip(unmet) end", r.line);
    }
    // With `finally:`, the body runs protected so that its steps run whatever happened; the
    // body's error (or skip) is raised after them, and theirs if the body passed.
    let base = if c.finally.is_empty() {
        2
    } else {
        out.line(2, "local body_ok, body_err = pcall(function()", c.line);
        3
    };
    let (indent, close_xfail) = match &c.xfail {
        Some(reason) => {
            out.line(
                base,
                &format!("xfail({}, function()", lua::str(reason)),
                c.line,
            );
            (base + 1, true)
        }
        None => (base, false),
    };
    match &c.body {
        Body::Call(call) => {
            let target = match &c.creds {
                Some(cr) => {
                    out.line(
                        indent,
                        &format!("local w = vm:spawn{}", creds_table(cr)),
                        c.line,
                    );
                    "w"
                }
                None => "vm",
            };
            out.line(
                indent,
                &format!("local r = {}", invoke(target, call)),
                call.line,
            );
            if c.creds.is_some() {
                out.line(indent, "w:kill()", 0);
            }
            check(out, indent, call, "r", None);
            saves(out, indent, call);
        }
        Body::Steps(steps) => {
            // One worker for the whole case, so its steps share a process (rlimits, fds).
            if let Some(cr) = &c.creds {
                out.line(
                    indent,
                    &format!("local cw = vm:spawn{}", creds_table(cr)),
                    c.line,
                );
            }
            for s in steps {
                let who = match (&s.creds, &c.creds) {
                    (Some(own), _) => Who::Spawn(own),
                    (None, Some(_)) => Who::Worker("cw"),
                    (None, None) => Who::Vm,
                };
                step_with(out, indent, s, who);
            }
            if c.creds.is_some() {
                out.line(indent, "cw:kill()", 0);
            }
        }
        Body::Lua(block) => lua_block(out, indent, block, c.creds.as_ref()),
    }
    if close_xfail {
        out.line(base, "end)", 0);
    }
    if !c.finally.is_empty() {
        out.line(2, "end)", 0);
        out.line(2, "local finally_ok, finally_err = pcall(function()", 0);
        for s in &c.finally {
            step(out, 3, s, "finally");
        }
        out.line(2, "end)", 0);
        out.line(2, "if not body_ok then error(body_err, 0) end", 0);
        out.line(2, "if not finally_ok then error(finally_err, 0) end", 0);
    }
    out.line(1, "end)", 0);
}

fn check(out: &mut Out, indent: usize, call: &Call, outcome: &str, xfail: Option<&str>) {
    if let Some(s) = &call.skip_if {
        // Decided by the same verdict as `expect`, without failing.
        out.line(
            indent,
            &format!(
                "do local met, seen = holds({outcome}, {}) if met then skip({} .. seen .. \" (skip_if)\") end end",
                values::expect_table(s),
                lua::str(&format!("{} answered ", call.name))
            ),
            s.line,
        );
    }
    let Some(e) = &call.expect else { return };
    let stmt = format!("expect({outcome}, {})", values::expect_table(e));
    match xfail {
        Some(reason) => out.line(
            indent,
            &format!("xfail({}, function() {stmt} end)", lua::str(reason)),
            e.line,
        ),
        None => out.line(indent, &stmt, e.line),
    }
}

fn saves(out: &mut Out, indent: usize, call: &Call) {
    for s in &call.saves {
        out.line(
            indent,
            &format!("saved.{} = {}", s.name, values::saved_value(&s.from)),
            call.line,
        );
    }
}

fn step(out: &mut Out, indent: usize, s: &Step, _what: &str) {
    let who = match &s.creds {
        Some(c) => Who::Spawn(c),
        None => Who::Vm,
    };
    step_with(out, indent, s, who);
}

/// Where a step runs.
enum Who<'a> {
    Vm,
    /// A worker the case already spawned.
    Worker(&'a str),
    /// A worker of its own, spawned for the step.
    Spawn(&'a Creds),
}

fn step_with(out: &mut Out, indent: usize, s: &Step, who: Who<'_>) {
    if let Some(label) = &s.label {
        out.line(indent, &format!("-- {label}"), 0);
    }
    let creds = match &who {
        Who::Spawn(c) => Some(*c),
        _ => None,
    };
    match &s.kind {
        StepKind::Call(call) => {
            let target = match &who {
                Who::Spawn(cr) => {
                    out.line(
                        indent,
                        &format!("local w = vm:spawn{}", creds_table(cr)),
                        s.line,
                    );
                    "w"
                }
                Who::Worker(name) => name,
                Who::Vm => "vm",
            };
            out.line(indent, "do", 0);
            out.line(
                indent + 1,
                &format!("local r = {}", invoke(target, call)),
                call.line,
            );
            if creds.is_some() {
                out.line(indent + 1, "w:kill()", 0);
            }
            check(out, indent + 1, call, "r", None);
            saves(out, indent + 1, call);
            out.line(indent, "end", 0);
        }
        StepKind::Lua(block) => lua_block(out, indent, block, creds),
        StepKind::Store { at, kind, value } => {
            let target = match &who {
                Who::Spawn(cr) => {
                    out.line(
                        indent,
                        &format!("local w = vm:spawn{}", creds_table(cr)),
                        s.line,
                    );
                    "w"
                }
                Who::Worker(name) => name,
                Who::Vm => "vm",
            };
            out.line(
                indent,
                &format!(
                    "provium.store({target}, {}, {}, {})",
                    values::int(at),
                    lua::str(kind),
                    values::int(value)
                ),
                s.line,
            );
        }
        StepKind::Exec {
            command: cmd,
            saves,
        } => {
            out.line(indent, "do", 0);
            out.line(
                indent + 1,
                &format!("local x = vm:exec({})", lua::str(cmd)),
                s.line,
            );
            out.line(
                indent + 1,
                &format!(
                    "assert(x.ok, {} .. tostring(x.exit_code or x.signal) .. \": \" .. x.stderr.value)",
                    lua::str(&format!("`{cmd}` exited "))
                ),
                s.line,
            );
            for (name, pattern) in saves {
                out.line(
                    indent + 1,
                    &format!(
                        "do local m = x.stdout.value:match({p}) local v = m and math.tointeger(tonumber(m)) if not v and provium.listing() then v = 0 end if not v then error({what} .. \"\\\"\" .. (x.stdout.value:sub(1, 200):gsub(\"\\n\", \"\\\\n\")) .. \"\\\"\", 0) end {target} = v end",
                        p = lua::str(pattern),
                        what = lua::str(&format!(
                            "`{cmd}`: save {name}: pattern {pattern} found no integer in "
                        )),
                        target = values::saved_ref(name),
                    ),
                    s.line,
                );
            }
            out.line(indent, "end", 0);
        }
    }
}

/// Inline Lua runs as its own chunk named after the spec, padded so that its line numbers are
/// the spec's: errors in it point at the YAML directly.
fn lua_block(out: &mut Out, indent: usize, block: &LuaBlock, creds: Option<&Creds>) {
    let pad = block.first_line.saturating_sub(1);
    let worker = match creds {
        Some(cr) => format!("vm:spawn{}", creds_table(cr)),
        None => "nil".into(),
    };
    out.line(
        indent,
        &format!(
            "local env = setmetatable({{vm = vm, saved = saved, worker = {worker}, row = {}}}, {{__index = _G}})",
            values::row_table(&block.row)
        ),
        block.first_line,
    );
    // The code goes in as written: no marker may land inside the string literal.
    out.raw(&format!(
        "{}local chunk = assert(load((\"\\n\"):rep({pad}) .. {}, {}, \"t\", env))\n",
        "  ".repeat(indent),
        lua::long_string(&block.code),
        lua::str(&format!("@{}", out.file)),
    ));
    out.line(indent, "chunk()", block.first_line);
    for name in &block.saves {
        out.line(
            indent,
            &format!(
                "if rawget(saved, {q}) == nil then error({msg}, 0) end",
                q = lua::str(name),
                msg = lua::str(&format!(
                    "{}:{}: the `lua:` block promises `save: {name}` but did not set saved.{name}",
                    out.file, block.first_line
                ))
            ),
            block.first_line,
        );
    }
}
