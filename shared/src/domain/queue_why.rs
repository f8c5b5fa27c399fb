//! What a queued item waits for, read from its `why` text.
//!
//! Jenkins does not export a queued item's label in the queue JSON; the only place it shows is
//! the item's `why`, rendered from core's message bundle (hudson/model/Messages.properties,
//! English, which the scaler asks for with `Accept-Language: en`). The same texts are produced
//! for freestyle items and for pipeline `node('x')` placeholder tasks. An unknown text is
//! reported as [`Why::Unknown`]: the caller logs it and does not count the item, never guesses.

/// What a queued item is waiting for, according to its `why`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Why {
    /// Waiting for any executor (the item has no label).
    AnyExecutor,
    /// Waiting for an executor on a node matching this label expression (as Jenkins renders it).
    Label(String),
    /// Waiting for something no new agent provides (a build in progress, a quiet period,
    /// a throttle…).
    NotForAgents,
    /// A text longshore does not know.
    Unknown,
}

/// Texts with the label between the curly quotes Jenkins uses (U+2018, U+2019).
const LABEL_TEMPLATES: [(&str, &str); 4] = [
    // Queue.WaitingForNextAvailableExecutorOn
    (
        "Waiting for next available executor on \u{2018}",
        "\u{2019}",
    ),
    // Queue.LabelHasNoNodes
    ("There are no nodes with the label \u{2018}", "\u{2019}"),
    // Queue.AllNodesOffline
    ("All nodes of label \u{2018}", "\u{2019} are offline"),
    // Queue.NodeOffline (a label that is one node's name)
    ("\u{2018}", "\u{2019} is offline"),
];

/// Texts for items that more agents would not help.
const NOT_FOR_AGENTS_PREFIXES: [&str; 4] = [
    "Build #",             // Queue.BlockedBecauseOfBuildInProgress
    "In the quiet period", // Queue.InQuietPeriod
    "Waiting for ",        // other waits ("Waiting for upstream…"), checked after the label texts
    "Blocked by ",
];

/// Reads the `why` of a queued item.
pub fn parse(why: &str) -> Why {
    let why = why.trim();
    if why == "Waiting for next available executor" {
        return Why::AnyExecutor;
    }
    for (prefix, suffix) in LABEL_TEMPLATES {
        if let Some(label) = why
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .filter(|label| !label.is_empty())
        {
            return Why::Label(label.to_string());
        }
    }
    if NOT_FOR_AGENTS_PREFIXES
        .iter()
        .any(|prefix| why.starts_with(prefix))
    {
        return Why::NotForAgents;
    }
    Why::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_texts_give_the_label() {
        for why in [
            "Waiting for next available executor on \u{2018}docker\u{2019}",
            "There are no nodes with the label \u{2018}docker\u{2019}",
            "All nodes of label \u{2018}docker\u{2019} are offline",
            "\u{2018}docker\u{2019} is offline",
        ] {
            assert_eq!(parse(why), Why::Label("docker".to_string()), "{why}");
        }
    }

    #[test]
    fn expressions_keep_their_rendering() {
        assert_eq!(
            parse("There are no nodes with the label \u{2018}docker&&linux\u{2019}"),
            Why::Label("docker&&linux".to_string())
        );
    }

    #[test]
    fn unlabelled_and_other_waits() {
        assert_eq!(
            parse("Waiting for next available executor"),
            Why::AnyExecutor
        );
        assert_eq!(
            parse("Build #9 is already in progress (ETA:15 sec)"),
            Why::NotForAgents
        );
        assert_eq!(
            parse("Warte auf den nächsten freien Build-Prozessor"),
            Why::Unknown
        );
        assert_eq!(
            parse("There are no nodes with the label \u{2018}\u{2019}"),
            Why::Unknown
        );
    }
}
