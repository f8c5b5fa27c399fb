//! Every English text the simulator shows where Jenkins shows one, in one place, with its
//! source. Unless noted, the source is jenkinsci/jenkins @ ff9430ee1dc6e319349a488650d914444fe141f3;
//! `M:` is `core/src/main/resources/hudson/model/Messages.properties`. The quotes are the curly
//! `‘…’` (U+2018/U+2019) of those bundles.

/// `M: Queue.WaitingForNextAvailableExecutor` — a buildable item without a label, or any item
/// while no agent is defined (`Queue.BuildableItem.getCauseOfBlockage`: "no master/agent.
/// pointless to talk about nodes").
pub const WAITING_FOR_EXECUTOR: &str = "Waiting for next available executor";

/// `M: Queue.WaitingForNextAvailableExecutorOn` — label online but busy
/// (`BecauseLabelIsBusy`, `{0}` = `label.getName()`), or its single node busy
/// (`BecauseNodeIsBusy`, `{0}` = the computer's display name).
pub fn waiting_for_executor_on(name: &str) -> String {
    format!("Waiting for next available executor on ‘{name}’")
}

/// `M: Queue.LabelHasNoNodes` — `BecauseLabelIsOffline` when `label.isEmpty()` (no node, no
/// cloud).
pub fn label_has_no_nodes(label: &str) -> String {
    format!("There are no nodes with the label ‘{label}’")
}

/// `M: Queue.AllNodesOffline` — `BecauseLabelIsOffline` when the label has two or more nodes,
/// all offline.
pub fn all_nodes_offline(label: &str) -> String {
    format!("All nodes of label ‘{label}’ are offline")
}

/// `M: Queue.NodeOffline` — `BecauseNodeIsOffline`: the label's only node is offline (`{0}` =
/// the computer's display name).
pub fn node_offline(node: &str) -> String {
    format!("‘{node}’ is offline")
}

/// `M: Node.BecauseNodeIsReserved` — `Node.canTake` for an item without a label on an
/// EXCLUSIVE node; shown (joined by `CompositeCauseOfBlockage`) when idle executors exist but
/// none may take the item.
pub fn node_reserved(node: &str) -> String {
    format!("‘{node}’ is reserved for jobs with matching label expression")
}

/// `M: Queue.InQuietPeriod` — a `WaitingItem` whose quiet period has not expired.
pub fn in_quiet_period(remaining: &str) -> String {
    format!("In the quiet period. Expires in {remaining}")
}

/// `M: Queue.FinishedWaiting` — a `WaitingItem` past its quiet period, not yet moved.
pub const FINISHED_WAITING: &str = "Finished waiting";

/// `jenkins/model/Messages.properties: BlockedBecauseOfBuildInProgress.shortDescription` with
/// `.ETA` = `\ (ETA: {0})`; the ETA is `Executor.getEstimatedRemainingTime()`, "N/A"
/// (`M: Executor.NotAvailable`) without an estimate.
pub fn build_in_progress(number: u32, eta: Option<&str>) -> String {
    format!(
        "Build #{number} is already in progress (ETA: {})",
        eta.unwrap_or("N/A")
    )
}

/// `CompositeCauseOfBlockage.getShortDescription`: unique reasons, sorted, joined with "; ",
/// at most five then "; ... and N more".
pub fn composite(mut reasons: Vec<String>) -> String {
    reasons.sort();
    reasons.dedup();
    const MAX: usize = 5;
    if reasons.len() <= MAX {
        return reasons.join("; ");
    }
    let more = reasons.len() - MAX;
    format!("{}; ... and {more} more", reasons[..MAX].join("; "))
}

/// `M: ComputerSet.SlaveAlreadyExists`.
pub fn agent_already_exists(name: &str) -> String {
    format!("Agent called ‘{name}’ already exists")
}

/// `ComputerSet.checkName` for a missing name.
pub const NAME_REQUIRED: &str = "Query parameter 'name' is required";

/// `M: Hudson.UnsafeChar` (`Jenkins.checkGoodName`).
pub fn unsafe_char(c: char) -> String {
    format!("‘{c}’ is an unsafe character")
}

/// `M: Hudson.ControlCodeNotAllowed`.
pub fn control_code(name: &str) -> String {
    format!("No control code is allowed: {name}")
}

/// `M: Jenkins.NotAllowedName` (note the double curly quotes of that bundle).
pub fn not_allowed_name(name: &str) -> String {
    format!("“{name}” is not an allowed name")
}

/// `M: Hudson.TrailingDot`.
pub const TRAILING_DOT: &str = "A name cannot end with ‘.’";

/// `M: Hudson.JobAlreadyExists`.
pub fn job_already_exists(name: &str) -> String {
    format!("A job already exists with the name ‘{name}’")
}

/// `M: Slave.InvalidConfig.Executors` (`Slave` constructor, `numExecutors <= 0`).
pub fn invalid_executors(name: &str) -> String {
    format!("Invalid agent configuration for {name}. Invalid number of executors.")
}

/// `M: Hudson.Computer.DisplayName` — the built-in node's display name.
pub const BUILT_IN_DISPLAY_NAME: &str = "Built-In Node";

/// `M: Hudson.NodeDescription` (the `''` of the bundle is one apostrophe).
pub const BUILT_IN_DESCRIPTION: &str = "the Jenkins controller's built-in node";

/// `M: Label.InvalidLabel` — `Label.getDescription()` of a label without nodes or clouds.
pub const INVALID_LABEL: &str = "invalid label";

/// `M: Label.GroupOf`.
pub fn group_of(nodes: &str) -> String {
    format!("group of {nodes}")
}

/// `hudson/slaves/Messages.properties: OfflineCause.connection_was_broken_simple` —
/// `OfflineCause.ChannelTermination.toString()`.
pub const CONNECTION_WAS_BROKEN: &str = "Connection was broken";

/// `jenkins.agents.WebSocketAgents.doIndex`: any of the three headers missing.
pub const WS_ONLY_FOR_AGENT_JAR: &str =
    "This endpoint is only for use from agent.jar in WebSocket mode";

/// `WebSocketAgents.doIndex`: `JnlpAgentReceiver.DATABASE.exists(agent)` false.
pub const WS_NO_SUCH_AGENT: &str = "no such agent";

/// `jenkins.slaves.DefaultJnlpSlaveReceiver.afterProperties`: a second connection without the
/// current connection's cookie.
pub fn ws_already_connected(name: &str) -> String {
    format!("{name} is already connected to this controller. Rejecting this connection.")
}

/// `hudson.security.csrf.CrumbFilter`: POST without a valid crumb (status 403).
pub const NO_VALID_CRUMB: &str = "No valid crumb was included in the request";

/// The cause Jenkins' `BasicHeaderProcessor` logs for a bad API token. Spring Security 6's
/// `BasicAuthenticationEntryPoint` (Jenkins core's bom pins 6.x) answers `sendError(401,
/// "Unauthorized")`, so this text is *not* in the response; it is in the simulator's log.
pub fn invalid_token(user: &str) -> String {
    format!("Invalid password/token for user: {user}")
}

/// `workflow-durable-task-step: ExecutorStepExecution.PlaceholderTask.displayName` — the name
/// of a pipeline `node(..)` queue item (`{0}` = the run's full display name, `job #N`).
pub fn placeholder_display_name(run: &str) -> String {
    format!("part of {run}")
}

/// `hudson.model.Cause.UserIdCause.getShortDescription` (`M: Cause.UserIdCause.ShortDescription`).
pub fn started_by_user(user: &str) -> String {
    format!("Started by user {user}")
}

/// `hudson.Util.getTimeSpanString`, with the English units of
/// `core/src/main/resources/hudson/Messages.properties` (`Util.second={0} sec`, …).
pub fn time_span(ms: u64) -> String {
    const SEC: u64 = 1000;
    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    const MONTH: u64 = 30 * DAY;
    const YEAR: u64 = 365 * DAY;
    let day = |n: u64| format!("{n} {}", if n == 1 { "day" } else { "days" });
    // makeTimeSpanString: the smaller unit only while the bigger one is below 10.
    let pair = |big: u64, big_s: String, small_s: String| {
        if big < 10 {
            format!("{big_s} {small_s}")
        } else {
            big_s
        }
    };
    let (years, rest) = (ms / YEAR, ms % YEAR);
    let (months, rest) = (rest / MONTH, rest % MONTH);
    let (days, rest) = (rest / DAY, rest % DAY);
    let (hours, rest) = (rest / HOUR, rest % HOUR);
    let (minutes, rest) = (rest / MIN, rest % MIN);
    let (seconds, millis) = (rest / SEC, rest % SEC);
    if years > 0 {
        pair(years, format!("{years} yr"), format!("{months} mo"))
    } else if months > 0 {
        pair(months, format!("{months} mo"), day(days))
    } else if days > 0 {
        pair(days, day(days), format!("{hours} hr"))
    } else if hours > 0 {
        pair(hours, format!("{hours} hr"), format!("{minutes} min"))
    } else if minutes > 0 {
        pair(minutes, format!("{minutes} min"), format!("{seconds} sec"))
    } else if seconds >= 10 {
        format!("{seconds} sec")
    } else if seconds >= 1 {
        // seconds + (float) (millisecs / 100) / 10: "1.2 sec"; MessageFormat drops ".0".
        let tenths = millis / 100;
        if tenths == 0 {
            format!("{seconds} sec")
        } else {
            format!("{seconds}.{tenths} sec")
        }
    } else if millis >= 100 {
        // (float) (millisecs / 10) / 100: "0.12 sec".
        let hundredths = millis / 10;
        let s = format!("0.{hundredths:02}");
        format!("{} sec", s.trim_end_matches('0'))
    } else {
        format!("{millis} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_spans_match_jenkins_util() {
        let table = [
            (0, "0 ms"),
            (99, "99 ms"),
            (120, "0.12 sec"),
            (500, "0.5 sec"),
            (1_000, "1 sec"),
            (1_250, "1.2 sec"),
            (15_000, "15 sec"),
            (61_000, "1 min 1 sec"),
            (13 * 60_000 + 43_000, "13 min"),
            (3_600_000 + 60_000, "1 hr 1 min"),
            (86_400_000, "1 day 0 hr"),
            (2 * 86_400_000, "2 days 0 hr"),
        ];
        for (ms, want) in table {
            assert_eq!(time_span(ms), want, "{ms} ms");
        }
    }

    #[test]
    fn composite_sorts_dedups_and_truncates() {
        assert_eq!(composite(vec!["b".into(), "a".into(), "b".into()]), "a; b");
        let many: Vec<String> = (0..7).map(|i| format!("r{i}")).collect();
        assert_eq!(composite(many), "r0; r1; r2; r3; r4; ... and 2 more");
    }
}
