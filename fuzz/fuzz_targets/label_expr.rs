//! `labels::parse` on any text: never panics; what parses renders back to the same expression
//! (`Display` is `Label.getExpression()`, `name()` is `Label.getName()`), and `matches`/`atoms`
//! agree with each other.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use longshore::domain::labels::{LabelExpr, assigned_label, needs_escape, node_labels, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = assigned_label(Some(text));
    let _ = node_labels("self", text);
    let Ok(expr) = parse(text) else {
        return;
    };
    let atoms = expr.atoms();
    assert!(!atoms.is_empty());
    let shown = expr.to_string();
    // Jenkins' `LabelAtom.escape` quotes an atom only when `checkGoodName` refuses it or it
    // holds one of ` ()\t\n`; `"` and `'` pass both, so an atom holding one (only a quoted
    // label can) renders unquoted and its expression does not read back, in Jenkins as here.
    // Faithful on purpose: the scaler matches the texts Jenkins renders.
    if !atoms.iter().any(|a| a.contains(['"', '\''])) {
        assert_eq!(
            parse(&shown).as_ref(),
            Ok(&expr),
            "expression {shown:?} of {text:?}"
        );
        // A bare atom's name is its raw text (what a `why` shows), which reads back unless it
        // needs quoting; anything else's name is its expression.
        match &expr {
            LabelExpr::Atom(a) if needs_escape(a) => assert_eq!(&expr.name(), a),
            _ => assert_eq!(parse(&expr.name()).as_ref(), Ok(&expr), "name of {text:?}"),
        }
    }
    // Every atom present, none present: `matches` only looks at the atoms, not at a label
    // the expression does not name.
    let mut other = String::from("other");
    while atoms.contains(&other) {
        other.push('_');
    }
    let all = expr.matches(&atoms);
    let none = expr.matches(&BTreeSet::new());
    assert_eq!(expr.matches(&BTreeSet::from([other.clone()])), none);
    let mut plus = atoms.clone();
    plus.insert(other);
    assert_eq!(expr.matches(&plus), all);
});
