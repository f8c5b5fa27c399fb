//! The Jenkins simulator's `tree=` parser on any text: never panics, and whatever parses
//! prunes a sample computer set into valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longshore_farm::jenkins::tree::{Pruner, VIS, VIS2, parse_tree, render};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let depth = Pruner::for_query(None, Some(text));
    let Ok(spec) = parse_tree(text) else {
        return;
    };
    for pruner in [Some(Pruner::Tree(&spec)), depth.ok()]
        .into_iter()
        .flatten()
    {
        let json = sample(pruner);
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&json) {
            panic!("tree={text:?} rendered invalid JSON ({e}): {json}");
        }
    }
});

/// A computer set with nested lists, the shape the scaler asks for.
fn sample(pruner: Pruner<'_>) -> String {
    render(pruner, "hudson.model.ComputerSet", |o| {
        o.int("busyExecutors", VIS, 0);
        if let Some(v) = o.prop_inline("computer", VIS) {
            v.list(["a", "b\"\u{2018}", "c"], |v, name| {
                v.obj(Some("hudson.slaves.SlaveComputer"), |o| {
                    o.str("displayName", VIS, name);
                    o.opt_str("description", VIS, None);
                    o.bool("offline", VIS, false);
                    if let Some(v) = o.prop("executors", VIS) {
                        v.list([0, 1], |v, n| {
                            v.obj(None, |o| o.int("number", VIS, n));
                        });
                    }
                    if let Some(v) = o.prop("assignedLabels", VIS) {
                        v.list([name], |v, l| v.obj(None, |o| o.str("name", VIS2, l)));
                    }
                    o.empty_list("actions", VIS);
                });
            });
        }
    })
}
