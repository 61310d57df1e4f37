//! `sluice list [-r] [-s] [-a]` printed as Flink's CLI prints it: jobs grouped into
//! running/restarting, scheduled (CREATED, INITIALIZING) and terminated, each group ordered by
//! start time, each line `dd.MM.yyyy HH:mm:ss : <job id> : <name> (<state>)` in local time.
//! Without a flag, running and scheduled jobs; `-a` adds terminated ones. A scheduled job
//! that waits for slots gets a second line saying what it waits for.

use serde_json::Value;

/// Which groups to print (Flink's `ListOptions`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Show {
    pub(crate) running: bool,
    pub(crate) scheduled: bool,
    pub(crate) all: bool,
}

impl Show {
    /// No flag: running and scheduled, as Flink does.
    pub(crate) fn effective(self) -> Show {
        if !self.running && !self.scheduled && !self.all {
            Show {
                running: true,
                scheduled: true,
                all: false,
            }
        } else {
            self
        }
    }
}

/// `dd.MM.yyyy HH:mm:ss` of epoch milliseconds in the local time zone (Java's
/// `SimpleDateFormat` as Flink's CLI uses it).
pub(crate) fn local_time(epoch_ms: i64) -> String {
    let secs = epoch_ms.div_euclid(1000) as libc::time_t;
    // SAFETY: localtime_r only writes the `tm` we hand it; both pointers are valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return epoch_ms.to_string();
    }
    format!(
        "{:02}.{:02}.{:04} {:02}:{:02}:{:02}",
        tm.tm_mday,
        tm.tm_mon + 1,
        tm.tm_year + 1900,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

fn line(j: &Value) -> String {
    format!(
        "{} : {} : {} ({})",
        local_time(j["start-time"].as_i64().unwrap_or(0)),
        j["jid"].as_str().unwrap_or(""),
        j["name"].as_str().unwrap_or(""),
        j["state"].as_str().unwrap_or("")
    )
}

fn none(_: &Value) -> Option<String> {
    None
}

const RULE: &str = "--------------------------------------------------------------";

fn group(
    out: &mut Vec<String>,
    header: &str,
    empty: Option<&str>,
    jobs: &[&Value],
    note: &dyn Fn(&Value) -> Option<String>,
) {
    if jobs.is_empty() {
        if let Some(e) = empty {
            out.push(e.to_string());
        }
        return;
    }
    out.push(header.to_string());
    for j in jobs {
        out.push(line(j));
        if let Some(n) = note(j) {
            out.push(format!("  {n}"));
        }
    }
    out.push(RULE.to_string());
}

/// The lines `list` prints for the jobs of `GET /jobs/overview`; `note` says, for a scheduled
/// job, what it waits for.
pub(crate) fn render(jobs: &[Value], show: Show, note: &dyn Fn(&Value) -> Option<String>) -> Vec<String> {
    let show = show.effective();
    let mut sorted: Vec<&Value> = jobs.iter().collect();
    sorted.sort_by_key(|j| j["start-time"].as_i64().unwrap_or(0));
    let state = |j: &Value| j["state"].as_str().unwrap_or("").to_string();
    let scheduled: Vec<&Value> = sorted
        .iter()
        .copied()
        .filter(|j| matches!(state(j).as_str(), "CREATED" | "INITIALIZING"))
        .collect();
    let terminated: Vec<&Value> = sorted
        .iter()
        .copied()
        .filter(|j| matches!(state(j).as_str(), "FINISHED" | "FAILED" | "CANCELED"))
        .collect();
    let running: Vec<&Value> = sorted
        .iter()
        .copied()
        .filter(|j| !scheduled.iter().chain(&terminated).any(|o| std::ptr::eq(*o, *j)))
        .collect();
    let mut out = Vec::new();
    if show.running || show.all {
        group(
            &mut out,
            "------------------ Running/Restarting Jobs -------------------",
            Some("No running jobs."),
            &running,
            &none,
        );
    }
    if show.scheduled || show.all {
        group(
            &mut out,
            "----------------------- Scheduled Jobs -----------------------",
            Some("No scheduled jobs."),
            &scheduled,
            note,
        );
    }
    if show.all {
        group(
            &mut out,
            "---------------------- Terminated Jobs -----------------------",
            None,
            &terminated,
            &none,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(id: &str, state: &str, start: i64) -> Value {
        json!({"jid": id, "name": format!("job-{id}"), "state": state, "start-time": start})
    }

    #[test]
    fn groups_and_orders_as_flink_does() {
        let jobs = vec![
            job("c", "CANCELED", 3_000),
            job("r2", "RUNNING", 2_000),
            job("r1", "RESTARTING", 1_000),
            job("s", "CREATED", 4_000),
            job("f", "FINISHED", 500),
        ];
        let note = |j: &Value| (j["jid"] == "s").then(|| "waiting for 64 slots".to_string());
        let lines = render(&jobs, Show::default(), &note);
        assert_eq!(
            lines[0],
            "------------------ Running/Restarting Jobs -------------------"
        );
        assert!(lines[1].ends_with(" : r1 : job-r1 (RESTARTING)"), "{lines:?}");
        assert!(lines[2].ends_with(" : r2 : job-r2 (RUNNING)"), "{lines:?}");
        assert_eq!(lines[3], RULE);
        assert_eq!(
            lines[4],
            "----------------------- Scheduled Jobs -----------------------"
        );
        assert!(lines[5].ends_with(" : s : job-s (CREATED)"));
        assert_eq!(lines[6], "  waiting for 64 slots");
        assert_eq!(lines.len(), 8, "no terminated jobs without -a: {lines:?}");

        let all = render(
            &jobs,
            Show {
                all: true,
                ..Show::default()
            },
            &note,
        );
        let terminated: Vec<&String> = all.iter().skip_while(|l| !l.contains("Terminated")).collect();
        assert!(terminated[1].ends_with(" : f : job-f (FINISHED)"), "{all:?}");
        assert!(terminated[2].ends_with(" : c : job-c (CANCELED)"), "{all:?}");

        let running_only = render(
            &[],
            Show {
                running: true,
                ..Show::default()
            },
            &note,
        );
        assert_eq!(running_only, vec!["No running jobs."]);
        let scheduled_only = render(
            &jobs[..1],
            Show {
                scheduled: true,
                ..Show::default()
            },
            &note,
        );
        assert_eq!(scheduled_only, vec!["No scheduled jobs."]);
    }

    #[test]
    fn start_time_is_a_local_date() {
        let t = local_time(1_764_576_000_000);
        // dd.MM.yyyy HH:mm:ss whatever the zone.
        assert_eq!(t.len(), 19, "{t}");
        assert_eq!(&t[2..3], ".");
        assert_eq!(&t[5..6], ".");
        assert_eq!(&t[10..11], " ");
        assert!(t.contains(".2025 ") || t.contains(".2025"), "{t}");
    }
}
